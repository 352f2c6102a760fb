package ai.tah.sample.ui

import ai.tah.app.LatencyReport
import ai.tah.app.PhoneState
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp

/** The last answer's figures and the phone's state (heat, threads, the last memory trim). */
@Composable
fun LatencyPanel(report: LatencyReport?, phone: PhoneState) {
    Surface(tonalElevation = 2.dp, modifier = Modifier.padding(vertical = 4.dp)) {
        Column(Modifier.padding(6.dp)) {
            for (line in report?.let(::latencyLines).orEmpty() + phoneLines(phone)) {
                Text(line, style = MaterialTheme.typography.bodySmall)
            }
        }
    }
}

fun phoneLines(p: PhoneState): List<String> = listOfNotNull(
    "thermal ${p.thermal.name.lowercase()} · ${p.threads?.let { "$it threads" } ?: "–"}",
    p.lastTrim?.let { (level, r) ->
        "trim (${level.name.lowercase()}): ${mib(r.totalBytes.toLong())} given back " +
            "(weights ${mib(r.weightBytes.toLong())}, heap ${mib(r.heapBytes.toLong())}, KV ${mib(r.kvCacheBytes.toLong())})"
    },
)

fun latencyLines(r: LatencyReport): List<String> = listOf(
    "device ${r.device}" + (r.deviceNotice?.let { " ($it)" } ?: ""),
    "load ${ms(r.loadMs)} · TTFT ${ms(r.timeToFirstTokenMs)} (app ${r.firstTokenWallMs?.let(::ms) ?: "–"})",
    "prefill ${r.prefillTokens} tok @ ${"%.1f".format(r.prefillTokensPerSecond)} tok/s" +
        (if (r.reusedPrefixTokens > 0) " (+${r.reusedPrefixTokens} cached)" else "") +
        " · decode ${r.decodeTokens} tok @ ${"%.1f".format(r.decodeTokensPerSecond)} tok/s",
    "${"%.2f".format(r.passesPerToken)} passes/token · ${"%.1f".format(r.hardTokenPercent)}% hard · " +
        "${r.generatedHardTokens} hard answer tokens",
    "memory ${r.memory?.let { mib(it.residentBytes) } ?: "–"} (peak ${r.memory?.peakResidentBytes?.let(::mib) ?: "–"}) · KV ${mib(r.peakKvBytes)} · ${r.threads} threads",
)

private fun ms(value: Double) = "%.0f ms".format(value)

private fun mib(bytes: Long) = "%.1f MiB".format(bytes / 1048576.0)
