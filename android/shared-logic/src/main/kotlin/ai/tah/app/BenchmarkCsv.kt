package ai.tah.app

import java.util.Locale

/** The benchmark's rows as CSV (RFC 4180), one line per measured run. */
object BenchmarkCsv {
    val HEADER = listOf(
        "device", "compute", "model", "prompt_id", "prompt", "mode", "threshold", "thinking", "repetition", "stop_reason",
        "load_ms", "ttft_ms", "first_token_wall_ms", "total_wall_ms",
        "prefill_tokens", "prefill_tok_per_s", "decode_tokens", "decode_tok_per_s",
        "passes_per_token", "hard_token_pct", "generated_hard_tokens", "peak_kv_bytes", "rss_bytes", "peak_rss_bytes",
    )

    /**
     * [rows] measured with [model] (a file name) on [device] (e.g. the
     * phone's model name); `compute` is where the engine ran (`cpu`, `gpu: ...`).
     */
    fun render(rows: List<BenchmarkRow>, device: String, model: String): String = buildString {
        appendLine(HEADER.joinToString(","))
        for (row in rows) {
            val r = row.report
            val fields = listOf(
                device, r.device, model, row.prompt.id, row.prompt.text, row.mode.name.lowercase(),
                row.threshold?.let { number(it.toDouble()) } ?: "", row.thinking.toString(), row.repetition.toString(),
                r.stopReason.name.lowercase(),
                number(r.loadMs), number(r.timeToFirstTokenMs), r.firstTokenWallMs?.let(::number) ?: "", number(r.totalWallMs),
                r.prefillTokens.toString(), number(r.prefillTokensPerSecond), r.decodeTokens.toString(), number(r.decodeTokensPerSecond),
                number(r.passesPerToken), number(r.hardTokenPercent), r.generatedHardTokens.toString(), r.peakKvBytes.toString(),
                r.memory?.residentBytes?.toString() ?: "", r.memory?.peakResidentBytes?.toString() ?: "",
            )
            appendLine(fields.joinToString(",") { field(it) })
        }
    }

    /** A decimal point whatever the phone's locale. */
    private fun number(value: Double): String = String.format(Locale.ROOT, "%.3f", value)

    /** Quotes a field holding a comma, a quote or a line break; doubles its quotes. */
    fun field(value: String): String =
        if (value.any { it == ',' || it == '"' || it == '\n' || it == '\r' }) "\"" + value.replace("\"", "\"\"") + "\"" else value
}
