package ai.tah.app

import ai.tah.sdk.ChatMessage
import ai.tah.sdk.GenerationConfig
import ai.tah.sdk.GenerationUpdate
import ai.tah.sdk.Prompt
import ai.tah.sdk.Role
import ai.tah.sdk.TahException
import ai.tah.sdk.TahModel
import ai.tah.sdk.TahSession
import ai.tah.sdk.generateUpdates
import java.io.File
import java.util.concurrent.atomic.AtomicLong
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Job
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.flow.updateAndGet
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * The chat screen's logic: one conversation with the model of [models],
 * streamed token by token into [state]. Generations run on the engine's own
 * worker thread; [scope] (the view model's) only collects their tokens, and
 * cancelling it cancels the generation.
 *
 * @param baseConfig sampling settings; [ChatSettings] are applied on top.
 * @param ioDispatcher where the conversation is saved and restored.
 * @param conversationFile where the session is saved after every answer
 *   ([TahSession.saveState]: the conversation and its KV cache), so that a
 *   relaunch continues it; null: not saved.
 */
class ChatController(
    private val scope: CoroutineScope,
    private val models: ModelHolder,
    private val baseConfig: GenerationConfig,
    private val ioDispatcher: CoroutineDispatcher,
    private val conversationFile: File? = null,
) {
    private val _state = MutableStateFlow(ChatState())
    val state: StateFlow<ChatState> = _state.asStateFlow()

    private val lock = Any()
    private var session: TahSession? = null
    private var sessionModel: TahModel? = null
    private var job: Job? = null
    private val ids = AtomicLong()

    fun updateSettings(transform: (ChatSettings) -> ChatSettings) {
        _state.update { it.copy(settings = transform(it.settings)) }
    }

    /**
     * Sends [text] as the next user message and streams the answer. Returns
     * false, doing nothing, when no model is loaded, the text is blank or an
     * answer is still streaming.
     */
    fun send(text: String): Boolean {
        val model = models.model ?: return false
        if (text.isBlank()) return false
        val question = ChatEntry(ids.incrementAndGet(), Role.USER, listOf(TokenSpan(text, 0)), EntryStatus.Sent)
        val answerId = ids.incrementAndGet()
        val answer = ChatEntry(answerId, Role.ASSISTANT, emptyList(), EntryStatus.Streaming)
        var accepted = false
        val next = _state.updateAndGet { s ->
            accepted = !s.generating
            if (!accepted) s else s.copy(entries = s.entries + question + answer, streamingId = answerId)
        }
        if (!accepted) return false
        val prompt = Prompt.Chat(conversation(next.entries.dropLast(1)))
        val config = next.settings.applyTo(baseConfig)
        synchronized(lock) {
            val session = sessionFor(model)
            job = scope.launch { stream(answerId, session, prompt, config) }
        }
        return true
    }

    /**
     * Stops the answer being streamed; it ends within one forward pass with
     * what was generated so far and its figures. The session stays usable:
     * its cache keeps what was computed for the next message.
     */
    fun stop() {
        synchronized(lock) { session?.cancel() }
    }

    /** Starts a new, empty conversation (stopping the answer being streamed); the saved one is deleted. */
    fun newConversation() {
        val previous = synchronized(lock) { job }
        detach()
        _state.update { it.copy(entries = emptyList(), streamingId = null, lastReport = null, notice = null) }
        // After the previous answer's coroutine, which may be saving.
        conversationFile?.let { file -> scope.launch { previous?.join(); withContext(ioDispatcher) { file.delete() } } }
    }

    /**
     * Restores the conversation saved in the conversation file, with its KV
     * cache, on the loaded model. A file that cannot be restored (damaged,
     * or saved with another model) leaves the chat empty with a [ChatState.notice];
     * the next answer replaces it. Returns whether a conversation was restored.
     */
    suspend fun restoreConversation(): Boolean {
        val file = conversationFile?.takeIf { it.isFile } ?: return false
        val model = models.model ?: return false
        val restored = try {
            withContext(ioDispatcher) { TahSession.restore(model, file.path).let { it to it.history() } }
        } catch (e: TahException) {
            _state.update { it.copy(notice = "The last conversation could not be restored: ${e.describe()}") }
            return false
        }
        val (session, history) = restored
        synchronized(lock) {
            detach()
            this.session = session
            sessionModel = model
        }
        val entries = history.filter { it.role != Role.SYSTEM }.map { message ->
            val status = if (message.role == Role.USER) EntryStatus.Sent else EntryStatus.Restored
            ChatEntry(ids.incrementAndGet(), message.role, listOf(TokenSpan(message.content, 0)), status)
        }
        _state.update { it.copy(entries = entries, streamingId = null, lastReport = null, notice = null) }
        return true
    }

    /**
     * Lets go of the session (before its model is replaced or the screen goes
     * away): stops listening, cancels the generation and closes the session.
     */
    fun detach() {
        synchronized(lock) {
            job?.cancel()
            job = null
            session?.close()
            session = null
            sessionModel = null
        }
    }

    private fun sessionFor(model: TahModel): TahSession {
        session?.let { if (sessionModel === model) return it }
        session?.close()
        return model.newSession().also {
            session = it
            sessionModel = model
        }
    }

    private suspend fun stream(answerId: Long, session: TahSession, prompt: Prompt, config: GenerationConfig) {
        fun updateAnswer(transform: (ChatEntry) -> ChatEntry) = _state.update { s ->
            s.copy(entries = s.entries.map { if (it.id == answerId) transform(it) else it })
        }
        val profiler = LatencyProfiler().apply { start() }
        try {
            session.generateUpdates(prompt, config).collect { update ->
                when (update) {
                    is GenerationUpdate.Token -> {
                        profiler.onToken(update.event)
                        updateAnswer { it.appending(update.event) }
                    }
                    is GenerationUpdate.Finished -> {
                        val report = profiler.finish(update.result)
                        updateAnswer { it.copy(status = EntryStatus.Finished(update.result, report)) }
                        _state.update { it.copy(lastReport = report) }
                    }
                }
            }
            save(session)
        } catch (e: TahException) {
            updateAnswer { it.copy(status = EntryStatus.Failed(e.describe())) }
        } finally {
            // Also reached when the collecting coroutine is cancelled (detach, the scope ends).
            updateAnswer { if (it.status == EntryStatus.Streaming) it.copy(status = EntryStatus.Interrupted) else it }
            _state.update { if (it.streamingId == answerId) it.copy(streamingId = null) else it }
        }
    }

    /** Saves the session after an answer; a failure only costs the next launch its restore. */
    private suspend fun save(session: TahSession) {
        val file = conversationFile ?: return
        try {
            withContext(ioDispatcher) { session.saveState(file.path) }
        } catch (e: TahException) {
            _state.update { it.copy(notice = "The conversation was not saved: ${e.describe()}") }
        }
    }

    companion object {
        /**
         * The messages the model sees: user messages and the answers that
         * produced text (a failed or empty answer is left out).
         */
        fun conversation(entries: List<ChatEntry>): List<ChatMessage> = entries
            .filter { it.role == Role.USER || (it.status !is EntryStatus.Failed && it.text.isNotEmpty()) }
            .map { ChatMessage(it.role, it.text) }
    }
}
