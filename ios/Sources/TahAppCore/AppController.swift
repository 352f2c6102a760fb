import Foundation
import Observation
import TahSDK

/// Everything the sample apps do apart from drawing: the model, the chat and
/// the benchmark, and the phone's side of things: the thermal state, memory
/// warnings, the conversation saved after every answer. Owned by the app
/// (SwiftUI `@State`), on the main actor.
@MainActor
@Observable
public final class AppController {
    public let models: ModelHolder
    public let chat: ChatController
    public let benchmark: BenchmarkController
    /// Where models load: the settings' CPU / GPU switch.
    public private(set) var device = Device.cpu
    /// The current model's file and tokenizer (for `switchDevice`).
    @ObservationIgnored private var opened: (file: ModelFile, tokenizerPath: String?)?
    /// Thermal state, compute threads and the last memory trim, for the latency panel.
    public private(set) var phone = PhoneState()
    @ObservationIgnored private let preferredThreads: Int

    /// - Parameters:
    ///   - chatConfig: the chat's sampling settings (Qwen3's thinking defaults).
    ///   - threads: compute threads while the phone is cool (nil: one per core).
    ///   - conversationPath: where the conversation is saved after every
    ///     answer and restored from at launch (nil: not saved).
    public init(
        chatConfig: GenerationConfig = defaultGenerationConfig(), threads: UInt32? = nil,
        conversationPath: String? = nil
    ) {
        preferredThreads = threads.map(Int.init) ?? ProcessInfo.processInfo.activeProcessorCount
        models = ModelHolder(threads: threads)
        chat = ChatController(models: models, baseConfig: chatConfig, conversationPath: conversationPath)
        benchmark = BenchmarkController(models: models)
    }

    /// Opens the model at launch (on `device`), then restores the last
    /// conversation: the model the user picked last if `lastPicked` still
    /// exists, else the one `bundled` with the app (so a first launch works
    /// offline).
    public func launch(lastPicked: String?, bundled: ModelFile) async {
        let picked = lastPicked.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        await open(picked.map(ModelFile.path) ?? bundled)
        await chat.restoreConversation()
    }

    /// Replaces the model (loaded on `device`, default: the switch's): the
    /// chat lets go of its session and the benchmark stops before the old
    /// model is released. The conversation stays and continues on the new model.
    public func loadModel(path: String, tokenizerPath: String? = nil, device: Device? = nil) async {
        if let device { self.device = device }
        await open(.path(path), tokenizerPath: tokenizerPath)
    }

    /// The settings' switch: models load on `device` from now on, and the
    /// loaded model (if any) reloads there; the conversation stays.
    public func switchDevice(_ device: Device) async {
        self.device = device
        guard case .ready = models.state, let opened else { return }
        await open(opened.file, tokenizerPath: opened.tokenizerPath)
    }

    private func open(_ file: ModelFile, tokenizerPath: String? = nil) async {
        opened = (file, tokenizerPath)
        chat.detach()
        await benchmark.cancelAndWait()
        await models.load(file, tokenizerPath: tokenizerPath, device: device)
        applyThreads()
    }

    /// Starts the benchmark, stopping the chat's answer (they would slow each other down).
    @discardableResult
    public func startBenchmark() -> Bool {
        chat.stop()
        return benchmark.start()
    }

    /// The app went to the background: stop all work.
    public func onBackground() {
        chat.stop()
        benchmark.cancel()
    }

    /// The thermal state changed (`ProcessInfo.thermalStateDidChangeNotification`):
    /// fewer compute threads when it is serious or critical (`threadsFor`),
    /// from the next answer on.
    public func onThermalState(_ thermal: ThermalState) {
        phone.thermal = thermal
        applyThreads()
    }

    private func applyThreads() {
        guard let model = models.model else { return }
        try? model.setThreads(threads: UInt32(threadsFor(phone.thermal, preferred: preferredThreads)))
        phone.threads = Int(model.threads())
    }

    /// Gives memory back (`UIApplication.didReceiveMemoryWarningNotification`:
    /// `.critical`; see `TrimLevel`); the report goes to `phone`. A running
    /// answer keeps its KV cache.
    public func trimMemory(_ level: TrimLevel) async {
        guard let model = models.model else { return }
        let report = await Task.detached { try? model.trimMemory(level: level) }.value
        if let report { phone.lastTrim = (level, report) }
    }
}
