package ai.tah.app

import ai.tah.sdk.GenerationConfig
import ai.tah.sdk.GenerationUpdate
import ai.tah.sdk.IterationMode
import ai.tah.sdk.TahModel
import ai.tah.sdk.generateUpdates
import ai.tah.sdk.greedyGenerationConfig
import ai.tah.sdk.userPrompt

/** A prompt of the benchmark. */
data class BenchmarkPrompt(val id: String, val text: String)

/** The fixed prompt set: short math-tutoring questions, as the apps are for. */
val BENCHMARK_PROMPTS: List<BenchmarkPrompt> = listOf(
    BenchmarkPrompt("add", "What is 347 + 589?"),
    BenchmarkPrompt("multiply", "What is 23 times 47?"),
    BenchmarkPrompt("muffins", "A baker makes 24 muffins, then sells 3 boxes of 6. How many muffins are left?"),
    BenchmarkPrompt("fraction", "What is 3/4 of 128?"),
    BenchmarkPrompt("discount", "A shirt costs \$40 and is 15% off. What is the \"sale\" price?"),
)

/** What to run: every prompt in every mode, [repetitions] times. */
data class BenchmarkPlan(
    val prompts: List<BenchmarkPrompt> = BENCHMARK_PROMPTS,
    val modes: List<IterationMode> = listOf(IterationMode.DECIDER, IterationMode.NEVER),
    val maxNewTokens: Int = 64,
    val thinking: Boolean = false,
    /** The decider's threshold in DECIDER mode (null: the model's own). */
    val threshold: Float? = null,
    val repetitions: Int = 1,
    /** Unrecorded runs of the first prompt before the measured ones (the first run pages the weights in). */
    val warmupRuns: Int = 1,
) {
    val measuredRuns: Int get() = prompts.size * modes.size * repetitions

    /** Greedy decoding, so that runs and devices compare on the same output. */
    fun config(mode: IterationMode): GenerationConfig = greedyGenerationConfig().copy(
        maxNewTokens = maxNewTokens.toUInt(),
        enableThinking = thinking,
        mode = mode,
        threshold = threshold.takeIf { mode == IterationMode.DECIDER },
    )
}

/** One measured run. */
data class BenchmarkRow(
    val prompt: BenchmarkPrompt,
    val mode: IterationMode,
    val threshold: Float?,
    val thinking: Boolean,
    val repetition: Int,
    val report: LatencyReport,
)

/**
 * Runs a [BenchmarkPlan] on [model]. Every run uses a fresh session, so each
 * one prefills its whole prompt (no cache reuse between runs).
 */
class BenchmarkRunner(private val model: TahModel) {
    /**
     * Runs [plan], calling [onRow] after each measured run. Cancelling the
     * calling coroutine cancels the running generation within one forward
     * pass. Throws the [ai.tah.sdk.TahException] of a failed run.
     */
    suspend fun run(plan: BenchmarkPlan, onRow: (BenchmarkRow) -> Unit = {}): List<BenchmarkRow> {
        val first = plan.prompts.firstOrNull() ?: return emptyList()
        repeat(plan.warmupRuns) { measure(first, plan.modes.first(), plan) }
        val rows = ArrayList<BenchmarkRow>(plan.measuredRuns)
        for (repetition in 1..plan.repetitions) {
            for (mode in plan.modes) {
                for (prompt in plan.prompts) {
                    val row = BenchmarkRow(prompt, mode, plan.threshold.takeIf { mode == IterationMode.DECIDER }, plan.thinking, repetition, measure(prompt, mode, plan))
                    rows += row
                    onRow(row)
                }
            }
        }
        return rows
    }

    private suspend fun measure(prompt: BenchmarkPrompt, mode: IterationMode, plan: BenchmarkPlan): LatencyReport =
        model.newSession().use { session ->
            val profiler = LatencyProfiler().apply { start() }
            var report: LatencyReport? = null
            session.generateUpdates(userPrompt(prompt.text), plan.config(mode)).collect { update ->
                when (update) {
                    is GenerationUpdate.Token -> profiler.onToken(update.event)
                    is GenerationUpdate.Finished -> report = profiler.finish(update.result)
                }
            }
            checkNotNull(report) { "the generation ended without a result" }
        }
}
