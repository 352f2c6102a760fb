import TahSDK

/// Everything the sample apps do apart from drawing: the model, the chat and
/// the benchmark. Owned by the app (SwiftUI `@State`), on the main actor.
@MainActor
public final class AppController {
    public let models: ModelHolder
    public let chat: ChatController
    public let benchmark: BenchmarkController
    /// Where models load: the settings' CPU / GPU switch.
    public private(set) var device = Device.cpu

    /// - Parameters:
    ///   - chatConfig: the chat's sampling settings (Qwen3's thinking defaults).
    ///   - threads: compute threads of the model (nil: one per core).
    public init(chatConfig: GenerationConfig = defaultGenerationConfig(), threads: UInt32? = nil) {
        models = ModelHolder(threads: threads)
        chat = ChatController(models: models, baseConfig: chatConfig)
        benchmark = BenchmarkController(models: models)
    }

    /// Replaces the model (loaded on `device`, default: the switch's): the
    /// chat lets go of its session and the benchmark stops before the old
    /// model is released. The conversation stays and continues on the new model.
    public func loadModel(path: String, tokenizerPath: String? = nil, device: Device? = nil) async {
        if let device { self.device = device }
        chat.detach()
        await benchmark.cancelAndWait()
        await models.load(path: path, tokenizerPath: tokenizerPath, device: self.device)
    }

    /// The settings' switch: models load on `device` from now on, and the
    /// loaded model (if any) reloads there; the conversation stays.
    public func switchDevice(_ device: Device) async {
        self.device = device
        guard case .ready(let loaded) = models.state else { return }
        await loadModel(path: loaded.path, tokenizerPath: loaded.tokenizerPath)
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
}
