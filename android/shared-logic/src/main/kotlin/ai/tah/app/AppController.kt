package ai.tah.app

import ai.tah.sdk.Device
import ai.tah.sdk.GenerationConfig
import ai.tah.sdk.TahException
import ai.tah.sdk.TrimLevel
import ai.tah.sdk.defaultGenerationConfig
import java.io.File
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * Everything the sample apps do apart from drawing: the model, the chat and
 * the benchmark, in the view model's [scope] (Android: `viewModelScope`, so
 * a rotation keeps the running answer; the view model's end cancels it), and
 * the phone's side of things: the thermal state, memory trims, the
 * conversation saved after every answer.
 *
 * @param ioDispatcher where blocking work runs (`Dispatchers.IO`): model
 *   loads, saving and restoring the conversation, memory trims.
 * @param chatConfig the chat's sampling settings (Qwen3's thinking defaults).
 * @param threads compute threads while the phone is cool (null: one per core).
 * @param conversationFile where the conversation is saved after every
 *   answer and restored from at launch (null: not saved).
 */
class AppController(
    private val scope: CoroutineScope,
    private val ioDispatcher: CoroutineDispatcher,
    chatConfig: GenerationConfig = defaultGenerationConfig(),
    threads: UInt? = null,
    conversationFile: File? = null,
) {
    private val preferredThreads = threads?.toInt() ?: Runtime.getRuntime().availableProcessors()
    val models = ModelHolder(ioDispatcher, threads)
    val chat = ChatController(scope, models, chatConfig, ioDispatcher, conversationFile)
    val benchmark = BenchmarkController(scope, models)

    /** Where models load: the settings' CPU / GPU switch. */
    var device: Device = Device.CPU
        private set

    /** Opens the current model's file again (for [switchDevice]), and its tokenizer. */
    private var reopen: (() -> ModelFile)? = null
    private var tokenizerPath: String? = null

    private val _phone = MutableStateFlow(PhoneState())

    /** Thermal state, compute threads and the last memory trim, for the latency panel. */
    val phone: StateFlow<PhoneState> = _phone.asStateFlow()

    /**
     * Opens the model at launch (on [device]), then restores the last
     * conversation: the model the user picked last if [lastPicked] still
     * exists, else the one [bundled] with the app (so a first launch works
     * offline).
     */
    fun launch(lastPicked: String?, bundled: () -> ModelFile): Job = scope.launch {
        val picked = lastPicked?.takeIf { File(it).isFile }
        open(picked?.let { path -> { ModelFile.path(path) } } ?: bundled)
        chat.restoreConversation()
    }

    /**
     * Replaces the model (loaded on [device]): the chat lets go of its
     * session and the benchmark stops before the old model is closed. The
     * conversation stays and continues on the new model.
     */
    fun loadModel(path: String, tokenizerPath: String? = null, device: Device = this.device): Job {
        this.device = device
        return scope.launch { open({ ModelFile.path(path) }, tokenizerPath) }
    }

    /**
     * The settings' switch: models load on [device] from now on, and the
     * loaded model (if any) reloads there from its file; the conversation
     * stays. Null when no model is loaded.
     */
    fun switchDevice(device: Device): Job? {
        this.device = device
        val reopen = reopen?.takeIf { models.state.value is ModelState.Ready } ?: return null
        return scope.launch { open(reopen, tokenizerPath) }
    }

    private suspend fun open(reopen: () -> ModelFile, tokenizerPath: String? = null) {
        this.reopen = reopen
        this.tokenizerPath = tokenizerPath
        chat.detach()
        benchmark.cancelAndJoin()
        reopen().use { models.load(it, tokenizerPath, device) }
        applyThreads()
    }

    /** Starts the benchmark, stopping the chat's answer (they would slow each other down). */
    fun startBenchmark(): Boolean {
        chat.stop()
        return benchmark.start()
    }

    /** The app left the screen (Android `ON_STOP`, iOS background): stop all work. */
    fun onBackground() {
        chat.stop()
        benchmark.cancel()
    }

    /**
     * The phone's thermal state changed: fewer compute threads when it is
     * serious or critical ([threadsFor]), from the next answer on.
     */
    fun onThermalState(thermal: ThermalState) {
        _phone.update { it.copy(thermal = thermal) }
        applyThreads()
    }

    private fun applyThreads() {
        val model = models.model
        val threads = threadsFor(_phone.value.thermal, preferredThreads)
        try {
            model?.setThreads(threads.toUInt())
        } catch (e: TahException) {
            return
        }
        _phone.update { it.copy(threads = model?.threads()?.toInt()) }
    }

    /** Android's `onTrimMemory(level)`: a trim of the level it calls for ([trimLevelForAndroid]). */
    fun onTrimMemory(androidLevel: Int): Job? = trimLevelForAndroid(androidLevel)?.let(::trimMemory)

    /**
     * Gives memory back to the system (see [TrimLevel]); the report goes to
     * [phone]. A running answer keeps its KV cache.
     */
    fun trimMemory(level: TrimLevel): Job = scope.launch {
        val model = models.model ?: return@launch
        val report = try {
            withContext(ioDispatcher) { model.trimMemory(level) }
        } catch (e: TahException) {
            return@launch
        }
        _phone.update { it.copy(lastTrim = level to report) }
    }

    /** The view model ends: cancel everything and free the model. */
    fun close() {
        chat.detach()
        benchmark.cancel()
        models.close()
    }
}
