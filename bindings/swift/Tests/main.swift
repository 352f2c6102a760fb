// End-to-end tests of the Swift bindings: the real libtah_ffi.so and a real
// fixture model. Built and run by scripts/test-bindings.sh as
//   swifttest <model dir> <tokenizer.json> <cases file>
// The last line printed is "N passed, N failed".

import Foundation

/// A fixture case: a user message, its rendered prompt and the reference's greedy tokens.
struct Case {
    let name: String
    let mode: IterationMode
    let text: String
    let prompt: String
    let tokens: [UInt32]
}

struct Failure: Error, CustomStringConvertible {
    let description: String
}

func unhex(_ s: Substring) -> String {
    var bytes = [UInt8]()
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        bytes.append(UInt8(s[i..<j], radix: 16)!)
        i = j
    }
    return String(decoding: bytes, as: UTF8.self)
}

func readCases(_ path: String) throws -> [String: Case] {
    let modes: [String: IterationMode] = ["tah": .decider, "never": .never, "always": .always]
    var cases = [String: Case]()
    for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
        let f = line.split(separator: "|", omittingEmptySubsequences: false)
        cases[String(f[0])] = Case(
            name: String(f[0]), mode: modes[String(f[1])]!, text: unhex(f[3]), prompt: unhex(f[4]),
            tokens: f[2].split(separator: ",").map { UInt32($0)! })
    }
    return cases
}

/// Greedy settings of the fixtures: 24 new tokens, the case's iteration mode.
func config(_ c: Case) -> GenerationConfig {
    var config = greedyGenerationConfig()
    config.maxNewTokens = UInt32(c.tokens.count)
    config.mode = c.mode
    return config
}

/// Records a generation's events and waits for its end.
final class Recorder: TokenListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _events = [TokenEvent]()
    private var _outcome: Result<GenerationResult, Error>?
    private let done = DispatchSemaphore(value: 0)
    let firstToken = DispatchSemaphore(value: 0)
    let throwOnToken: Int

    init(throwOnToken: Int = -1) { self.throwOnToken = throwOnToken }

    var events: [TokenEvent] { lock.withLock { _events } }

    func onToken(event: TokenEvent) throws {
        let n = lock.withLock { _events.append(event); return _events.count }
        if n == 1 { firstToken.signal() }
        if n == throwOnToken { throw Failure(description: "listener failure on purpose") }
    }

    func onComplete(result: GenerationResult) throws { finish(.success(result)) }
    func onError(error: TahError) throws { finish(.failure(error)) }

    private func finish(_ outcome: Result<GenerationResult, Error>) {
        lock.withLock { _outcome = outcome }
        done.signal()
    }

    func wait() throws -> Result<GenerationResult, Error> {
        guard done.wait(timeout: .now() + 120) == .success else { throw Failure(description: "timeout") }
        return lock.withLock { _outcome! }
    }

    func waitFirstToken() throws {
        guard firstToken.wait(timeout: .now() + 60) == .success else { throw Failure(description: "no token") }
    }
}

nonisolated(unsafe) var passed = 0
nonisolated(unsafe) var failed = 0

func test(_ name: String, _ body: () async throws -> Void) async {
    let start = Date()
    do {
        try await body()
        passed += 1
        print("PASS \(name) (\(Int(Date().timeIntervalSince(start) * 1000)) ms)")
    } catch {
        failed += 1
        print("FAIL \(name): \(error)")
    }
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw Failure(description: message()) }
}

/// Runs `body`, which must throw an error matching `matches`.
func expectError(_ what: String, _ matches: (Error) -> Bool, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        try check(matches(error), "expected \(what), got \(error)")
        return
    }
    throw Failure(description: "expected \(what), nothing was thrown")
}

/// Waits until the session's generation has given the session back.
func awaitIdle(_ session: TahSession) throws {
    let deadline = Date().addingTimeInterval(30)
    while true {
        do {
            _ = try session.cachedTokens()
            return
        } catch TahError.Busy {
            try check(Date() < deadline, "session still busy after 30 s")
            Thread.sleep(forTimeInterval: 0.01)
        }
    }
}

let args = CommandLine.arguments
let (modelDir, tokenizer) = (args[1], args[2])
let cases = try readCases(args[3])
let tah = cases["short_arith"]!
let never = cases["short_arith_never"]!
let always = cases["short_arith_always"]!
let model = try TahModel.load(path: modelDir, options: ModelOptions(threads: 2, tokenizerPath: tokenizer))
// A long generation, for cancellation: no stop before the context is full.
var long = greedyGenerationConfig()
long.maxNewTokens = 4000

await test("greedy tokens match the fixture (chat prompt, streaming order)") {
    let session = model.newSession()
    let recorder = Recorder()
    let handle = try session.generate(prompt: .user(tah.text), config: config(tah), listener: recorder)
    let result = try recorder.wait().get()
    try check(result.tokenIds == tah.tokens, "tokens \(result.tokenIds) != \(tah.tokens)")
    let events = recorder.events
    try check(events.map(\.tokenId) == tah.tokens, "streamed \(events.map(\.tokenId))")
    try check(events.map(\.index) == (0..<UInt32(tah.tokens.count)).map { $0 }, "indices out of order")
    try check(events.map(\.text).joined() == result.text, "streamed text != result text")
    try check(result.stopReason == .maxTokens, "stop reason \(result.stopReason)")
    try check(handle.isFinished(), "handle not finished")
}

await test("raw prompts in never and always modes match the fixture") {
    let session = model.newSession()
    for c in [never, always] {
        let recorder = Recorder()
        let handle = try session.generate(prompt: .raw(text: c.prompt), config: config(c), listener: recorder)
        let result = try recorder.wait().get()
        try check(result.tokenIds == c.tokens, "\(c.name): \(result.tokenIds) != \(c.tokens)")
        _ = handle
    }
}

await test("async result(for:) returns the fixture's tokens") {
    let result = try await model.newSession().result(for: .user(tah.text), config: config(tah))
    try check(result.tokenIds == tah.tokens, "tokens \(result.tokenIds)")
}

await test("the AsyncThrowingStream yields the fixture's tokens in order") {
    var ids = [UInt32]()
    var indices = [UInt32]()
    for try await event in model.newSession().generate(.user(tah.text), config: config(tah)) {
        ids.append(event.tokenId)
        indices.append(event.index)
    }
    try check(ids == tah.tokens, "stream \(ids)")
    try check(indices == (0..<UInt32(tah.tokens.count)).map { $0 }, "indices out of order")
}

await test("leaving the stream early cancels the generation") {
    let session = model.newSession()
    var count = 0
    for try await _ in session.generate(.user(tah.text), config: long) {
        count += 1
        if count == 3 { break }
    }
    try awaitIdle(session)
    let result = try await session.result(for: .user(tah.text), config: config(tah))
    try check(result.tokenIds == tah.tokens, "after cancel: \(result.tokenIds)")
}

await test("cancelling the consuming task cancels the generation") {
    let session = model.newSession()
    let stream = session.generate(.user(tah.text), config: long)
    let task = Task.detached {
        var count = 0
        for try await _ in stream { count += 1 }
        return count
    }
    try await Task.sleep(nanoseconds: 300_000_000)
    task.cancel()
    let count = try await task.value
    try check(count < 4000, "not cancelled: \(count) tokens")
    try awaitIdle(session)
}

await test("cancelling a task awaiting result(for:) cancels the generation") {
    let session = model.newSession()
    let task = Task.detached { try await session.result(for: .user(tah.text), config: long) }
    try await Task.sleep(nanoseconds: 200_000_000)
    task.cancel()
    let result = try await task.value
    try check(result.stopReason == .cancelled, "stop reason \(result.stopReason)")
}

await test("cancel from another thread ends the generation with .cancelled") {
    let session = model.newSession()
    let recorder = Recorder()
    let handle = try session.generate(prompt: .user(tah.text), config: long, listener: recorder)
    try recorder.waitFirstToken()
    let thread = Thread { handle.cancel() }
    thread.start()
    let result = try recorder.wait().get()
    try check(result.stopReason == .cancelled, "stop reason \(result.stopReason)")
    try check(result.tokenIds.count < 4000, "not cancelled early")
}

await test("generate on a busy session throws Busy") {
    let session = model.newSession()
    let recorder = Recorder()
    var handle: GenerationHandle? = try session.generate(prompt: .user(tah.text), config: long, listener: recorder)
    try await expectError("Busy", { if case TahError.Busy = $0 { return true } else { return false } }) {
        _ = try session.generate(prompt: .user(tah.text), config: config(tah), listener: Recorder())
    }
    try await expectError("Busy", { if case TahError.Busy = $0 { return true } else { return false } }) {
        try session.reset()
    }
    _ = handle
    handle = nil  // releasing the handle cancels the generation
    try check(try recorder.wait().get().stopReason == .cancelled, "not cancelled on release")
}

await test("a throwing listener fails the generation, not the session") {
    let session = model.newSession()
    let recorder = Recorder(throwOnToken: 2)
    let handle = try session.generate(prompt: .user(tah.text), config: config(tah), listener: recorder)
    switch try recorder.wait() {
    case .failure(TahError.Internal(let reason)):
        try check(reason.contains("on purpose"), "reason: \(reason)")
    case let other:
        throw Failure(description: "got \(other)")
    }
    _ = handle
    try awaitIdle(session)
    let result = try await session.result(for: .user(tah.text), config: config(tah))
    try check(result.tokenIds == tah.tokens, "after listener failure: \(result.tokenIds)")
}

await test("two sessions generate concurrently") {
    try await withThrowingTaskGroup(of: (String, [UInt32]).self) { group in
        for c in [tah, never] {
            group.addTask {
                let r = try await model.newSession().result(for: .user(c.text), config: config(c))
                return (c.name, r.tokenIds)
            }
        }
        for try await (name, ids) in group {
            try check(ids == cases[name]!.tokens, "\(name): \(ids)")
        }
    }
}

await test("a missing model directory throws ModelLoad") {
    try await expectError("ModelLoad", {
        if case TahError.ModelLoad(let reason) = $0 { return reason.contains("does-not-exist") }
        return false
    }) {
        _ = try TahModel.load(path: modelDir + "/does-not-exist", options: ModelOptions())
    }
}

await test("bad settings throw InvalidArgument") {
    let isInvalid: (Error) -> Bool = { if case TahError.InvalidArgument = $0 { return true } else { return false } }
    try await expectError("InvalidArgument", isInvalid) {
        _ = try TahModel.load(path: modelDir, options: ModelOptions(threads: 0))
    }
    var bad = config(tah)
    bad.topP = 2
    try await expectError("InvalidArgument", isInvalid) {
        _ = try model.newSession().generate(prompt: .user(tah.text), config: bad, listener: Recorder())
    }
    var noTokens = config(tah)
    noTokens.maxNewTokens = 0
    try await expectError("InvalidArgument", isInvalid) {
        _ = try await model.newSession().result(for: .user(tah.text), config: noTokens)
    }
}

await test("a prompt longer than the context fails with ContextOverflow") {
    let small = try TahModel.load(path: modelDir, options: ModelOptions(contextLength: 8, tokenizerPath: tokenizer))
    var ids = [UInt32]()
    do {
        for try await event in small.newSession().generate(.user(tah.text), config: config(tah)) {
            ids.append(event.tokenId)
        }
        throw Failure(description: "no error")
    } catch TahError.ContextOverflow {
        try check(ids.isEmpty, "tokens before the error")
    }
}

await test("a Rust panic becomes TahError.Internal, and the SDK keeps working") {
    try await expectError("Internal", {
        if case TahError.Internal(let reason) = $0 { return reason.contains("boom from Swift") }
        return false
    }) {
        try diagnosticPanic(message: "boom from Swift")
    }
    var short = config(tah)
    short.maxNewTokens = 4
    let result = try await model.newSession().result(for: .user(tah.text), config: short)
    try check(result.tokenIds == Array(tah.tokens.prefix(4)), "after the panic: \(result.tokenIds)")
}

await test("releasing the handle mid-generation cancels it; the session goes on") {
    let session = model.newSession()
    let recorder = Recorder()
    var handle: GenerationHandle? = try session.generate(prompt: .user(tah.text), config: long, listener: recorder)
    try recorder.waitFirstToken()
    _ = handle
    handle = nil  // releasing the last reference cancels the generation
    try check(try recorder.wait().get().stopReason == .cancelled, "not cancelled on release")
    try awaitIdle(session)
    var short = config(tah)
    short.maxNewTokens = 4
    let result = try await session.result(for: .user(tah.text), config: short)
    try check(result.tokenIds == Array(tah.tokens.prefix(4)), "after release: \(result.tokenIds)")
}

print("\(passed) passed, \(failed) failed")
exit(failed == 0 ? 0 : 1)
