package ai.tah.app

import ai.tah.sdk.GenerationResult
import ai.tah.sdk.StopReason
import ai.tah.sdk.TokenEvent

/**
 * One generation's latency figures: the engine's own measurements (its
 * [ai.tah.sdk.Stats]) and what the app measured around them.
 */
data class LatencyReport(
    /** Where the model ran: `cpu`, or `gpu: <adapter> (<backend>)`. */
    val device: String,
    /** Why it ran on the CPU although the GPU was asked for (null: it ran where asked). */
    val deviceNotice: String?,
    /** How long the engine took to load the model. */
    val loadMs: Double,
    /** Engine: from the start of the generation to its first token (template, tokenization, prefill). */
    val timeToFirstTokenMs: Double,
    /** App: from the request to the first token delivered to the app (null: no token came). */
    val firstTokenWallMs: Double?,
    /** App: from the request to the result. */
    val totalWallMs: Double,
    /** Prompt tokens run through the model (not counting a reused cached prefix). */
    val prefillTokens: Int,
    /** Prompt tokens whose KV entries were reused from the session's cache. */
    val reusedPrefixTokens: Int,
    val prefillTokensPerSecond: Double,
    val decodeTokens: Int,
    val decodeTokensPerSecond: Double,
    /** Mean passes over every token the generation ran through the model (prompt and output). */
    val passesPerToken: Double,
    /** Share of those tokens that took more than one pass, in percent. */
    val hardTokenPercent: Double,
    /** Generated tokens that took more than one pass (depth >= 2). */
    val generatedHardTokens: Int,
    /** Largest KV cache size during the generation. */
    val peakKvBytes: Long,
    /** The process's memory when the generation ended. */
    val memory: MemorySample?,
    /** Compute threads the generation ran on. */
    val threads: Int,
    val stopReason: StopReason,
)

/**
 * Measures one generation: call [start] when the request is made, [onToken]
 * for every streamed token and [finish] with the result. Not thread-safe: use
 * it from the coroutine that collects the generation.
 */
class LatencyProfiler {
    private var startedAt = 0L
    private var firstTokenAt: Long? = null
    private val depths = ArrayList<UInt>()

    fun start() {
        startedAt = System.nanoTime()
        firstTokenAt = null
        depths.clear()
    }

    fun onToken(event: TokenEvent) {
        if (firstTokenAt == null) firstTokenAt = System.nanoTime()
        depths += event.depth
    }

    fun finish(result: GenerationResult): LatencyReport {
        val now = System.nanoTime()
        val stats = result.stats
        // A last event may carry held-back text with the EOS token, which is not part of the output.
        val generated = depths.take(result.tokenIds.size)
        return LatencyReport(
            device = stats.device,
            deviceNotice = stats.deviceNotice,
            loadMs = stats.loadMs,
            timeToFirstTokenMs = stats.timeToFirstTokenMs,
            firstTokenWallMs = firstTokenAt?.let { (it - startedAt) / 1e6 },
            totalWallMs = (now - startedAt) / 1e6,
            prefillTokens = stats.prefillTokens.toInt(),
            reusedPrefixTokens = stats.reusedPrefixTokens.toInt(),
            prefillTokensPerSecond = stats.prefillTokPerS,
            decodeTokens = stats.decodeTokens.toInt(),
            decodeTokensPerSecond = stats.decodeTokPerS,
            passesPerToken = stats.passesPerToken,
            hardTokenPercent = stats.hardTokenFraction * 100,
            generatedHardTokens = generated.count { it > 1u },
            peakKvBytes = stats.peakKvBytes.toLong(),
            memory = ProcessMemory.sample(),
            threads = stats.threads.toInt(),
            stopReason = result.stopReason,
        )
    }
}
