import Foundation

extension TahSession {
    /// Generates from `prompt` and yields each token as it is produced.
    ///
    /// Every call starts a new generation on this session (the stream fails at
    /// once with `TahError.Busy` while another one runs; one that was stopped,
    /// e.g. by leaving its loop, is waited for instead). The stream finishes
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
        stream(prompt, config, token: { $0 }, finished: { _ in nil })
    }

    /// Like `generate(_:config:)`, but also yields the `GenerationResult`
    /// (with its timing `Stats`) as a last `.finished` update.
    ///
    /// - Parameters:
    ///   - prompt: what to generate from.
    ///   - config: generation settings; `defaultGenerationConfig()` by default.
    public func updates(
        _ prompt: Prompt,
        config: GenerationConfig = defaultGenerationConfig()
    ) -> AsyncThrowingStream<GenerationUpdate, Error> {
        stream(prompt, config, token: { .token($0) }, finished: { .finished($0) })
    }

    /// A stream of one generation's events, mapped by `token` and `finished`.
    private func stream<Element>(
        _ prompt: Prompt,
        _ config: GenerationConfig,
        token: @escaping (TokenEvent) -> Element,
        finished: @escaping (GenerationResult) -> Element?
    ) -> AsyncThrowingStream<Element, Error> {
        AsyncThrowingStream { continuation in
            do {
                let listener = StreamListener(continuation, token: token, finished: finished)
                let handle = try generate(prompt: prompt, config: config, listener: listener)
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

/// What `TahSession.updates(_:config:)` yields: every token, then the result.
public enum GenerationUpdate {
    /// A generated token.
    case token(TokenEvent)
    /// The generation ended; always the last update of a generation that did
    /// not fail. The result holds the whole text and the generation's `Stats`
    /// (also after `cancel()`: `stopReason` is then `.cancelled`).
    case finished(GenerationResult)
}

/// Forwards a generation's events to an `AsyncThrowingStream`.
private final class StreamListener<Element>: TokenListener, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<Element, Error>.Continuation
    private let token: (TokenEvent) -> Element
    private let finished: (GenerationResult) -> Element?

    init(
        _ continuation: AsyncThrowingStream<Element, Error>.Continuation,
        token: @escaping (TokenEvent) -> Element,
        finished: @escaping (GenerationResult) -> Element?
    ) {
        self.continuation = continuation
        self.token = token
        self.finished = finished
    }

    func onToken(event: TokenEvent) throws {
        continuation.yield(token(event))
    }

    func onComplete(result: GenerationResult) throws {
        if let last = finished(result) {
            continuation.yield(last)
        }
        continuation.finish()
    }

    func onError(error: TahError) throws {
        continuation.finish(throwing: error)
    }
}
