package ai.tah.sample.ui

import ai.tah.app.ModelState
import ai.tah.sample.SampleViewModel
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Tab
import androidx.compose.material3.TabRow
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableIntStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle

@Composable
fun SampleApp(viewModel: SampleViewModel) {
    var tab by rememberSaveable { mutableIntStateOf(0) }
    MaterialTheme {
        Scaffold { padding ->
            Column(Modifier.padding(padding).fillMaxSize()) {
                ModelBar(viewModel)
                TabRow(selectedTabIndex = tab) {
                    Tab(selected = tab == 0, onClick = { tab = 0 }, text = { Text("Chat") })
                    Tab(selected = tab == 1, onClick = { tab = 1 }, text = { Text("Benchmark") })
                }
                when (tab) {
                    0 -> ChatScreen(viewModel.app)
                    else -> BenchmarkScreen(viewModel)
                }
            }
        }
    }
}

/** The model's state and the button that picks a `.gguf` with the system file picker. */
@Composable
private fun ModelBar(viewModel: SampleViewModel) {
    val model by viewModel.app.models.state.collectAsStateWithLifecycle()
    val importing by viewModel.importing.collectAsStateWithLifecycle()
    val importError by viewModel.importError.collectAsStateWithLifecycle()
    // .gguf has no registered MIME type: offer every file.
    val pick = rememberLauncherForActivityResult(ActivityResultContracts.OpenDocument()) { uri ->
        uri?.let(viewModel::importModel)
    }
    Row(Modifier.padding(8.dp), verticalAlignment = Alignment.CenterVertically) {
        val status = when {
            importing != null -> "Copying $importing…"
            importError != null -> importError!!
            else -> when (val m = model) {
                ModelState.Empty -> "No model: open a .gguf file"
                is ModelState.Loading -> "Loading ${m.name}…"
                is ModelState.Ready -> "${m.name} · ${m.contextLength} ctx · " +
                    "load ${"%.0f".format(m.loadWallMs)} ms · ${m.deviceName}" + (m.deviceNotice?.let { " ($it)" } ?: "")
                is ModelState.Failed -> m.message
            }
        }
        Text(status, Modifier.weight(1f), style = MaterialTheme.typography.bodySmall)
        Button(onClick = { pick.launch(arrayOf("*/*")) }, enabled = importing == null && model !is ModelState.Loading) {
            Text("Open model")
        }
    }
}
