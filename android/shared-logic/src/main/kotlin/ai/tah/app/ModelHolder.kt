package ai.tah.app

import ai.tah.sdk.ComputeBackends
import ai.tah.sdk.Device
import ai.tah.sdk.ModelOptions
import ai.tah.sdk.TahException
import ai.tah.sdk.TahModel
import ai.tah.sdk.computeBackends
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.currentCoroutineContext
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.getAndUpdate
import kotlinx.coroutines.isActive
import kotlinx.coroutines.withContext

/** The model the app works with. */
sealed interface ModelState {
    data object Empty : ModelState

    /** [name]: the file's name, or what the app calls a bundled model. */
    data class Loading(val name: String) : ModelState

    data class Ready(
        val model: TahModel,
        val name: String,
        /** Wall time of [TahModel.load] as the app saw it. */
        val loadWallMs: Double,
        val contextLength: Int,
        val backends: ComputeBackends,
        /** The device the app asked for. */
        val requestedDevice: Device,
        /** Where the model runs: `cpu`, or `gpu: <adapter> (<backend>)`. */
        val deviceName: String,
        /** Why the model runs on the CPU although the GPU was asked for (null: it runs where asked). */
        val deviceNotice: String?,
    ) : ModelState

    data class Failed(val name: String, val message: String) : ModelState
}

/**
 * Loads and owns the one model of the app. Loading blocks a thread of
 * [loadDispatcher] (seconds for a large file), never the caller's.
 *
 * @param threads compute threads of the model (null: one per core).
 */
class ModelHolder(
    private val loadDispatcher: CoroutineDispatcher,
    private val threads: UInt? = null,
) {
    private val _state = MutableStateFlow<ModelState>(ModelState.Empty)
    val state: StateFlow<ModelState> = _state.asStateFlow()

    /** The loaded model, if any. */
    val model: TahModel? get() = (_state.value as? ModelState.Ready)?.model

    /**
     * Loads [file] (a `.gguf` file or a checkpoint directory by path, or a
     * `.gguf` inside an open file by descriptor) on [device], closing the
     * current model first. Does nothing while another load runs. A GPU that
     * cannot run the model gives a CPU model and a
     * [ModelState.Ready.deviceNotice], never a failed load. Sessions of the
     * old model must be closed by their owners (their engine keeps the
     * weights alive until then). Does not close [file].
     */
    suspend fun load(file: ModelFile, tokenizerPath: String? = null, device: Device = Device.CPU) {
        val previous = _state.value
        if (previous is ModelState.Loading || !_state.compareAndSet(previous, ModelState.Loading(file.name))) return
        (previous as? ModelState.Ready)?.model?.close()
        val started = System.nanoTime()
        val loaded = try {
            // Not cancellable half-way: a model loaded for a cancelled caller is closed below.
            withContext(loadDispatcher + NonCancellable) {
                val options = ModelOptions(threads = threads, tokenizerPath = tokenizerPath, device = device, gpuFallback = true)
                val model = TahModel.loadFrom(file.source, options)
                ModelState.Ready(
                    model, file.name, (System.nanoTime() - started) / 1e6, model.contextLength().toInt(),
                    computeBackends(), device, model.deviceName(), model.deviceNotice(),
                )
            }
        } catch (e: TahException) {
            ModelState.Failed(file.name, e.describe())
        }
        if (!currentCoroutineContext().isActive) {
            (loaded as? ModelState.Ready)?.model?.close()
            _state.value = ModelState.Empty
            return
        }
        _state.value = loaded
    }

    /** Closes the model. */
    fun close() {
        (_state.getAndUpdate { ModelState.Empty } as? ModelState.Ready)?.model?.close()
    }
}
