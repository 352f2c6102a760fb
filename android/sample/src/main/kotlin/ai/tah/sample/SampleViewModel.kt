package ai.tah.sample

import ai.tah.app.AppController
import ai.tah.app.ModelFile
import ai.tah.sdk.ModelSource
import android.app.Application
import android.content.Context
import android.net.Uri
import android.provider.OpenableColumns
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import java.io.File
import java.io.IOException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * The app's view model: the shared [AppController] in `viewModelScope`, so a
 * rotation keeps the model and a running answer; the view model's end
 * cancels the generation and frees the model. At launch it opens the last
 * model the user picked, else the one bundled in the APK, and restores the
 * last conversation (saved after every answer).
 */
class SampleViewModel(application: Application) : AndroidViewModel(application) {
    private val prefs = application.getSharedPreferences("tah-sample", Context.MODE_PRIVATE)

    val app = AppController(
        viewModelScope,
        Dispatchers.IO,
        conversationFile = File(application.filesDir, "conversation.tahstate"),
    )

    init {
        app.launch(prefs.getString(LAST_MODEL, null), ::bundledModel)
    }

    /**
     * The default model, an asset stored uncompressed in the APK
     * (`noCompress += "gguf"` in build.gradle.kts): the SDK maps it in place
     * through the asset's descriptor, nothing is copied to storage.
     */
    private fun bundledModel(): ModelFile {
        val asset = getApplication<Application>().assets.openFd(BUNDLED_MODEL)
        val source = ModelSource.Fd(asset.parcelFileDescriptor.fd, asset.startOffset.toULong(), asset.length.toULong())
        return ModelFile("$BUNDLED_MODEL (bundled)", source) { asset.close() }
    }

    private val _importing = MutableStateFlow<String?>(null)

    /** The name of the file being copied in, if any. */
    val importing: StateFlow<String?> = _importing.asStateFlow()

    private val _importError = MutableStateFlow<String?>(null)
    val importError: StateFlow<String?> = _importError.asStateFlow()

    /**
     * Loads a `.gguf` picked with the system file picker. The engine maps the
     * file from a path, so the document is copied once into the app's own
     * storage (a file of the same name and size is reused).
     */
    fun importModel(uri: Uri) {
        viewModelScope.launch {
            val resolver = getApplication<Application>().contentResolver
            val (name, size) = withContext(Dispatchers.IO) {
                resolver.query(uri, arrayOf(OpenableColumns.DISPLAY_NAME, OpenableColumns.SIZE), null, null, null)?.use {
                    if (it.moveToFirst()) it.getString(0) to it.getLong(1) else null
                }
            } ?: ("model.gguf" to -1L)
            val target = File(File(getApplication<Application>().filesDir, "models").apply { mkdirs() }, File(name).name)
            _importing.value = name
            _importError.value = null
            try {
                withContext(Dispatchers.IO) {
                    if (!(target.isFile && target.length() == size)) {
                        val partial = File(target.path + ".partial")
                        resolver.openInputStream(uri)?.use { input ->
                            partial.outputStream().use { input.copyTo(it, bufferSize = 1 shl 20) }
                        } ?: throw IOException("cannot open $name")
                        if (!partial.renameTo(target)) throw IOException("cannot write ${target.path}")
                    }
                }
            } catch (e: IOException) {
                _importError.value = "Could not copy $name: ${e.message}"
                return@launch
            } finally {
                _importing.value = null
            }
            prefs.edit().putString(LAST_MODEL, target.path).apply()
            app.loadModel(target.path)
        }
    }

    /** Writes the benchmark's rows as CSV to a document the user created. */
    fun exportCsv(uri: Uri, device: String) {
        val csv = app.benchmark.csv(device)
        viewModelScope.launch(Dispatchers.IO) {
            getApplication<Application>().contentResolver.openOutputStream(uri)?.use { it.write(csv.toByteArray()) }
        }
    }

    override fun onCleared() {
        app.close()
    }

    private companion object {
        /** The asset android/sample/src/main/assets/arith-tah.gguf (a link to models/arith-tah.gguf). */
        const val BUNDLED_MODEL = "arith-tah.gguf"
        const val LAST_MODEL = "lastModel"
    }
}
