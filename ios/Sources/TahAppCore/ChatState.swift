import TahSDK

/// Consecutive tokens of one depth (1 = easy; 2 or more = a hard token that
/// took extra passes).
public struct TokenSpan: Equatable, Sendable {
    public var text: String
    public var depth: Int

    public init(text: String, depth: Int) {
        self.text = text
        self.depth = depth
    }
}

/// Where an entry of the conversation stands.
public enum EntryStatus: Equatable, Sendable {
    /// A user message.
    case sent
    /// An answer still streaming.
    case streaming
    /// The engine ended the answer (also when it was stopped: the result's
    /// `stopReason` is then `.cancelled`).
    case finished(GenerationResult, LatencyReport)
    /// The answer failed.
    case failed(String)
    /// The app stopped listening before the engine reported a result (the
    /// screen or the model went away).
    case interrupted
    /// An answer of a conversation restored at launch (no figures, no depths).
    case restored
}

/// One message of the conversation, `id` unique in it. User messages are one
/// span of depth 0.
public struct ChatEntry: Identifiable, Equatable, Sendable {
    public let id: Int
    public let role: Role
    public var spans: [TokenSpan]
    public var status: EntryStatus

    public init(id: Int, role: Role, spans: [TokenSpan], status: EntryStatus) {
        self.id = id
        self.role = role
        self.spans = spans
        self.status = status
    }

    public var text: String { spans.map(\.text).joined() }

    /// Appends `event`, merged into the last span when the depth is the same.
    public mutating func append(_ event: TokenEvent) {
        let depth = Int(event.depth)
        if let last = spans.indices.last, spans[last].depth == depth {
            spans[last].text += event.text
        } else {
            spans.append(TokenSpan(text: event.text, depth: depth))
        }
    }
}

/// What the user controls.
public struct ChatSettings: Equatable, Sendable {
    /// Let the model think (`<think>...</think>`) before answering.
    public var thinking: Bool
    public var mode: IterationMode
    /// The decider's threshold (`.decider` mode only); nil: the model's own.
    public var threshold: Float?
    public var maxNewTokens: Int

    public init(thinking: Bool = true, mode: IterationMode = .decider, threshold: Float? = nil, maxNewTokens: Int = 1024) {
        self.thinking = thinking
        self.mode = mode
        self.threshold = threshold
        self.maxNewTokens = maxNewTokens
    }

    /// `base` with these settings.
    public func apply(to base: GenerationConfig) -> GenerationConfig {
        var config = base
        config.enableThinking = thinking
        config.mode = mode
        config.threshold = mode == .decider ? threshold : nil
        config.maxNewTokens = UInt32(maxNewTokens)
        return config
    }
}
