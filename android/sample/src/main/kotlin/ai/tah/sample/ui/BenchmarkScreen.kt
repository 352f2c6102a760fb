package ai.tah.sample.ui

import ai.tah.app.BenchmarkRow
import ai.tah.sample.SampleViewModel
import ai.tah.sdk.IterationMode
import android.os.Build
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.FilterChip
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle

private val device = "${Build.MANUFACTURER} ${Build.MODEL}"

@OptIn(ExperimentalMaterial3Api::class)
@Composable
fun BenchmarkScreen(viewModel: SampleViewModel) {
    val bench = viewModel.app.benchmark
    val state by bench.state.collectAsStateWithLifecycle()
    val export = rememberLauncherForActivityResult(ActivityResultContracts.CreateDocument("text/csv")) { uri ->
        uri?.let { viewModel.exportCsv(it, device) }
    }
    Column(Modifier.padding(8.dp)) {
        Text(
            "${state.plan.prompts.size} prompts × ${state.plan.modes.size} modes, greedy, " +
                "${state.plan.maxNewTokens} new tokens, thinking ${if (state.plan.thinking) "on" else "off"}",
            style = MaterialTheme.typography.bodySmall,
        )
        Row(horizontalArrangement = Arrangement.spacedBy(6.dp), verticalAlignment = Alignment.CenterVertically) {
            for (mode in IterationMode.entries) {
                FilterChip(
                    selected = mode in state.plan.modes,
                    onClick = { bench.updatePlan { p -> p.copy(modes = if (mode in p.modes) p.modes - mode else p.modes + mode) } },
                    label = { Text(mode.name.lowercase()) },
                    enabled = !state.running,
                )
            }
        }
        Row(horizontalArrangement = Arrangement.spacedBy(6.dp)) {
            if (state.running) {
                Button(onClick = bench::cancel) { Text("Stop") }
            } else {
                Button(onClick = { viewModel.app.startBenchmark() }, enabled = state.plan.modes.isNotEmpty()) { Text("Run") }
            }
            OutlinedButton(onClick = { export.launch("tah-benchmark.csv") }, enabled = state.rows.isNotEmpty() && !state.running) {
                Text("Export CSV")
            }
        }
        if (state.running) LinearProgressIndicator(progress = { state.progress }, modifier = Modifier.fillMaxWidth().padding(vertical = 4.dp))
        state.message?.let { Text(it, style = MaterialTheme.typography.bodySmall) }
        LazyColumn { items(state.rows) { RowSummary(it) } }
    }
}

@Composable
private fun RowSummary(row: BenchmarkRow) {
    val r = row.report
    Text(
        "${row.prompt.id} · ${row.mode.name.lowercase()} · TTFT ${"%.0f".format(r.timeToFirstTokenMs)} ms · " +
            "prefill ${"%.1f".format(r.prefillTokensPerSecond)} · decode ${"%.1f".format(r.decodeTokensPerSecond)} tok/s · " +
            "${"%.2f".format(r.passesPerToken)} passes · ${"%.1f".format(r.hardTokenPercent)}% hard",
        style = MaterialTheme.typography.bodySmall,
        modifier = Modifier.padding(vertical = 2.dp),
    )
}
