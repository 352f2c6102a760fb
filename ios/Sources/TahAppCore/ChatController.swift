import Foundation
import Observation
import TahSDK

/// The chat screen's logic: one conversation with the model of `models`,
/// streamed token by token. Generations run on the engine's own worker
/// thread; this object (on the main actor) only receives their tokens.
@MainActor
@Observable
public final class ChatController {
    public private(set) var entries = [ChatEntry]()
    public var settings = ChatSettings()
    /// The id of the answer being streamed, if any.
    public private(set) var streamingId: Int?
    /// The figures of the last finished answer.
    public private(set) var lastReport: LatencyReport?
    /// Something to tell the user about the saved conversation (it could not
    /// be restored or saved).
    public private(set) var notice: String?

    public var generating: Bool { streamingId != nil }

    @ObservationIgnored private let models: ModelHolder
    @ObservationIgnored private let baseConfig: GenerationConfig
    @ObservationIgnored private let conversationPath: String?
    @ObservationIgnored private var session: TahSession?
    @ObservationIgnored private var sessionModel: TahModel?
    @ObservationIgnored private var task: Task<Void, Never>?
    @ObservationIgnored private var lastId = 0

    /// - Parameters:
    ///   - baseConfig: sampling settings; `settings` are applied on top.
    ///   - conversationPath: where the session is saved after every answer
    ///     (`TahSession.saveState`: the conversation and its KV cache), so that
    ///     a relaunch continues it; nil: not saved.
    public init(
        models: ModelHolder, baseConfig: GenerationConfig = defaultGenerationConfig(),
        conversationPath: String? = nil
    ) {
        self.models = models
        self.baseConfig = baseConfig
        self.conversationPath = conversationPath
    }

    /// Sends `text` as the next user message and streams the answer. Returns
    /// false, doing nothing, when no model is loaded, the text is blank or an
    /// answer is still streaming.
    @discardableResult
    public func send(_ text: String) -> Bool {
        guard !generating, let model = models.model,
            !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else { return false }
        entries.append(ChatEntry(id: nextId(), role: .user, spans: [TokenSpan(text: text, depth: 0)], status: .sent))
        let prompt = Prompt.chat(messages: Self.conversation(entries))
        let answerId = nextId()
        entries.append(ChatEntry(id: answerId, role: .assistant, spans: [], status: .streaming))
        streamingId = answerId
        let session = session(for: model)
        let config = settings.apply(to: baseConfig)
        task = Task { await stream(answerId, session, prompt, config) }
        return true
    }

    /// Stops the answer being streamed; it ends within one forward pass with
    /// what was generated so far and its figures. The session stays usable:
    /// its cache keeps what was computed for the next message.
    public func stop() {
        session?.cancel()
    }

    /// Starts a new, empty conversation (stopping the answer being streamed);
    /// the saved one is deleted.
    public func newConversation() {
        let previous = task
        detach()
        if let conversationPath {
            // After the previous answer's task, which may be saving.
            Task {
                await previous?.value
                try? FileManager.default.removeItem(atPath: conversationPath)
            }
        }
        entries = []
        streamingId = nil
        lastReport = nil
        notice = nil
    }

    /// Restores the conversation saved at `conversationPath`, with its KV
    /// cache, on the loaded model. A file that cannot be restored (damaged,
    /// or saved with another model) leaves the chat empty with a `notice`;
    /// the next answer replaces it. Returns whether a conversation was restored.
    @discardableResult
    public func restoreConversation() async -> Bool {
        guard let path = conversationPath, FileManager.default.fileExists(atPath: path),
            let model = models.model
        else { return false }
        let restored = await Task.detached { () -> Result<(TahSession, [ChatMessage]), Error> in
            Result { let session = try TahSession.restore(model: model, path: path); return (session, try session.history()) }
        }.value
        switch restored {
        case .failure(let error):
            notice = "The last conversation could not be restored: \(describe(error))"
            return false
        case .success(let (session, history)):
            detach()
            self.session = session
            sessionModel = model
            entries = history.filter { $0.role != .system }.map { message in
                ChatEntry(
                    id: nextId(), role: message.role,
                    spans: [TokenSpan(text: message.content, depth: message.role == .user ? 0 : 1)],
                    status: message.role == .user ? .sent : .restored)
            }
            streamingId = nil
            lastReport = nil
            notice = nil
            return true
        }
    }

    /// Lets go of the session (before its model is replaced or the screen
    /// goes away): stops listening, which cancels the generation, and
    /// releases the session.
    public func detach() {
        task?.cancel()
        task = nil
        session = nil
        sessionModel = nil
    }

    /// The messages the model sees: user messages and the answers that
    /// produced text (a failed or empty answer is left out).
    public nonisolated static func conversation(_ entries: [ChatEntry]) -> [ChatMessage] {
        entries.filter { entry in
            if entry.role == .user { return true }
            if case .failed = entry.status { return false }
            return !entry.text.isEmpty
        }.map { ChatMessage(role: $0.role, content: $0.text) }
    }

    private func nextId() -> Int {
        lastId += 1
        return lastId
    }

    private func session(for model: TahModel) -> TahSession {
        if let session, sessionModel === model { return session }
        let session = model.newSession()
        self.session = session
        sessionModel = model
        return session
    }

    private func stream(_ answerId: Int, _ session: TahSession, _ prompt: Prompt, _ config: GenerationConfig) async {
        var profiler = LatencyProfiler()
        var answered = false
        do {
            for try await update in session.updates(prompt, config: config) {
                switch update {
                case .token(let event):
                    profiler.record(event)
                    updateAnswer(answerId) { $0.append(event) }
                case .finished(let result):
                    let report = profiler.finish(result)
                    updateAnswer(answerId) { $0.status = .finished(result, report) }
                    lastReport = report
                    answered = true
                }
            }
            // Not after a detach: a new conversation has deleted the file.
            if answered && !Task.isCancelled { await save(session) }
        } catch {
            updateAnswer(answerId) { $0.status = .failed(describe(error)) }
        }
        // The stream also ends, without a result, when this task is cancelled (detach).
        updateAnswer(answerId) { if $0.status == .streaming { $0.status = .interrupted } }
        if streamingId == answerId { streamingId = nil }
    }

    /// Saves the session after an answer; a failure only costs the next
    /// launch its restore.
    private func save(_ session: TahSession) async {
        guard let path = conversationPath else { return }
        let saved = await Task.detached { Result { try session.saveState(path: path) } }.value
        if case .failure(let error) = saved { notice = "The conversation was not saved: \(describe(error))" }
    }

    private func updateAnswer(_ id: Int, _ change: (inout ChatEntry) -> Void) {
        if let i = entries.firstIndex(where: { $0.id == id }) { change(&entries[i]) }
    }
}
