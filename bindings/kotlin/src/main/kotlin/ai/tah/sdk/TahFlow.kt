package ai.tah.sdk

import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow

/**
 * Generates from [prompt] and emits each token as it is produced.
 *
 * The flow is cold: every collection starts a new generation on this session
 * (which fails with [TahException.Busy] while another one runs). It completes
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
): Flow<TokenEvent> = callbackFlow {
    val listener = object : TokenListener {
        override fun onToken(event: TokenEvent) {
            // Fails only once the flow is closed, when the generation is being cancelled.
            trySendBlocking(event)
        }

        override fun onComplete(result: GenerationResult) {
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
