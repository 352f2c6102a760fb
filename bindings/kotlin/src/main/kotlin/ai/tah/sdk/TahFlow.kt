package ai.tah.sdk

import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.transform

/**
 * Generates from [prompt] and emits each token as it is produced.
 *
 * The flow is cold: every collection starts a new generation on this session
 * (which fails with [TahException.Busy] while another one runs; one that was
 * stopped, e.g. by `take(n)`, is waited for instead). It completes
 * when the generation ends (end of sequence, a stop string, `maxNewTokens`, a
 * full context, or a cancellation through [TahSession.cancel]) and fails with
 * the [TahException] of a failed generation. Cancelling the collector cancels
 * the generation in the engine within one forward pass.
 *
 * A slow collector slows the generation down rather than buffering tokens
 * without bound.
 *
 * @param prompt what to generate from.
 * @param config generation settings; [defaultGenerationConfig] by default.
 */
public fun TahSession.generateFlow(
    prompt: Prompt,
    config: GenerationConfig = defaultGenerationConfig(),
): Flow<TokenEvent> = generateUpdates(prompt, config).transform { update ->
    if (update is GenerationUpdate.Token) emit(update.event)
}

/** What [generateUpdates] emits: every token, then the result. */
public sealed interface GenerationUpdate {
    /** A generated token. */
    public data class Token(val event: TokenEvent) : GenerationUpdate

    /**
     * The generation ended; always the last update of a generation that did
     * not fail. [result] holds the whole text and the generation's [Stats]
     * (also after [TahSession.cancel]: `stopReason` is then `CANCELLED`).
     */
    public data class Finished(val result: GenerationResult) : GenerationUpdate
}

/**
 * Like [generateFlow], but also emits the [GenerationResult] (with its timing
 * [Stats]) as a last [GenerationUpdate.Finished].
 *
 * @param prompt what to generate from.
 * @param config generation settings; [defaultGenerationConfig] by default.
 */
public fun TahSession.generateUpdates(
    prompt: Prompt,
    config: GenerationConfig = defaultGenerationConfig(),
): Flow<GenerationUpdate> = callbackFlow {
    val listener = object : TokenListener {
        override fun onToken(event: TokenEvent) {
            // Fails only once the flow is closed, when the generation is being cancelled.
            trySendBlocking(GenerationUpdate.Token(event))
        }

        override fun onComplete(result: GenerationResult) {
            trySendBlocking(GenerationUpdate.Finished(result))
            channel.close()
        }

        override fun onError(error: TahException) {
            channel.close(error)
        }
    }
    val handle = generate(prompt, config, listener)
    awaitClose {
        handle.cancel()
        handle.close()
    }
}

/**
 * A prompt of one user message, rendered with the model's chat template.
 *
 * @param text the user's message.
 */
public fun userPrompt(text: String): Prompt =
    Prompt.Chat(listOf(ChatMessage(Role.USER, text)))
