// The sample apps' phone-life logic (android/shared-logic) on the real
// library and the default GGUF model: first launch on the bundled model
// through its descriptor, the conversation saved after every answer and
// restored at launch, thermal state and threads, memory trims, and stop
// then ask again. Called from AppLogicTest.kt's main.
package ai.tah.app.tests

import ai.tah.app.ChatSettings
import ai.tah.app.EntryStatus
import ai.tah.app.ModelFile
import ai.tah.app.ModelState
import ai.tah.app.ThermalState
import ai.tah.app.threadsFor
import ai.tah.app.trimLevelForAndroid
import ai.tah.sdk.ModelOptions
import ai.tah.sdk.ModelSource
import ai.tah.sdk.Role
import ai.tah.sdk.StopReason
import ai.tah.sdk.TahModel
import ai.tah.sdk.TahSession
import ai.tah.sdk.TrimLevel
import ai.tah.sdk.greedyGenerationConfig
import ai.tah.sdk.userPrompt
import ai.tah.testing.Case
import ai.tah.testing.O_RDONLY
import ai.tah.testing.TestRun
import ai.tah.testing.check
import ai.tah.testing.libc
import java.io.File
import kotlinx.coroutines.runBlocking

fun phoneLifeTests(run: TestRun, gguf: String, tah: Case) {
    val dir = kotlin.io.path.createTempDirectory("tah-app-phone").toFile()
    val settings = ChatSettings(maxNewTokens = 24)
    val modelBytes = File(gguf).readBytes()
    // The model as an asset inside an APK: after 4096 bytes of something else.
    val apk = File(dir, "app.apk").apply { writeBytes(ByteArray(4096) { 0x50 } + modelBytes + ByteArray(512)) }
    var released = 0
    val bundled = {
        val fd = libc.open(apk.path, O_RDONLY)
        ModelFile("arith-tah.gguf (bundled)", ModelSource.Fd(fd, 4096uL, modelBytes.size.toULong())) {
            libc.close(fd)
            released++
        }
    }
    fun launched(conversation: File? = null, picked: String? = null) =
        TestApp(null, gguf, conversation) { it.launch(picked, bundled) }.also { it.app.chat.updateSettings { settings } }

    run.test("first launch opens the bundled model through its descriptor; a picked model that still exists wins") {
        val expected = TahModel.load(gguf, ModelOptions()).use { m ->
            m.newSession().use { runBlocking { it.complete(userPrompt("What is 347 + 589?"), settings.applyTo(greedyGenerationConfig())) } }
        }
        launched().use { t ->
            val ready = t.app.models.state.value as ModelState.Ready
            check(ready.name == "arith-tah.gguf (bundled)" && released == 1) { "${ready.name}, released $released" }
            val answer = t.ask("What is 347 + 589?").status.finished.result
            check(answer.tokenIds == expected.tokenIds) { "${answer.tokenIds} != ${expected.tokenIds}" }
        }
        launched(picked = gguf).use { t ->
            check((t.app.models.state.value as ModelState.Ready).name == "arith-tah.gguf" && released == 1) { "${t.app.models.state.value}" }
        }
        launched(picked = File(dir, "gone.gguf").path).use { t ->
            check((t.app.models.state.value as ModelState.Ready).name == "arith-tah.gguf (bundled)") { "${t.app.models.state.value}" }
        }
    }

    run.test("the conversation is saved after every answer and restored, with its cache, at the next launch") {
        val conversation = File(dir, "conversation.tahstate")
        val saved = File(dir, "saved.tahstate")
        val (entries, expected) = launched(conversation).use { t ->
            t.ask("What is 347 + 589?")
            t.ask("And 12 + 30?")
            check(conversation.isFile) { "not saved" }
            conversation.copyTo(saved, overwrite = true)
            val entries = t.app.chat.state.value.entries
            entries to t.ask("And 5 + 5?").status.finished.result
        }
        saved.copyTo(conversation, overwrite = true)
        launched(conversation).use { t ->
            val restored = t.app.chat.state.value.entries
            check(restored.map { it.role to it.text } == entries.map { it.role to it.text }) { "restored ${restored.map { it.text }}" }
            check(restored.map { it.status } == listOf(EntryStatus.Sent, EntryStatus.Restored, EntryStatus.Sent, EntryStatus.Restored)) { "${restored.map { it.status }}" }
            val next = t.ask("And 5 + 5?").status.finished
            check(next.result.tokenIds == expected.tokenIds) { "${next.result.tokenIds} != ${expected.tokenIds}" }
            check(next.report.reusedPrefixTokens > 0) { "the restored cache was not used: ${next.report}" }
            t.app.chat.newConversation()
            waitFor("the saved conversation's deletion") { !conversation.exists() }
        }
    }

    run.test("a damaged conversation file: an empty chat with a notice; the next answer saves a good one") {
        val conversation = File(dir, "damaged.tahstate").apply { writeBytes("TAHSTATE garbage".toByteArray()) }
        launched(conversation).use { t ->
            val state = t.app.chat.state.value
            check(state.entries.isEmpty() && state.notice?.contains("could not be restored") == true) { "${state.notice}" }
            t.ask("What is 347 + 589?")
            TahSession.restore(t.app.models.model!!, conversation.path).use { check(it.history().size == 2) { "${it.history()}" } }
        }
    }

    run.test("a serious thermal state halves the threads, a critical one leaves one; the report shows them") {
        check(ThermalState.fromAndroidStatus(0) == ThermalState.NOMINAL && ThermalState.fromAndroidStatus(2) == ThermalState.FAIR) { "mapping" }
        check(ThermalState.fromAndroidStatus(3) == ThermalState.SERIOUS && ThermalState.fromAndroidStatus(6) == ThermalState.CRITICAL) { "mapping" }
        check(threadsFor(ThermalState.FAIR, 8) == 8 && threadsFor(ThermalState.SERIOUS, 8) == 4) { "policy" }
        check(threadsFor(ThermalState.SERIOUS, 1) == 1 && threadsFor(ThermalState.CRITICAL, 8) == 1) { "policy" }
        launched().use { t ->
            check(t.app.phone.value.threads == 2) { "${t.app.phone.value}" }
            t.app.onThermalState(ThermalState.SERIOUS)
            check(t.app.phone.value.threads == 1 && t.app.models.model!!.threads() == 1u) { "${t.app.phone.value}" }
            check(t.ask("What is 347 + 589?").status.finished.report.threads == 1) { "the answer ran on other threads" }
            t.app.onThermalState(ThermalState.NOMINAL)
            check(t.app.phone.value.threads == 2) { "${t.app.phone.value}" }
            check(t.ask("And 12 + 30?").status.finished.report.threads == 2) { "the answer ran on other threads" }
        }
    }

    run.test("onTrimMemory: its levels trim the SDK, the report reaches the panel, answers stay the same") {
        check(trimLevelForAndroid(20) == TrimLevel.MODERATE && trimLevelForAndroid(10) == TrimLevel.MODERATE) { "mapping" }
        check(trimLevelForAndroid(15) == TrimLevel.CRITICAL && trimLevelForAndroid(80) == TrimLevel.CRITICAL) { "mapping" }
        check(trimLevelForAndroid(0) == null) { "mapping" }
        val expected = launched().use { t ->
            t.ask("What is 347 + 589?")
            t.ask("And 12 + 30?").status.finished.result.tokenIds
        }
        launched().use { t ->
            t.ask("What is 347 + 589?")
            runBlocking { t.app.onTrimMemory(20)!!.join() }
            val (level, report) = t.app.phone.value.lastTrim!!
            check(level == TrimLevel.MODERATE && report.weightBytes > 0uL) { "$report" }
            check(t.ask("And 12 + 30?").status.finished.result.tokenIds == expected) { "tokens changed by the trim" }
            runBlocking { t.app.onTrimMemory(80)!!.join() }
            val (critical, freed) = t.app.phone.value.lastTrim!!
            check(critical == TrimLevel.CRITICAL && freed.kvCacheBytes > 0uL) { "$freed" }
            check(t.ask("And 5 + 5?").status is EntryStatus.Finished) { "no answer after the trim" }
        }
    }

    run.test("stop, then ask again at once, 10 times: every answer finishes") {
        launched().use { t ->
            val chat = t.app.chat
            for (round in 0 until 10) {
                // The default model's context is 512 tokens: a new conversation every 3 rounds.
                if (round % 3 == 0) chat.newConversation()
                chat.updateSettings { it.copy(maxNewTokens = 4000) }
                check(chat.send("Count from 1 to 1000, round $round.")) { "send refused" }
                waitFor("three tokens") { (chat.state.value.entries.last().text.length >= 3) || !chat.state.value.generating }
                chat.stop()
                waitFor("the stop") { !chat.state.value.generating }
                chat.updateSettings { settings }
                val next = t.ask("What is $round + $round?").status
                check(next is EntryStatus.Finished && next.result.stopReason != StopReason.CANCELLED) { "round $round: $next" }
            }
            check(chat.state.value.entries.count { it.role == Role.USER } == 2) { "entries" }
        }
    }

    dir.deleteRecursively()
}
