// The phone-life parts of the Kotlin bindings, end to end on the real
// library: stop and ask again at once, models opened through a file
// descriptor, saved sessions, memory trims and thread changes. Called from
// BindingsTest.kt's main.

import ai.tah.sdk.ChatMessage
import ai.tah.sdk.GenerationConfig
import ai.tah.sdk.ModelOptions
import ai.tah.sdk.ModelSource
import ai.tah.sdk.Prompt
import ai.tah.sdk.Role
import ai.tah.sdk.TahException
import ai.tah.sdk.TahModel
import ai.tah.sdk.TahSession
import ai.tah.sdk.TrimLevel
import ai.tah.sdk.defaultGenerationConfig
import ai.tah.sdk.generateFlow
import ai.tah.sdk.greedyGenerationConfig
import ai.tah.sdk.userPrompt
import ai.tah.testing.Case
import ai.tah.testing.TestRun
import ai.tah.testing.assertThrows
import ai.tah.testing.O_RDONLY
import ai.tah.testing.check
import ai.tah.testing.libc
import java.io.File
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking

fun TahSession.answer(prompt: Prompt, config: GenerationConfig) = runBlocking { complete(prompt, config) }

fun TahModel.fresh(prompt: Prompt, config: GenerationConfig) = newSession().use { it.answer(prompt, config) }

fun user(text: String) = ChatMessage(Role.USER, text)

fun assistant(text: String) = ChatMessage(Role.ASSISTANT, text)

fun lifecycleTests(run: TestRun, model: TahModel, gguf: String, tah: Case) {
    val dir = kotlin.io.path.createTempDirectory("tah-kotlin-lifecycle").toFile()
    val short = greedyGenerationConfig().copy(maxNewTokens = 8u)
    val long = greedyGenerationConfig().copy(maxNewTokens = 4000u)
    // Additions the default model answers in several lines.
    val questions = listOf("What is 347 + 589?", "What is 128 + 256?", "What is 905 + 77?", "What is 4321 + 1234?")

    run.test("stop and ask at once: generateFlow(...).take(3) then complete(...), 20 rounds, never Busy") {
        TahModel.load(gguf, ModelOptions()).use { model -> model.newSession().use { session ->
            for (round in 0 until 20) {
                val question = user(questions[round % questions.size])
                val stopped = runBlocking { session.generateFlow(Prompt.Chat(listOf(question)), long).take(3).toList() }
                check(stopped.size == 3) { "round $round: ${stopped.size} tokens" }
                // The next question, right away, after what was streamed.
                val conversation = listOf(question, assistant(stopped.joinToString("") { it.text }), user(questions[(round + 1) % questions.size]))
                val next = session.answer(Prompt.Chat(conversation), short)
                val fresh = model.fresh(Prompt.Chat(conversation), short)
                check(next.tokenIds == fresh.tokenIds) { "round $round: ${next.tokenIds} != fresh ${fresh.tokenIds}" }
                check(next.stats.reusedPrefixTokens > 0u) { "round $round: the cache was not reused" }
            }
        } }
    }

    val modelBytes = File(gguf).readBytes()
    val packed = File(dir, "packed.bin").apply { writeBytes(ByteArray(4096) { 0x5A } + modelBytes + ByteArray(1000)) }
    val size = modelBytes.size.toULong()
    fun loadFd(fd: Int, offset: ULong, length: ULong) = TahModel.loadFrom(ModelSource.Fd(fd, offset, length), ModelOptions())

    run.test("a model inside a larger file opens through its descriptor and answers like its own file") {
        val fd = libc.open(packed.path, O_RDONLY)
        check(fd >= 0) { "open failed" }
        val viaFd = try {
            loadFd(fd, 4096uL, size)
        } finally {
            libc.close(fd) // the SDK keeps its own duplicate
        }
        TahModel.load(gguf, ModelOptions()).use { viaPath ->
            viaFd.use {
                val prompt = userPrompt("What is 347 + 589?")
                val a = viaFd.fresh(prompt, short.copy(maxNewTokens = 24u))
                val b = viaPath.fresh(prompt, short.copy(maxNewTokens = 24u))
                check(a.tokenIds.isNotEmpty() && a.tokenIds == b.tokenIds) { "${a.tokenIds} != ${b.tokenIds}" }
            }
        }
    }

    run.test("wrong descriptors, offsets and lengths are typed errors") {
        val fd = libc.open(packed.path, O_RDONLY)
        try {
            assertThrows<TahException.InvalidArgument> { loadFd(-1, 0uL, size) }
            assertThrows<TahException.InvalidArgument> { loadFd(fd, 4096uL, size + 1001uL) }
            assertThrows<TahException.InvalidArgument> { loadFd(fd, 4096uL, 0uL) }
            assertThrows<TahException.ModelLoad> { loadFd(fd, 4100uL, size) }
            assertThrows<TahException.ModelLoad> { loadFd(fd, 0uL, size) }
            assertThrows<TahException.ModelLoad> { loadFd(fd, 4096uL, size / 2uL) }
        } finally {
            libc.close(fd)
        }
        val e = assertThrows<TahException.InvalidArgument> { loadFd(fd, 4096uL, size) }
        check("descriptor" in e.reason) { e.reason }
    }

    run.test("saveState + TahSession.restore continue exactly like the uninterrupted session (greedy and seeded)") {
        val seeded = defaultGenerationConfig().copy(seed = 7uL, maxNewTokens = 12u, mode = tah.mode)
        for (config in listOf(short.copy(maxNewTokens = 12u, mode = tah.mode), seeded)) {
            model.newSession().use { original ->
                val conversation = arrayListOf(user(tah.text))
                val first = original.answer(Prompt.Chat(conversation), config)
                val path = File(dir, "chat.tahstate").path
                val bytes = original.saveState(path)
                check(bytes == File(path).length().toULong()) { "size $bytes" }
                conversation += assistant(first.text)
                check(original.history() == conversation) { "history ${original.history()}" }
                conversation += user("And 12 + 30?")
                val uninterrupted = original.answer(Prompt.Chat(conversation), config)
                TahSession.restore(model, path).use { restored ->
                    check(restored.history() == conversation.dropLast(1)) { "restored history ${restored.history()}" }
                    val continued = restored.answer(Prompt.Chat(conversation), config)
                    check(continued.tokenIds == uninterrupted.tokenIds) { "${continued.tokenIds} != ${uninterrupted.tokenIds}" }
                    val reused = continued.stats.reusedPrefixTokens
                    check(reused > 0u && reused == uninterrupted.stats.reusedPrefixTokens) { "reused $reused" }
                }
            }
        }
    }

    run.test("damaged, future-version and foreign-model state files throw SessionState; the sessions go on") {
        model.newSession().use { session ->
            session.answer(userPrompt(tah.text), short)
            val good = File(dir, "good.tahstate").apply { session.saveState(path) }
            val bytes = good.readBytes()
            val damaged = File(dir, "damaged.tahstate")
            val variants = mapOf(
                "truncated" to bytes.copyOf(bytes.size / 2),
                "a flipped byte" to bytes.copyOf().also { it[it.size / 2] = (it[it.size / 2].toInt() xor 1).toByte() },
                "a future version" to bytes.copyOf().also { it[8] = 2 },
                "empty" to ByteArray(0),
                "not a state" to "hello".toByteArray(),
            )
            for ((name, content) in variants) {
                damaged.writeBytes(content)
                val e = assertThrows<TahException.SessionState> { TahSession.restore(model, damaged.path) }
                println("  $name: ${e.reason}")
            }
            assertThrows<TahException.SessionState> { TahSession.restore(model, File(dir, "missing").path) }
            TahModel.load(gguf, ModelOptions()).use { other ->
                val e = assertThrows<TahException.SessionState> { TahSession.restore(other, good.path) }
                check("another model" in e.reason) { e.reason }
            }
            assertThrows<TahException.SessionState> { session.saveState(File(dir, "no/such/dir").path) }
            // The session, and the good file, still work.
            val next = userPrompt("What is 9 + 9?")
            val expected = TahSession.restore(model, good.path).use { it.answer(next, short) }
            check(session.answer(next, short).tokenIds == expected.tokenIds) { "the session changed" }
        }
    }

    run.test("trimMemory: MODERATE changes no token, CRITICAL frees idle sessions' KV; both report bytes") {
        TahModel.load(gguf, ModelOptions()).use { m ->
            val (a, b) = m.newSession() to m.newSession()
            val first = a.answer(userPrompt("What is 347 + 589?"), short)
            b.answer(userPrompt("What is 347 + 589?"), short)
            val follow = Prompt.Chat(listOf(user("What is 347 + 589?"), assistant(first.text), user("And 12 + 30?")))
            val moderate = m.trimMemory(TrimLevel.MODERATE)
            check(moderate.weightBytes > 0uL && moderate.totalBytes == moderate.weightBytes + moderate.heapBytes) { "$moderate" }
            check(a.answer(follow, short).tokenIds == b.answer(follow, short).tokenIds) { "tokens changed by the trim" }
            val critical = m.trimMemory(TrimLevel.CRITICAL)
            check(critical.kvCacheBytes > 0uL && a.cachedTokens() == 0uL) { "$critical" }
            check(a.answer(follow, short).tokenIds == m.fresh(follow, short).tokenIds) { "after the critical trim" }
            a.close()
            b.close()
        }
    }

    run.test("setThreads: the next generation runs on the new number of threads, with the same tokens") {
        TahModel.load(gguf, ModelOptions(threads = 2u)).use { m ->
            val prompt = userPrompt("What is 347 + 589?")
            val baseline = m.fresh(prompt, short)
            check(baseline.stats.threads == 2u && m.threads() == 2u) { "threads ${baseline.stats.threads}" }
            for (threads in listOf(1u, 2u)) {
                m.setThreads(threads)
                val result = m.fresh(prompt, short)
                check(m.threads() == threads && result.stats.threads == threads) { "threads ${result.stats.threads}" }
                check(result.tokenIds == baseline.tokenIds) { "tokens changed with the threads" }
            }
            assertThrows<TahException.InvalidArgument> { m.setThreads(0u) }
        }
    }

    dir.deleteRecursively()
}
