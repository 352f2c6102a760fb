import Foundation

extension TahSession {
    /// Generates from `prompt` and yields each token as it is produced.
    ///
    /// Every call starts a new generation on this session (the stream fails at
    /// once with `TahError.Busy` while another one runs). The stream finishes
    /// when the generation ends (end of sequence, a stop string,
    /// `maxNewTokens`, a full context, or `cancel()`) and throws the
    /// `TahError` of a failed generation.
    ///
    /// Terminating the stream — the consuming task is cancelled, or the loop
    /// over it stops early — cancels the generation in the engine within one
    /// forward pass. This does not rely on Swift task cancellation reaching
    /// Rust: the stream's termination handler cancels the generation's handle.
    ///
    /// - Parameters:
    ///   - prompt: what to generate from.
    ///   - config: generation settings; `defaultGenerationConfig()` by default.
    public func generate(
        _ prompt: Prompt,
        config: GenerationConfig = defaultGenerationConfig()
    ) -> AsyncThrowingStream<TokenEvent, Error> {
        AsyncThrowingStream { continuation in
            do {
                let handle = try generate(
                    prompt: prompt, config: config, listener: StreamListener(continuation))
                // The closure keeps the handle (whose release would cancel) and
                // the session alive until the stream ends.
                continuation.onTermination = { _ in
                    withExtendedLifetime(self) { handle.cancel() }
                }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }

    /// Generates from `prompt` and returns the whole result.
    ///
    /// Cancelling the calling task cancels the generation (through
    /// `cancel()`, since Swift task cancellation does not reach Rust by
    /// itself); the result then has `stopReason == .cancelled`.
    ///
    /// - Parameters:
    ///   - prompt: what to generate from.
    ///   - config: generation settings; `defaultGenerationConfig()` by default.
    public func result(
        for prompt: Prompt,
        config: GenerationConfig = defaultGenerationConfig()
    ) async throws -> GenerationResult {
        try await withTaskCancellationHandler {
            try await complete(prompt: prompt, config: config)
        } onCancel: {
            cancel()
        }
    }
}

extension Prompt {
    /// A prompt of one user message, rendered with the model's chat template.
    ///
    /// - Parameter text: the user's message.
    public static func user(_ text: String) -> Prompt {
        .chat(messages: [ChatMessage(role: .user, content: text)])
    }
}

/// Forwards a generation's events to an `AsyncThrowingStream`.
private final class StreamListener: TokenListener, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<TokenEvent, Error>.Continuation

    init(_ continuation: AsyncThrowingStream<TokenEvent, Error>.Continuation) {
        self.continuation = continuation
    }

    func onToken(event: TokenEvent) throws {
        continuation.yield(event)
    }

    func onComplete(result: GenerationResult) throws {
        continuation.finish()
    }

    func onError(error: TahError) throws {
        continuation.finish(throwing: error)
    }
}
