// End-to-end tests of the Kotlin bindings: the real libtah_ffi.so and a real
// fixture model. Run by scripts/test-bindings.sh as
//   java ... BindingsTestKt <model dir> <tokenizer.json> <cases file> <a .gguf model>
// The last line printed is "N passed, N failed".

import ai.tah.sdk.ComputeBackends
import ai.tah.sdk.Device
import ai.tah.sdk.GenerationConfig
import ai.tah.sdk.GenerationResult
import ai.tah.sdk.GenerationUpdate
import ai.tah.sdk.IterationMode
import ai.tah.sdk.KvPrecision
import ai.tah.sdk.ModelOptions
import ai.tah.sdk.Prompt
import ai.tah.sdk.StopReason
import ai.tah.sdk.TahException
import ai.tah.sdk.TahModel
import ai.tah.sdk.TahSession
import ai.tah.sdk.TokenEvent
import ai.tah.sdk.TokenListener
import ai.tah.sdk.computeBackends
import ai.tah.sdk.diagnosticPanic
import ai.tah.sdk.generateFlow
import ai.tah.sdk.generateUpdates
import ai.tah.sdk.greedyGenerationConfig
import ai.tah.sdk.userPrompt
import ai.tah.testing.Case
import ai.tah.testing.TestRun
import ai.tah.testing.assertThrows
import ai.tah.testing.awaitIdle
import ai.tah.testing.check
import ai.tah.testing.readCases
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.flow.onEach
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking

/** Greedy settings of the fixtures: 24 new tokens, the case's iteration mode. */
fun config(case: Case, maxNewTokens: UInt = case.tokens.size.toUInt()): GenerationConfig =
    greedyGenerationConfig().copy(maxNewTokens = maxNewTokens, mode = case.mode)

/** Records a generation's events and waits for its end. */
class Recorder(private val throwOnToken: Int = -1) : TokenListener {
    val events = CopyOnWriteArrayList<TokenEvent>()
    val threads = CopyOnWriteArrayList<String>()
    val done = CompletableFuture<Result<GenerationResult>>()
    val firstToken = CountDownLatch(1)

    override fun onToken(event: TokenEvent) {
        events += event
        threads += Thread.currentThread().name
        firstToken.countDown()
        if (events.size == throwOnToken) throw IllegalStateException("listener failure on purpose")
    }

    override fun onComplete(result: GenerationResult) { done.complete(Result.success(result)) }
    override fun onError(error: TahException) { done.complete(Result.failure(error)) }

    fun await(): Result<GenerationResult> = done.get(120, TimeUnit.SECONDS)
}

fun main(args: Array<String>) {
    val (modelDir, tokenizer, casesFile, gguf) = args
    val cases = readCases(casesFile)
    val run = TestRun()
    val tah = cases.getValue("short_arith")
    val never = cases.getValue("short_arith_never")
    val always = cases.getValue("short_arith_always")
    val model = TahModel.load(modelDir, ModelOptions(threads = 2u, tokenizerPath = tokenizer))
    // A long generation, for cancellation: no stop before the context is full.
    val long = greedyGenerationConfig().copy(maxNewTokens = 4000u)

    run.test("greedy tokens match the fixture (chat prompt, streaming order)") {
        model.newSession().use { session ->
            val recorder = Recorder()
            val handle = session.generate(userPrompt(tah.text), config(tah), recorder)
            val result = recorder.await().getOrThrow()
            check(result.tokenIds == tah.tokens) { "tokens ${result.tokenIds} != ${tah.tokens}" }
            check(recorder.events.map { it.tokenId } == tah.tokens) { "streamed ${recorder.events.map { it.tokenId }}" }
            check(recorder.events.map { it.index } == tah.tokens.indices.map { it.toUInt() }) { "indices out of order" }
            check(recorder.events.joinToString("") { it.text } == result.text) { "streamed text != result text" }
            check(recorder.events.all { it.depth in 1u..2u }) { "depth outside 1..2" }
            check(result.stopReason == StopReason.MAX_TOKENS) { "stop reason ${result.stopReason}" }
            check(result.stats.decodeTokens == tah.tokens.size.toUInt()) { "stats ${result.stats}" }
            check(recorder.threads.none { it == "main" }) { "callbacks on the calling thread" }
            check(handle.isFinished()) { "handle not finished" }
            handle.close()
        }
    }

    run.test("an f32 KV cache gives the fixture's tokens; a q8 cache generates as many") {
        for (precision in listOf(KvPrecision.F32, KvPrecision.Q8)) {
            val options = ModelOptions(threads = 2u, tokenizerPath = tokenizer, kvPrecision = precision)
            TahModel.load(modelDir, options).use { m ->
                m.newSession().use { session ->
                    val recorder = Recorder()
                    session.generate(userPrompt(tah.text), config(tah), recorder).use {
                        val ids = recorder.await().getOrThrow().tokenIds
                        if (precision == KvPrecision.F32) {
                            check(ids == tah.tokens) { "f32: $ids != ${tah.tokens}" }
                        } else {
                            check(ids.size == tah.tokens.size) { "q8: ${ids.size} tokens" }
                        }
                    }
                }
            }
        }
    }

    run.test("raw prompts in never and always modes match the fixture") {
        model.newSession().use { session ->
            for (case in listOf(never, always)) {
                val recorder = Recorder()
                session.generate(Prompt.Raw(case.prompt), config(case), recorder).use {
                    val result = recorder.await().getOrThrow()
                    check(result.tokenIds == case.tokens) { "${case.name}: ${result.tokenIds} != ${case.tokens}" }
                }
            }
        }
    }

    run.test("suspend complete() returns the fixture's tokens") {
        model.newSession().use { session ->
            val result = runBlocking { session.complete(userPrompt(tah.text), config(tah)) }
            check(result.tokenIds == tah.tokens) { "tokens ${result.tokenIds}" }
        }
    }

    run.test("generateFlow streams the fixture's tokens in order") {
        model.newSession().use { session ->
            val events = runBlocking { session.generateFlow(userPrompt(tah.text), config(tah)).toList() }
            check(events.map { it.tokenId } == tah.tokens) { "flow ${events.map { it.tokenId }}" }
            check(events.map { it.index } == tah.tokens.indices.map { it.toUInt() }) { "indices out of order" }
        }
    }

    run.test("generateUpdates emits the tokens, then the result with its stats") {
        model.newSession().use { session ->
            val updates = runBlocking { session.generateUpdates(userPrompt(tah.text), config(tah)).toList() }
            val tokens = updates.dropLast(1).map { (it as GenerationUpdate.Token).event.tokenId }
            val result = (updates.last() as GenerationUpdate.Finished).result
            check(tokens == tah.tokens) { "streamed $tokens" }
            check(result.tokenIds == tah.tokens) { "result ${result.tokenIds}" }
            check(result.stats.decodeTokens == tah.tokens.size.toUInt()) { "stats ${result.stats}" }
        }
    }

    run.test("TahSession.cancel() ends generateUpdates with a Cancelled result") {
        model.newSession().use { session ->
            val updates = runBlocking {
                session.generateUpdates(userPrompt(tah.text), long).onEach { update ->
                    if (update is GenerationUpdate.Token && update.event.index == 2u) session.cancel()
                }.toList()
            }
            val result = (updates.last() as GenerationUpdate.Finished).result
            val streamed = updates.filterIsInstance<GenerationUpdate.Token>().map { it.event.tokenId }
            check(result.stopReason == StopReason.CANCELLED) { "stop reason ${result.stopReason}" }
            check(result.tokenIds == streamed && streamed.size in 3 until 4000) { "streamed ${streamed.size}, result ${result.tokenIds.size}" }
        }
    }

    run.test("computeBackends: this build has no GPU path; Device.GPU is TahException.Gpu, or the CPU with gpuFallback") {
        val backends = computeBackends()
        check(backends == ComputeBackends(gpuCompiled = false, gpuAdapter = null)) { "$backends" }
        val e = assertThrows<TahException.Gpu> {
            TahModel.load(modelDir, ModelOptions(tokenizerPath = tokenizer, device = Device.GPU))
        }
        check("no GPU support" in e.reason) { e.reason }
        TahModel.load(modelDir, ModelOptions(tokenizerPath = tokenizer, device = Device.GPU, gpuFallback = true)).use { m ->
            val notice = m.deviceNotice()
            check(m.deviceName() == "cpu" && notice != null && notice.startsWith("running on the CPU: GPU: ")) { "$notice" }
            m.newSession().use { session ->
                val result = runBlocking { session.complete(userPrompt(tah.text), config(tah)) }
                check(result.tokenIds == tah.tokens) { "${result.tokenIds}" }
                check(result.stats.device == "cpu" && result.stats.deviceNotice == notice) { "${result.stats}" }
            }
        }
    }

    run.test("cancelling the flow's collector cancels the generation") {
        model.newSession().use { session ->
            val events = runBlocking { session.generateFlow(userPrompt(tah.text), long).take(3).toList() }
            check(events.size == 3) { "got ${events.size} events" }
            awaitIdle(session)
            // The session is free again and still produces the reference output.
            val result = runBlocking { session.complete(userPrompt(tah.text), config(tah)) }
            check(result.tokenIds == tah.tokens) { "after cancel: ${result.tokenIds}" }
        }
    }

    run.test("cancel from another thread ends the generation with Cancelled") {
        model.newSession().use { session ->
            val recorder = Recorder()
            val handle = session.generate(userPrompt(tah.text), long, recorder)
            check(recorder.firstToken.await(60, TimeUnit.SECONDS)) { "no token" }
            Thread { handle.cancel() }.apply { start(); join() }
            val result = recorder.await().getOrThrow()
            check(result.stopReason == StopReason.CANCELLED) { "stop reason ${result.stopReason}" }
            check(result.tokenIds.size < 4000) { "not cancelled early" }
            check(handle.isFinished()) { "handle not finished" }
            handle.close()
        }
    }

    run.test("generate on a busy session throws Busy") {
        model.newSession().use { session ->
            val recorder = Recorder()
            session.generate(userPrompt(tah.text), long, recorder).use {
                assertThrows<TahException.Busy> { session.generate(userPrompt(tah.text), config(tah), Recorder()) }
                assertThrows<TahException.Busy> { session.reset() }
            }
            // Closing the handle cancelled the generation.
            check(recorder.await().getOrThrow().stopReason == StopReason.CANCELLED) { "not cancelled on close" }
        }
    }

    run.test("a throwing listener fails the generation, not the session") {
        model.newSession().use { session ->
            val recorder = Recorder(throwOnToken = 2)
            session.generate(userPrompt(tah.text), config(tah), recorder).use {
                val error = recorder.await().exceptionOrNull()
                check(error is TahException.Internal && "on purpose" in error.reason) { "got $error" }
            }
            awaitIdle(session)
            val result = runBlocking { session.complete(userPrompt(tah.text), config(tah)) }
            check(result.tokenIds == tah.tokens) { "after listener failure: ${result.tokenIds}" }
        }
    }

    run.test("two sessions generate concurrently") {
        val sessions = listOf(tah, never).map { it to model.newSession() }
        val recorders = sessions.map { (case, session) ->
            val recorder = Recorder()
            recorder to session.generate(userPrompt(case.text), config(case), recorder)
        }
        for ((i, pair) in recorders.withIndex()) {
            val (recorder, handle) = pair
            val case = sessions[i].first
            val result = recorder.await().getOrThrow()
            check(result.tokenIds == case.tokens) { "${case.name}: ${result.tokenIds}" }
            handle.close()
        }
        sessions.forEach { it.second.close() }
    }

    run.test("a missing model directory throws ModelLoad") {
        val e = assertThrows<TahException.ModelLoad> { TahModel.load("$modelDir/does-not-exist", ModelOptions()) }
        check("does-not-exist" in e.reason) { "reason: ${e.reason}" }
    }

    run.test("bad settings throw InvalidArgument") {
        assertThrows<TahException.InvalidArgument> { TahModel.load(modelDir, ModelOptions(threads = 0u)) }
        assertThrows<TahException.InvalidArgument> { TahModel.load(modelDir, ModelOptions(contextLength = 0u, tokenizerPath = tokenizer)) }
        model.newSession().use { session ->
            val e = assertThrows<TahException.InvalidArgument> {
                session.generate(userPrompt(tah.text), config(tah).copy(topP = 2.0f), Recorder())
            }
            check("top_p" in e.reason) { "reason: ${e.reason}" }
            assertThrows<TahException.InvalidArgument> { runBlocking { session.complete(userPrompt(tah.text), config(tah).copy(maxNewTokens = 0u)) } }
        }
    }

    run.test("a prompt longer than the context fails with ContextOverflow") {
        TahModel.load(modelDir, ModelOptions(contextLength = 8u, tokenizerPath = tokenizer)).use { small ->
            small.newSession().use { session ->
                val recorder = Recorder()
                session.generate(userPrompt(tah.text), config(tah), recorder).use {
                    val error = recorder.await().exceptionOrNull()
                    check(error is TahException.ContextOverflow) { "got $error" }
                }
            }
        }
    }

    run.test("a closed session cannot be used; closing cancels its generation") {
        val session = model.newSession()
        val recorder = Recorder()
        val handle = session.generate(userPrompt(tah.text), long, recorder)
        check(recorder.firstToken.await(60, TimeUnit.SECONDS)) { "no token" }
        session.close()
        check(recorder.await().getOrThrow().stopReason == StopReason.CANCELLED) { "not cancelled by close" }
        assertThrows<IllegalStateException> { session.cachedTokens() }
        handle.close()
    }

    run.test("a Rust panic becomes TahException.Internal, and the SDK keeps working") {
        val e = assertThrows<TahException.Internal> { diagnosticPanic("boom from Kotlin") }
        check("boom from Kotlin" in e.reason) { "reason: ${e.reason}" }
        model.newSession().use { session ->
            val result = runBlocking { session.complete(userPrompt(tah.text), config(tah, 4u)) }
            check(result.tokenIds == tah.tokens.take(4)) { "after the panic: ${result.tokenIds}" }
        }
    }

    run.test("closing the handle mid-generation cancels it; the session goes on") {
        model.newSession().use { session ->
            val recorder = Recorder()
            val handle = session.generate(userPrompt(tah.text), long, recorder)
            check(recorder.firstToken.await(60, TimeUnit.SECONDS)) { "no token" }
            handle.close()
            val result = recorder.await().getOrThrow()
            check(result.stopReason == StopReason.CANCELLED) { "stop reason ${result.stopReason}" }
            awaitIdle(session)
            val again = runBlocking { session.complete(userPrompt(tah.text), config(tah, 4u)) }
            check(again.tokenIds == tah.tokens.take(4)) { "after close: ${again.tokenIds}" }
        }
    }

    lifecycleTests(run, model, gguf, tah)

    model.close()
    run.finish()
}
