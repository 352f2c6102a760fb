// What the end-to-end suites share (bindings/kotlin/tests/BindingsTest.kt,
// android/shared-logic/tests/AppLogicTest.kt): a minimal runner, assertions
// and the fixture's greedy cases. Not a mock of anything: the suites drive
// the real library.
package ai.tah.testing

import ai.tah.sdk.IterationMode
import ai.tah.sdk.TahException
import ai.tah.sdk.TahSession
import com.sun.jna.Library
import com.sun.jna.Native
import java.io.File
import kotlin.system.exitProcess

/** A fixture case: a user message, its rendered prompt and the reference's greedy tokens. */
class Case(val name: String, val mode: IterationMode, val text: String, val prompt: String, val tokens: List<UInt>)

fun unhex(s: String): String = String(s.chunked(2).map { it.toInt(16).toByte() }.toByteArray(), Charsets.UTF_8)

/** Reads the cases file written by scripts/test-bindings.sh (name|mode|tokens|hex text|hex prompt). */
fun readCases(file: String): Map<String, Case> = File(file).readLines().filter { it.isNotBlank() }.associate { line ->
    val (name, mode, tokens, text, prompt) = line.split("|")
    name to Case(
        name, if (mode == "tah") IterationMode.DECIDER else IterationMode.valueOf(mode.uppercase()), unhex(text), unhex(prompt),
        tokens.split(",").map { it.toUInt() },
    )
}

/** Runs named tests, counting passes and failures; [finish] prints "N passed, N failed" and exits. */
class TestRun {
    private var passed = 0
    private var failed = 0

    fun test(name: String, body: () -> Unit) {
        val start = System.nanoTime()
        try {
            body()
            passed++
            println("PASS $name (${(System.nanoTime() - start) / 1_000_000} ms)")
        } catch (t: Throwable) {
            failed++
            println("FAIL $name: $t")
        }
    }

    fun finish(): Nothing {
        println("$passed passed, $failed failed")
        exitProcess(if (failed == 0) 0 else 1)
    }
}

fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw AssertionError(message())
}

inline fun <reified E : Throwable> assertThrows(body: () -> Unit): E {
    try {
        body()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("expected ${E::class.simpleName}, got $e")
    }
    throw AssertionError("expected ${E::class.simpleName}, nothing was thrown")
}

/** Waits until the session's generation has given the session back. */
fun awaitIdle(session: TahSession) {
    val deadline = System.nanoTime() + 30_000_000_000
    while (true) {
        try {
            session.cachedTokens()
            return
        } catch (e: TahException.Busy) {
            check(System.nanoTime() < deadline) { "session still busy after 30 s" }
            Thread.sleep(10)
        }
    }
}

/** The C library's `open` and `close`: a descriptor as an Android app gets one from an `AssetFileDescriptor`. */
interface LibC : Library {
    fun open(path: String, flags: Int): Int
    fun close(fd: Int): Int
}

val libc: LibC = Native.load("c", LibC::class.java)
const val O_RDONLY = 0
