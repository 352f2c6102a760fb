package ai.tah.sample.ui

import ai.tah.app.AppController
import ai.tah.app.ChatEntry
import ai.tah.app.ChatSettings
import ai.tah.app.EntryStatus
import ai.tah.app.ModelState
import ai.tah.sdk.Device
import ai.tah.sdk.IterationMode
import ai.tah.sdk.Role
import androidx.compose.foundation.background
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.Spacer
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.width
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.lazy.rememberLazyListState
import androidx.compose.material3.Button
import androidx.compose.material3.ExperimentalMaterial3Api
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Slider
import androidx.compose.material3.Switch
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle

@Composable
fun ChatScreen(app: AppController) {
    val state by app.chat.state.collectAsStateWithLifecycle()
    val phone by app.phone.collectAsStateWithLifecycle()
    val list = rememberLazyListState()
    LaunchedEffect(state.entries.size, state.entries.lastOrNull()?.text?.length) {
        if (state.entries.isNotEmpty()) list.scrollToItem(state.entries.lastIndex)
    }
    Column(Modifier.padding(horizontal = 8.dp)) {
        DeviceSwitch(app, enabled = !state.generating)
        SettingsPanel(state.settings, enabled = !state.generating) { change -> app.chat.updateSettings(change) }
        LatencyPanel(state.lastReport, phone)
        state.notice?.let { Text(it, style = MaterialTheme.typography.labelSmall) }
        LazyColumn(Modifier.weight(1f).fillMaxWidth(), state = list) {
            items(state.entries, key = { it.id }) { Message(it) }
        }
        InputRow(generating = state.generating, onSend = app.chat::send, onStop = app.chat::stop, onNew = app.chat::newConversation)
    }
}

/** Where the model runs: switching reloads it on the other device (the conversation stays). */
@Composable
private fun DeviceSwitch(app: AppController, enabled: Boolean) {
    val model by app.models.state.collectAsStateWithLifecycle()
    Row(verticalAlignment = Alignment.CenterVertically, horizontalArrangement = Arrangement.spacedBy(6.dp)) {
        Text("Device")
        for (device in Device.entries) {
            FilterChip(
                selected = app.device == device,
                onClick = { app.switchDevice(device) },
                label = { Text(device.name) },
                enabled = enabled && model !is ModelState.Loading,
            )
        }
        (model as? ModelState.Ready)?.let { Text(it.deviceName, style = MaterialTheme.typography.bodySmall) }
    }
}

@OptIn(ExperimentalMaterial3Api::class)
@Composable
private fun SettingsPanel(settings: ChatSettings, enabled: Boolean, update: ((ChatSettings) -> ChatSettings) -> Unit) {
    Column {
        Row(verticalAlignment = Alignment.CenterVertically, horizontalArrangement = Arrangement.spacedBy(6.dp)) {
            Text("Thinking")
            Switch(checked = settings.thinking, onCheckedChange = { on -> update { it.copy(thinking = on) } }, enabled = enabled)
            Spacer(Modifier.width(8.dp))
            for (mode in IterationMode.entries) {
                FilterChip(
                    selected = settings.mode == mode,
                    onClick = { update { it.copy(mode = mode) } },
                    label = { Text(mode.name.lowercase()) },
                    enabled = enabled,
                )
            }
        }
        if (settings.mode == IterationMode.DECIDER) {
            Row(verticalAlignment = Alignment.CenterVertically) {
                val threshold = settings.threshold
                Text(if (threshold == null) "Threshold: model's" else "Threshold: ${"%.2f".format(threshold)}", Modifier.width(150.dp))
                Slider(
                    value = threshold ?: 0.5f,
                    onValueChange = { v -> update { it.copy(threshold = v) } },
                    valueRange = 0f..1f,
                    enabled = enabled,
                    modifier = Modifier.weight(1f),
                )
                OutlinedButton(onClick = { update { it.copy(threshold = null) } }, enabled = enabled && threshold != null) { Text("Reset") }
            }
        }
    }
}

@Composable
private fun Message(entry: ChatEntry) {
    val user = entry.role == Role.USER
    Column(
        Modifier.fillMaxWidth().padding(vertical = 4.dp),
        horizontalAlignment = if (user) Alignment.End else Alignment.Start,
    ) {
        Text(
            if (user) androidx.compose.ui.text.AnnotatedString(entry.text) else tinted(entry.spans),
            Modifier.background(if (user) Color(0xFFE3F2FD) else Color(0xFFF5F5F5)).padding(8.dp),
        )
        val note = when (val status = entry.status) {
            EntryStatus.Streaming -> "…"
            is EntryStatus.Finished -> with(status.report) {
                "${status.result.stopReason.name.lowercase()} · $decodeTokens tokens · $generatedHardTokens hard"
            }
            is EntryStatus.Failed -> status.message
            EntryStatus.Interrupted -> "interrupted"
            EntryStatus.Restored -> "restored"
            EntryStatus.Sent -> null
        }
        note?.let { Text(it, style = MaterialTheme.typography.labelSmall) }
    }
}

@Composable
private fun InputRow(generating: Boolean, onSend: (String) -> Boolean, onStop: () -> Unit, onNew: () -> Unit) {
    var text by rememberSaveable { mutableStateOf("") }
    Row(Modifier.padding(vertical = 8.dp), verticalAlignment = Alignment.CenterVertically) {
        OutlinedTextField(value = text, onValueChange = { text = it }, modifier = Modifier.weight(1f), placeholder = { Text("Ask a math question") })
        Spacer(Modifier.width(6.dp))
        if (generating) {
            Button(onClick = onStop) { Text("Stop") }
        } else {
            Button(onClick = { if (onSend(text)) text = "" }, enabled = text.isNotBlank()) { Text("Send") }
            OutlinedButton(onClick = onNew) { Text("New") }
        }
    }
}
