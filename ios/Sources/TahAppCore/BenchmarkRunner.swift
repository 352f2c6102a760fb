import TahSDK

/// A prompt of the benchmark.
public struct BenchmarkPrompt: Equatable, Sendable {
    public let id: String
    public let text: String

    public init(id: String, text: String) {
        self.id = id
        self.text = text
    }
}

/// The fixed prompt set: short math-tutoring questions, as the apps are for.
public let benchmarkPrompts = [
    BenchmarkPrompt(id: "add", text: "What is 347 + 589?"),
    BenchmarkPrompt(id: "multiply", text: "What is 23 times 47?"),
    BenchmarkPrompt(id: "muffins", text: "A baker makes 24 muffins, then sells 3 boxes of 6. How many muffins are left?"),
    BenchmarkPrompt(id: "fraction", text: "What is 3/4 of 128?"),
    BenchmarkPrompt(id: "discount", text: "A shirt costs $40 and is 15% off. What is the \"sale\" price?"),
]

/// What to run: every prompt in every mode, `repetitions` times.
public struct BenchmarkPlan: Equatable, Sendable {
    public var prompts: [BenchmarkPrompt]
    public var modes: [IterationMode]
    public var maxNewTokens: Int
    public var thinking: Bool
    /// The decider's threshold in `.decider` mode (nil: the model's own).
    public var threshold: Float?
    public var repetitions: Int
    /// Unrecorded runs of the first prompt before the measured ones (the first
    /// run pages the weights in).
    public var warmupRuns: Int

    public init(
        prompts: [BenchmarkPrompt] = benchmarkPrompts, modes: [IterationMode] = [.decider, .never],
        maxNewTokens: Int = 64, thinking: Bool = false, threshold: Float? = nil, repetitions: Int = 1,
        warmupRuns: Int = 1
    ) {
        self.prompts = prompts
        self.modes = modes
        self.maxNewTokens = maxNewTokens
        self.thinking = thinking
        self.threshold = threshold
        self.repetitions = repetitions
        self.warmupRuns = warmupRuns
    }

    public var measuredRuns: Int { prompts.count * modes.count * repetitions }

    /// Greedy decoding, so that runs and devices compare on the same output.
    public func config(_ mode: IterationMode) -> GenerationConfig {
        var config = greedyGenerationConfig()
        config.maxNewTokens = UInt32(maxNewTokens)
        config.enableThinking = thinking
        config.mode = mode
        config.threshold = mode == .decider ? threshold : nil
        return config
    }
}

/// One measured run.
public struct BenchmarkRow: Equatable, Sendable {
    public let prompt: BenchmarkPrompt
    public let mode: IterationMode
    public let threshold: Float?
    public let thinking: Bool
    public let repetition: Int
    public let report: LatencyReport
}

/// Runs a `BenchmarkPlan` on a model. Every run uses a fresh session, so each
/// one prefills its whole prompt (no cache reuse between runs).
public struct BenchmarkRunner: Sendable {
    public let model: TahModel

    public init(model: TahModel) {
        self.model = model
    }

    /// Runs `plan`, calling `onRow` after each measured run. Cancelling the
    /// calling task cancels the running generation within one forward pass
    /// and throws `CancellationError`; a failed run throws its `TahError`.
    public func run(
        _ plan: BenchmarkPlan, onRow: @MainActor (BenchmarkRow) -> Void = { _ in }
    ) async throws -> [BenchmarkRow] {
        guard let first = plan.prompts.first, let firstMode = plan.modes.first else { return [] }
        for _ in 0..<plan.warmupRuns {
            _ = try await measure(first, firstMode, plan)
        }
        var rows = [BenchmarkRow]()
        for repetition in 1...max(plan.repetitions, 1) {
            for mode in plan.modes {
                for prompt in plan.prompts {
                    let row = BenchmarkRow(
                        prompt: prompt, mode: mode, threshold: mode == .decider ? plan.threshold : nil,
                        thinking: plan.thinking, repetition: repetition,
                        report: try await measure(prompt, mode, plan))
                    rows.append(row)
                    await onRow(row)
                }
            }
        }
        return rows
    }

    private func measure(_ prompt: BenchmarkPrompt, _ mode: IterationMode, _ plan: BenchmarkPlan) async throws
        -> LatencyReport
    {
        var profiler = LatencyProfiler()
        var report: LatencyReport?
        for try await update in model.newSession().updates(.user(prompt.text), config: plan.config(mode)) {
            switch update {
            case .token(let event): profiler.record(event)
            case .finished(let result): report = profiler.finish(result)
            }
        }
        // A cancelled task ends the stream early, without a result.
        try Task.checkCancellation()
        guard let report else { throw TahError.Internal(reason: "the generation ended without a result") }
        return report
    }
}
