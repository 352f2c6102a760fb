// End-to-end tests of the sample apps' shared logic (android/shared-logic):
// the real libtah_ffi.so, the tiny-d2-a fixture model and the real Qwen3
// tokenizer, driven through the same classes the Android app uses. Run by
// scripts/test-bindings.sh as
//   java ... ai.tah.app.tests.AppLogicTestKt <model dir> <tokenizer.json> <cases file> <a .gguf model>
// The last line printed is "N passed, N failed".
package ai.tah.app.tests

import ai.tah.app.AppController
import ai.tah.app.BENCHMARK_PROMPTS
import ai.tah.app.BenchmarkCsv
import ai.tah.app.BenchmarkPlan
import ai.tah.app.BenchmarkRunner
import ai.tah.app.ChatController
import ai.tah.app.ChatEntry
import ai.tah.app.ChatSettings
import ai.tah.app.EntryStatus
import ai.tah.app.ModelState
import ai.tah.app.ProcessMemory
import ai.tah.sdk.ChatMessage
import ai.tah.sdk.Device
import ai.tah.sdk.GenerationUpdate
import ai.tah.sdk.IterationMode
import ai.tah.sdk.ModelOptions
import ai.tah.sdk.Prompt
import ai.tah.sdk.Role
import ai.tah.sdk.StopReason
import ai.tah.sdk.TahModel
import ai.tah.sdk.generateUpdates
import ai.tah.sdk.greedyGenerationConfig
import ai.tah.sdk.userPrompt
import ai.tah.testing.TestRun
import ai.tah.testing.check
import ai.tah.testing.readCases
import java.io.File
import java.util.concurrent.Executors
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.cancel
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking

/** Polls [condition] until it holds (the controllers update their state from other threads). */
fun waitFor(what: String, timeoutMs: Long = 60_000, condition: () -> Boolean) {
    val deadline = System.currentTimeMillis() + timeoutMs
    while (!condition()) {
        check(System.currentTimeMillis() < deadline) { "timed out waiting for $what" }
        Thread.sleep(5)
    }
}

/**
 * An app as the Android view model builds it, on a single "main" thread,
 * opened by [open] (by default: the model at [modelDir]).
 */
class TestApp(
    tokenizer: String?,
    modelDir: String,
    conversationFile: File? = null,
    open: (AppController) -> Job = { it.loadModel(modelDir, tokenizer) },
) : AutoCloseable {
    private val main = Executors.newSingleThreadExecutor { Thread(it, "main") }
    private val scope = CoroutineScope(SupervisorJob() + main.asCoroutineDispatcher())
    val app = AppController(scope, Dispatchers.IO, chatConfig = greedyGenerationConfig(), threads = 2u, conversationFile = conversationFile)

    init {
        runBlocking { open(app).join() }
        check(app.models.state.value is ModelState.Ready) { "not loaded: ${app.models.state.value}" }
    }

    /** Sends [text] and waits for the answer to end. */
    fun ask(text: String): ChatEntry {
        check(app.chat.send(text)) { "send refused" }
        waitFor("the answer") { !app.chat.state.value.generating }
        return app.chat.state.value.entries.last()
    }

    override fun close() {
        app.close()
        scope.cancel()
        main.shutdown()
    }
}

val EntryStatus.finished: EntryStatus.Finished
    get() = this as? EntryStatus.Finished ?: throw AssertionError("not finished: $this")

fun main(args: Array<String>) {
    val (modelDir, tokenizer, casesFile, gguf) = args
    val tah = readCases(casesFile).getValue("short_arith")
    val run = TestRun()
    val fixtureSettings = ChatSettings(thinking = true, mode = tah.mode, maxNewTokens = tah.tokens.size)

    run.test("loading: Ready with the engine's figures; a bad path is Failed with the loader's reason") {
        TestApp(tokenizer, modelDir).use { t ->
            val ready = t.app.models.state.value as ModelState.Ready
            check(ready.contextLength > 0 && ready.loadWallMs > 0) { "$ready" }
            check(ready.requestedDevice == Device.CPU && ready.deviceName == "cpu" && ready.deviceNotice == null) { "$ready" }
            runBlocking { t.app.loadModel("$modelDir/does-not-exist").join() }
            val failed = t.app.models.state.value
            check(failed is ModelState.Failed && "does-not-exist" in failed.message) { "$failed" }
            check(!t.app.chat.send("hello")) { "sent without a model" }
        }
    }

    TestApp(tokenizer, modelDir).use { t ->
        val chat = t.app.chat
        val model = t.app.models.model!!

        run.test("chat streams the fixture's greedy answer, tinted with the engine's depths") {
            chat.updateSettings { fixtureSettings }
            val answer = t.ask(tah.text)
            val result = answer.status.finished.result
            check(result.tokenIds == tah.tokens) { "tokens ${result.tokenIds} != ${tah.tokens}" }
            check(answer.text == result.text) { "streamed text != result text" }
            // The same generation straight through the facade: its events give the depth of every token.
            val events = runBlocking {
                model.newSession().use { s ->
                    s.generateUpdates(userPrompt(tah.text), fixtureSettings.applyTo(greedyGenerationConfig())).toList()
                }
            }.filterIsInstance<GenerationUpdate.Token>().map { it.event }
            val expected = events.fold(ChatEntry(0, answer.role, emptyList(), EntryStatus.Streaming)) { e, event -> e.appending(event) }.spans
            check(answer.spans == expected) { "spans ${answer.spans} != $expected" }
            check(expected.any { it.depth == 2 } && expected.any { it.depth == 1 }) { "the fixture mixes easy and hard tokens: $expected" }
            val report = answer.status.finished.report
            check(report.generatedHardTokens == events.count { it.depth > 1u }) { "hard ${report.generatedHardTokens}" }
        }

        run.test("the latency report holds the engine's stats and the app's own timings") {
            val answer = chat.state.value.entries.last()
            val (result, report) = answer.status.finished
            val stats = result.stats
            check(report == chat.state.value.lastReport) { "lastReport is not the answer's" }
            check(report.loadMs == stats.loadMs && report.loadMs > 0) { "load ${report.loadMs}" }
            check(report.timeToFirstTokenMs == stats.timeToFirstTokenMs && report.timeToFirstTokenMs > 0) { "ttft ${report.timeToFirstTokenMs}" }
            check(report.prefillTokens == stats.prefillTokens.toInt() && report.prefillTokensPerSecond > 0) { "prefill $report" }
            check(report.decodeTokens == tah.tokens.size && report.decodeTokensPerSecond > 0) { "decode $report" }
            check(report.passesPerToken == stats.passesPerToken && report.passesPerToken > 1.0) { "passes ${report.passesPerToken}" }
            check(report.hardTokenPercent == stats.hardTokenFraction * 100) { "hard ${report.hardTokenPercent}" }
            // The app's clock starts before the engine's and sees the token after it.
            val wall = report.firstTokenWallMs!!
            check(wall + 1.0 >= report.timeToFirstTokenMs && report.totalWallMs >= wall) { "wall $wall / ${report.totalWallMs}" }
            check((report.memory?.residentBytes ?: 0) > 0 && report.peakKvBytes > 0) { "memory ${report.memory} kv ${report.peakKvBytes}" }
            check(report.stopReason == StopReason.MAX_TOKENS) { "stop ${report.stopReason}" }
        }

        run.test("mode, threshold and thinking settings reach the engine") {
            fun answer(settings: ChatSettings): ChatEntry {
                chat.newConversation()
                chat.updateSettings { settings }
                return t.ask(tah.text)
            }
            val short = ChatSettings(maxNewTokens = 3)
            for ((settings, depth) in listOf(
                short.copy(mode = IterationMode.ALWAYS) to 2,
                short.copy(mode = IterationMode.NEVER) to 1,
                short.copy(mode = IterationMode.DECIDER, threshold = -1f) to 2,
                short.copy(mode = IterationMode.DECIDER, threshold = 1f) to 1,
            )) {
                val entry = answer(settings)
                val report = entry.status.finished.report
                check(entry.spans.all { it.depth == depth }) { "$settings: spans ${entry.spans}" }
                check(report.passesPerToken == depth.toDouble() && report.hardTokenPercent == (depth - 1) * 100.0) { "$settings: $report" }
            }
            val thinking = answer(short.copy(thinking = true)).status.finished.report.prefillTokens
            val notThinking = answer(short.copy(thinking = false)).status.finished.report.prefillTokens
            // Qwen3's non-thinking prompt appends an empty <think></think> block.
            check(notThinking > thinking) { "prefill $notThinking (no thinking) vs $thinking" }
        }

        run.test("stop() ends the answer as CANCELLED with its figures; the session is reused after it") {
            chat.newConversation()
            chat.updateSettings { ChatSettings(maxNewTokens = 4000) }
            check(chat.send(tah.text)) { "send refused" }
            waitFor("some text") { chat.state.value.entries.last().text.length >= 3 }
            check(!chat.send("a second question")) { "sent while streaming" }
            chat.stop()
            waitFor("the stop") { !chat.state.value.generating }
            val stopped = chat.state.value.entries.last().status.finished
            check(stopped.result.stopReason == StopReason.CANCELLED && stopped.report.decodeTokens in 1 until 4000) { "${stopped.report}" }
            // The next question reuses the cached conversation and answers like a fresh session would.
            chat.updateSettings { ChatSettings(maxNewTokens = 8) }
            val history = ChatController.conversation(chat.state.value.entries) + ChatMessage(Role.USER, "What is 2 + 2?")
            val next = t.ask("What is 2 + 2?").status.finished
            check(next.result.stopReason == StopReason.MAX_TOKENS) { "stop ${next.result.stopReason}" }
            check(next.report.reusedPrefixTokens > 0) { "nothing reused: ${next.report}" }
            val fresh = runBlocking { model.newSession().use { it.complete(Prompt.Chat(history), ChatSettings(maxNewTokens = 8).applyTo(greedyGenerationConfig())) } }
            check(next.result.tokenIds == fresh.tokenIds) { "after stop ${next.result.tokenIds} != fresh ${fresh.tokenIds}" }
        }

        run.test("replacing the model interrupts the answer; the conversation continues on the new model") {
            chat.updateSettings { ChatSettings(maxNewTokens = 4000) }
            val before = chat.state.value.entries.size
            check(chat.send(tah.text)) { "send refused" }
            waitFor("a token") { chat.state.value.entries.last().text.isNotEmpty() }
            runBlocking { t.app.loadModel(modelDir, tokenizer).join() }
            waitFor("the interruption") { !chat.state.value.generating }
            check(chat.state.value.entries.last().status == EntryStatus.Interrupted) { "${chat.state.value.entries.last().status}" }
            check(t.app.models.model !== model) { "the model was not replaced" }
            chat.updateSettings { ChatSettings(maxNewTokens = 4) }
            val next = t.ask("And 3 + 3?").status.finished
            check(chat.state.value.entries.size == before + 4) { "entries ${chat.state.value.entries.size}" }
            // A new session: the whole conversation is prefilled.
            check(next.report.reusedPrefixTokens == 0 && next.result.stopReason == StopReason.MAX_TOKENS) { "${next.report}" }
        }
    }

    run.test("device switch: the model reloads on the GPU (where the library or the phone has none, on the CPU with the reason), answers alike, and back") {
        TestApp(tokenizer, modelDir).use { t ->
            runBlocking { t.app.switchDevice(Device.GPU)!!.join() }
            val gpu = t.app.models.state.value as ModelState.Ready
            check(t.app.device == Device.GPU && gpu.requestedDevice == Device.GPU) { "$gpu" }
            if (gpu.backends.gpuCompiled && gpu.backends.gpuAdapter != null) {
                check(gpu.deviceName.startsWith("gpu: ") && gpu.deviceNotice == null) { "$gpu" }
            } else {
                check(gpu.deviceName == "cpu" && gpu.deviceNotice!!.contains("GPU")) { "$gpu" }
            }
            t.app.chat.updateSettings { fixtureSettings }
            val answer = t.ask(tah.text).status.finished
            check(answer.result.tokenIds == tah.tokens) { "tokens ${answer.result.tokenIds} != ${tah.tokens}" }
            check(answer.report.device == gpu.deviceName && answer.report.deviceNotice == gpu.deviceNotice) { "${answer.report}" }
            runBlocking { t.app.switchDevice(Device.CPU)!!.join() }
            val cpu = t.app.models.state.value as ModelState.Ready
            check(cpu.deviceName == "cpu" && cpu.deviceNotice == null) { "$cpu" }
        }
    }

    run.test("the benchmark runs the prompt set; its CSV holds the measured rows") {
        TahModel.load(modelDir, ModelOptions(threads = 2u, tokenizerPath = tokenizer)).use { model ->
            val prompts = BENCHMARK_PROMPTS.filter { it.id == "muffins" || it.id == "discount" }
            val plan = BenchmarkPlan(prompts = prompts, modes = listOf(IterationMode.DECIDER, IterationMode.ALWAYS), maxNewTokens = 4, warmupRuns = 0)
            val seen = ArrayList<Any>()
            val rows = runBlocking { BenchmarkRunner(model).run(plan) { seen += it } }
            check(rows.size == 4 && seen == rows) { "rows ${rows.size}, seen ${seen.size}" }
            check(rows.map { it.prompt.id to it.mode } == plan.modes.flatMap { m -> prompts.map { it.id to m } }) { "order" }
            for (row in rows) {
                check(row.report.decodeTokens == 4 && row.report.stopReason == StopReason.MAX_TOKENS) { "${row.report}" }
                check(row.report.prefillTokens > 0 && row.report.reusedPrefixTokens == 0) { "fresh session: ${row.report}" }
                if (row.mode == IterationMode.ALWAYS) check(row.report.passesPerToken == 2.0) { "always: ${row.report}" }
            }
            val csv = parseCsv(BenchmarkCsv.render(rows, device = "JVM, \"test\"", model = "tiny-d2-a"))
            check(csv.first() == BenchmarkCsv.HEADER && csv.size == 5) { "csv ${csv.size} lines: ${csv.first()}" }
            for ((row, line) in rows.zip(csv.drop(1))) {
                val field = BenchmarkCsv.HEADER.zip(line).toMap()
                check(field["device"] == "JVM, \"test\"" && field["prompt"] == row.prompt.text) { "text fields: $line" }
                check(field["compute"] == "cpu") { "$line" }
                check(field["mode"] == row.mode.name.lowercase() && field["stop_reason"] == "max_tokens") { "$line" }
                check(field["decode_tokens"] == "4" && field["prefill_tokens"] == row.report.prefillTokens.toString()) { "$line" }
                check(Math.abs(field.getValue("decode_tok_per_s").toDouble() - row.report.decodeTokensPerSecond) < 0.001) { "$line" }
                check(Math.abs(field.getValue("passes_per_token").toDouble() - row.report.passesPerToken) < 0.001) { "$line" }
                check(field.getValue("rss_bytes").toLong() > 0) { "$line" }
            }
        }
    }

    run.test("the benchmark screen: progress, stop keeps the rows so far, a rerun completes") {
        TestApp(tokenizer, modelDir).use { t ->
            val bench = t.app.benchmark
            bench.updatePlan { BenchmarkPlan(modes = listOf(IterationMode.NEVER), maxNewTokens = 24, warmupRuns = 0) }
            check(t.app.startBenchmark()) { "start refused" }
            check(!bench.start()) { "started twice" }
            waitFor("a row") { bench.state.value.rows.isNotEmpty() }
            t.app.onBackground()
            waitFor("the stop") { !bench.state.value.running }
            val stopped = bench.state.value
            check(stopped.message == "Stopped" && stopped.rows.size in 1 until BENCHMARK_PROMPTS.size) { "${stopped.rows.size} rows, ${stopped.message}" }
            check(parseCsv(bench.csv("JVM")).size == stopped.rows.size + 1) { "csv rows" }
            bench.updatePlan { it.copy(prompts = BENCHMARK_PROMPTS.take(2), maxNewTokens = 4) }
            check(bench.start()) { "restart refused" }
            waitFor("the rerun") { !bench.state.value.running }
            val done = bench.state.value
            check(done.message == null && done.rows.size == 2 && done.progress == 1f) { "${done.rows.size} rows, ${done.message}" }
        }
    }

    phoneLifeTests(run, gguf, tah)

    run.test("ProcessMemory reads VmRSS and VmHWM") {
        val sample = ProcessMemory.parseProcStatus("Name:\tjava\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
        check(sample?.residentBytes == 1024L * 1024 && sample.peakResidentBytes == 2048L * 1024) { "$sample" }
        check(ProcessMemory.parseProcStatus("Name:\tjava\n") == null) { "no VmRSS" }
        val live = ProcessMemory.sample()!!
        check(live.residentBytes > 0 && live.peakResidentBytes!! >= live.residentBytes) { "$live" }
    }

    run.finish()
}

/** A strict RFC 4180 reader, to check what [BenchmarkCsv] writes. */
fun parseCsv(text: String): List<List<String>> {
    val lines = ArrayList<List<String>>()
    var fields = ArrayList<String>()
    val field = StringBuilder()
    var i = 0
    var quoted = false
    while (i < text.length) {
        val c = text[i]
        when {
            quoted && c == '"' && text.getOrNull(i + 1) == '"' -> { field.append('"'); i++ }
            quoted && c == '"' -> quoted = false
            quoted -> field.append(c)
            c == '"' && field.isEmpty() -> quoted = true
            c == ',' -> { fields += field.toString(); field.clear() }
            c == '\n' -> { fields += field.toString(); field.clear(); lines += fields; fields = ArrayList() }
            else -> field.append(c)
        }
        i++
    }
    check(!quoted && field.isEmpty() && fields.isEmpty()) { "unterminated CSV" }
    return lines
}
