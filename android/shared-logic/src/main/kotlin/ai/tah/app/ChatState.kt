package ai.tah.app

import ai.tah.sdk.GenerationConfig
import ai.tah.sdk.GenerationResult
import ai.tah.sdk.IterationMode
import ai.tah.sdk.Role
import ai.tah.sdk.TokenEvent

/** Consecutive tokens of one depth (1 = easy; 2 or more = a hard token that took extra passes). */
data class TokenSpan(val text: String, val depth: Int)

/** Where an entry of the conversation stands. */
sealed interface EntryStatus {
    /** A user message. */
    data object Sent : EntryStatus

    /** An answer still streaming. */
    data object Streaming : EntryStatus

    /** The engine ended the answer (also when it was stopped: `result.stopReason` is then `CANCELLED`). */
    data class Finished(val result: GenerationResult, val report: LatencyReport) : EntryStatus

    /** The answer failed. */
    data class Failed(val message: String) : EntryStatus

    /** The app stopped listening before the engine reported a result (the screen or the model went away). */
    data object Interrupted : EntryStatus

    /** An answer of a conversation restored at launch (no figures, no depths). */
    data object Restored : EntryStatus
}

/** One message of the conversation, [id] unique in it. User messages are one span of depth 0. */
data class ChatEntry(val id: Long, val role: Role, val spans: List<TokenSpan>, val status: EntryStatus) {
    val text: String get() = spans.joinToString("") { it.text }

    /** This answer with [event] appended, merged into the last span when the depth is the same. */
    fun appending(event: TokenEvent): ChatEntry {
        val depth = event.depth.toInt()
        val last = spans.lastOrNull()
        val merged = if (last != null && last.depth == depth) {
            spans.dropLast(1) + last.copy(text = last.text + event.text)
        } else {
            spans + TokenSpan(event.text, depth)
        }
        return copy(spans = merged)
    }

}

/** What the user controls. */
data class ChatSettings(
    /** Let the model think (`<think>...</think>`) before answering. */
    val thinking: Boolean = true,
    val mode: IterationMode = IterationMode.DECIDER,
    /** The decider's threshold (DECIDER mode only); null: the model's own. */
    val threshold: Float? = null,
    val maxNewTokens: Int = 1024,
) {
    /** [base] with these settings. */
    fun applyTo(base: GenerationConfig): GenerationConfig = base.copy(
        enableThinking = thinking,
        mode = mode,
        threshold = threshold.takeIf { mode == IterationMode.DECIDER },
        maxNewTokens = maxNewTokens.toUInt(),
    )
}

/** The chat screen's state. */
data class ChatState(
    val entries: List<ChatEntry> = emptyList(),
    val settings: ChatSettings = ChatSettings(),
    /** The id of the answer being streamed, if any. */
    val streamingId: Long? = null,
    /** The figures of the last finished answer. */
    val lastReport: LatencyReport? = null,
    /** Something to tell the user about the saved conversation (it could not be restored or saved). */
    val notice: String? = null,
) {
    val generating: Boolean get() = streamingId != null
}
