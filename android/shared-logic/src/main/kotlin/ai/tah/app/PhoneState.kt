package ai.tah.app

import ai.tah.sdk.ModelSource
import ai.tah.sdk.TrimLevel
import ai.tah.sdk.TrimReport

/** How hot the phone is, as Android's `PowerManager` and iOS's `ProcessInfo` report it. */
enum class ThermalState {
    NOMINAL,
    FAIR,
    SERIOUS,
    CRITICAL;

    companion object {
        /**
         * From `PowerManager.getCurrentThermalStatus()`: `THERMAL_STATUS_NONE` (0) is nominal,
         * `LIGHT` (1) and `MODERATE` (2) fair ("UX not largely impacted"), `SEVERE` (3) serious,
         * `CRITICAL` (4), `EMERGENCY` (5) and `SHUTDOWN` (6) critical.
         */
        fun fromAndroidStatus(status: Int): ThermalState = when {
            status <= 0 -> NOMINAL
            status <= 2 -> FAIR
            status == 3 -> SERIOUS
            else -> CRITICAL
        }
    }
}

/**
 * The compute threads to use in a [thermal] state: all [preferred] threads while the phone is
 * cool, half of them when it is serious, one when critical (less heat, and a steadier speed
 * than a throttled core would give).
 */
fun threadsFor(thermal: ThermalState, preferred: Int): Int = when (thermal) {
    ThermalState.NOMINAL, ThermalState.FAIR -> preferred
    ThermalState.SERIOUS -> maxOf(1, preferred / 2)
    ThermalState.CRITICAL -> 1
}.coerceAtLeast(1)

/**
 * What an Android `onTrimMemory(level)` asks of the SDK: the running levels (`RUNNING_MODERATE` 5,
 * `RUNNING_LOW` 10) and `UI_HIDDEN` (20) a [TrimLevel.MODERATE] trim, which changes no answer;
 * `RUNNING_CRITICAL` (15) and the background levels (40, 60, 80), where the app is next in line
 * to be killed, a [TrimLevel.CRITICAL] one. Null for anything else.
 */
fun trimLevelForAndroid(level: Int): TrimLevel? = when (level) {
    5, 10, 20 -> TrimLevel.MODERATE
    15, 40, 60, 80 -> TrimLevel.CRITICAL
    else -> null
}

/** What the latency panel shows about the phone. */
data class PhoneState(
    val thermal: ThermalState = ThermalState.NOMINAL,
    /** Compute threads the next answer runs on (null: no model yet). */
    val threads: Int? = null,
    /** The last memory trim and what it gave back. */
    val lastTrim: Pair<TrimLevel, TrimReport>? = null,
)

/**
 * A model the app can open: a name to show and where its bytes are. A descriptor source (the
 * APK's uncompressed asset) is released by [close] once the model is loaded: the SDK keeps its
 * own duplicate of the descriptor.
 */
class ModelFile(val name: String, val source: ModelSource, private val release: () -> Unit = {}) : AutoCloseable {
    override fun close() = release()

    companion object {
        fun path(path: String) = ModelFile(path.substringAfterLast('/'), ModelSource.Path(path))
    }
}
