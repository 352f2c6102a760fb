import Foundation
import Observation
import TahSDK

/// A loaded model and what the app shows about it.
public struct LoadedModel: Sendable {
    public let model: TahModel
    /// The file's name, or what the app calls its bundled model.
    public let name: String
    /// Wall time of `TahModel.load` as the app saw it.
    public let loadWallMs: Double
    public let contextLength: Int
    public let backends: ComputeBackends
    /// The device the app asked for.
    public let requestedDevice: Device
    /// Where the model runs: `cpu`, or `gpu: <adapter> (<backend>)`.
    public let deviceName: String
    /// Why the model runs on the CPU although the GPU was asked for (nil: it runs where asked).
    public let deviceNotice: String?
}

/// The model the app works with.
public enum ModelState: Sendable {
    case empty
    case loading(name: String)
    case ready(LoadedModel)
    case failed(name: String, message: String)
}

/// Loads and owns the one model of the app. Loading blocks a background
/// thread (seconds for a large file), never the main one.
@MainActor
@Observable
public final class ModelHolder {
    public private(set) var state = ModelState.empty
    private let threads: UInt32?

    /// - Parameter threads: compute threads of the model (nil: one per core).
    public init(threads: UInt32? = nil) {
        self.threads = threads
    }

    /// The loaded model, if any.
    public var model: TahModel? {
        if case .ready(let loaded) = state { return loaded.model }
        return nil
    }

    /// Loads `file` (a `.gguf` file or a checkpoint directory) on `device`,
    /// releasing the current model first. Does nothing while another load
    /// runs. A GPU that cannot run the model gives a CPU model and a
    /// `deviceNotice`, never a failed load. Sessions of the old model must be
    /// released by their owners (their engine keeps the weights alive until then).
    public func load(_ file: ModelFile, tokenizerPath: String? = nil, device: Device = .cpu) async {
        if case .loading = state { return }
        state = .loading(name: file.name)
        let options = ModelOptions(
            threads: threads, tokenizerPath: tokenizerPath, device: device, gpuFallback: true)
        state = await Task.detached(priority: .userInitiated) { () -> ModelState in
            let started = DispatchTime.now().uptimeNanoseconds
            do {
                let model = try TahModel.loadFrom(source: file.source, options: options)
                return .ready(LoadedModel(
                    model: model, name: file.name,
                    loadWallMs: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e6,
                    contextLength: Int(model.contextLength()), backends: computeBackends(),
                    requestedDevice: device, deviceName: model.deviceName(),
                    deviceNotice: model.deviceNotice()))
            } catch {
                return .failed(name: file.name, message: describe(error))
            }
        }.value
    }

    /// Releases the model.
    public func close() {
        state = .empty
    }
}
