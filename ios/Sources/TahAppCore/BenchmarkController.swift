import Observation
import TahSDK

/// The benchmark screen's logic: runs a `BenchmarkPlan` on the model of `models`.
@MainActor
@Observable
public final class BenchmarkController {
    /// What the next run does (ignored while one runs).
    public var plan = BenchmarkPlan()
    public private(set) var running = false
    public private(set) var rows = [BenchmarkRow]()
    /// Measured runs of the current (or last) run's plan.
    public private(set) var totalRuns = 0
    /// Why the last run stopped early, if it did.
    public private(set) var message: String?

    @ObservationIgnored private let models: ModelHolder
    @ObservationIgnored private var task: Task<Void, Never>?

    public init(models: ModelHolder) {
        self.models = models
    }

    public var progress: Double {
        totalRuns == 0 ? 0 : Double(rows.count) / Double(totalRuns)
    }

    /// Runs the plan from scratch. False, doing nothing, without a model or
    /// while a run goes on.
    @discardableResult
    public func start() -> Bool {
        guard !running, let model = models.model else { return false }
        let plan = self.plan
        running = true
        rows = []
        message = nil
        totalRuns = plan.measuredRuns
        task = Task {
            do {
                _ = try await BenchmarkRunner(model: model).run(plan) { self.rows.append($0) }
                finish(nil)
            } catch is CancellationError {
                finish("Stopped")
            } catch {
                finish(describe(error))
            }
        }
        return true
    }

    private func finish(_ message: String?) {
        running = false
        self.message = message
    }

    /// Stops the run; the rows measured so far stay.
    public func cancel() {
        task?.cancel()
    }

    /// Stops the run and waits until it has let go of the model.
    public func cancelAndWait() async {
        task?.cancel()
        await task?.value
    }

    /// The rows so far as CSV.
    public func csv(device: String) -> String {
        var model = ""
        if case .ready(let loaded) = models.state {
            model = loaded.name
        }
        return BenchmarkCsv.render(rows, device: device, model: model)
    }
}
