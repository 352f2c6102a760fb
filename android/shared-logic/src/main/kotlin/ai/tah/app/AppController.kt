package ai.tah.app

import ai.tah.sdk.Device
import ai.tah.sdk.GenerationConfig
import ai.tah.sdk.defaultGenerationConfig
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.launch

/**
 * Everything the sample apps do apart from drawing: the model, the chat and
 * the benchmark, in the view model's [scope] (Android: `viewModelScope`, so
 * a rotation keeps the running answer; the view model's end cancels it).
 *
 * @param loadDispatcher where the blocking model load runs (`Dispatchers.IO`).
 * @param chatConfig the chat's sampling settings (Qwen3's thinking defaults).
 * @param threads compute threads of the model (null: one per core).
 */
class AppController(
    private val scope: CoroutineScope,
    loadDispatcher: CoroutineDispatcher,
    chatConfig: GenerationConfig = defaultGenerationConfig(),
    threads: UInt? = null,
) {
    val models = ModelHolder(loadDispatcher, threads)
    val chat = ChatController(scope, models, chatConfig)
    val benchmark = BenchmarkController(scope, models)

    /** Where models load: the settings' CPU / GPU switch. */
    var device: Device = Device.CPU
        private set

    /**
     * Replaces the model (loaded on [device]): the chat lets go of its
     * session and the benchmark stops before the old model is closed. The
     * conversation stays and continues on the new model.
     */
    fun loadModel(path: String, tokenizerPath: String? = null, device: Device = this.device): Job {
        this.device = device
        return scope.launch {
            chat.detach()
            benchmark.cancelAndJoin()
            models.load(path, tokenizerPath, device)
        }
    }

    /**
     * The settings' switch: models load on [device] from now on, and the
     * loaded model (if any) reloads there; the conversation stays. Null when
     * no model is loaded.
     */
    fun switchDevice(device: Device): Job? {
        this.device = device
        val ready = models.state.value as? ModelState.Ready ?: return null
        return loadModel(ready.path, ready.tokenizerPath, device)
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

    /** The view model ends: cancel everything and free the model. */
    fun close() {
        chat.detach()
        benchmark.cancel()
        models.close()
    }
}
