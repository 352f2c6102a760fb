package ai.tah.app

import java.io.File
import java.io.IOException

/** The process's memory at one moment. */
data class MemorySample(
    /** Resident set size: the pages in RAM, mapped model pages included. */
    val residentBytes: Long,
    /** The highest resident set size so far (`VmHWM`), when known. */
    val peakResidentBytes: Long?,
)

/** Reads the process's memory from `/proc/self/status` (Android and Linux). */
object ProcessMemory {
    /** The current figures, or null where `/proc/self/status` cannot be read. */
    fun sample(): MemorySample? = try {
        parseProcStatus(File("/proc/self/status").readText())
    } catch (e: IOException) {
        null
    }

    /** Parses the `VmRSS` and `VmHWM` lines (in kB) of a `/proc/<pid>/status` text. */
    fun parseProcStatus(status: String): MemorySample? {
        fun bytes(key: String): Long? = status.lineSequence()
            .firstOrNull { it.startsWith("$key:") }
            ?.substringAfter(':')?.trim()?.removeSuffix("kB")?.trim()
            ?.toLongOrNull()?.times(1024)
        val resident = bytes("VmRSS") ?: return null
        return MemorySample(resident, bytes("VmHWM"))
    }
}
