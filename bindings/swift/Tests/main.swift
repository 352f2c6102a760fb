// End-to-end tests of the Swift bindings: the real libtah_ffi.so and a real
// fixture model. Built and run by scripts/test-bindings.sh as
//   swifttest <model dir> <tokenizer.json> <cases file> <a .gguf model>
// The last line printed is "N passed, N failed".

import Foundation
import TahSDK

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

let args = CommandLine.arguments
let (modelDir, tokenizer, gguf) = (args[1], args[2], args[4])
let cases = try readCases(args[3])
let run = TestRun()
let tah = cases["short_arith"]!
let never = cases["short_arith_never"]!
let always = cases["short_arith_always"]!
let model = try TahModel.load(path: modelDir, options: ModelOptions(threads: 2, tokenizerPath: tokenizer))
// A long generation, for cancellation: no stop before the context is full.
var long = greedyGenerationConfig()
long.maxNewTokens = 4000

await run.test("greedy tokens match the fixture (chat prompt, streaming order)") {
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

await run.test("an f32 KV cache gives the fixture's tokens; a q8 cache generates as many") {
    for precision in [KvPrecision.f32, KvPrecision.q8] {
        let options = ModelOptions(tokenizerPath: tokenizer, kvPrecision: precision)
        let m = try TahModel.load(path: modelDir, options: options)
        let session = m.newSession()
        let recorder = Recorder()
        let handle = try session.generate(prompt: .user(tah.text), config: config(tah), listener: recorder)
        let ids = try recorder.wait().get().tokenIds
        if precision == .f32 {
            try check(ids == tah.tokens, "f32: \(ids) != \(tah.tokens)")
        } else {
            try check(ids.count == tah.tokens.count, "q8: \(ids.count) tokens")
        }
        _ = handle
    }
}

await run.test("raw prompts in never and always modes match the fixture") {
    let session = model.newSession()
    for c in [never, always] {
        let recorder = Recorder()
        let handle = try session.generate(prompt: .raw(text: c.prompt), config: config(c), listener: recorder)
        let result = try recorder.wait().get()
        try check(result.tokenIds == c.tokens, "\(c.name): \(result.tokenIds) != \(c.tokens)")
        _ = handle
    }
}

await run.test("async result(for:) returns the fixture's tokens") {
    let result = try await model.newSession().result(for: .user(tah.text), config: config(tah))
    try check(result.tokenIds == tah.tokens, "tokens \(result.tokenIds)")
}

await run.test("the AsyncThrowingStream yields the fixture's tokens in order") {
    var ids = [UInt32]()
    var indices = [UInt32]()
    for try await event in model.newSession().generate(.user(tah.text), config: config(tah)) {
        ids.append(event.tokenId)
        indices.append(event.index)
    }
    try check(ids == tah.tokens, "stream \(ids)")
    try check(indices == (0..<UInt32(tah.tokens.count)).map { $0 }, "indices out of order")
}

await run.test("updates(_:config:) yields the tokens, then the result with its stats") {
    var ids = [UInt32]()
    var result: GenerationResult?
    for try await update in model.newSession().updates(.user(tah.text), config: config(tah)) {
        switch update {
        case .token(let event):
            try check(result == nil, "a token after the result")
            ids.append(event.tokenId)
        case .finished(let r): result = r
        }
    }
    try check(ids == tah.tokens, "streamed \(ids)")
    try check(result?.tokenIds == tah.tokens, "result \(String(describing: result?.tokenIds))")
    try check(result?.stats.decodeTokens == UInt32(tah.tokens.count), "stats \(String(describing: result?.stats))")
}

await run.test("cancel() ends updates(_:config:) with a .cancelled result") {
    let session = model.newSession()
    var ids = [UInt32]()
    var result: GenerationResult?
    for try await update in session.updates(.user(tah.text), config: long) {
        switch update {
        case .token(let event):
            ids.append(event.tokenId)
            if event.index == 2 { session.cancel() }
        case .finished(let r): result = r
        }
    }
    try check(result?.stopReason == .cancelled, "stop reason \(String(describing: result?.stopReason))")
    try check(result?.tokenIds == ids && ids.count >= 3 && ids.count < 4000, "streamed \(ids.count)")
}

await run.test("computeBackends(): no GPU path in this build; .gpu is TahError.Gpu, or the CPU with gpuFallback") {
    let backends = computeBackends()
    try check(backends == ComputeBackends(gpuCompiled: false, gpuAdapter: nil), "\(backends)")
    try await expectError("Gpu", { if case TahError.Gpu(let reason) = $0 { return reason.contains("no GPU support") } else { return false } }) {
        _ = try TahModel.load(path: modelDir, options: ModelOptions(tokenizerPath: tokenizer, device: .gpu))
    }
    let m = try TahModel.load(
        path: modelDir, options: ModelOptions(tokenizerPath: tokenizer, device: .gpu, gpuFallback: true))
    let notice = m.deviceNotice()
    try check(m.deviceName() == "cpu" && (notice ?? "").hasPrefix("running on the CPU: GPU: "), "\(String(describing: notice))")
    let result = try await m.newSession().result(for: .user(tah.text), config: config(tah))
    try check(result.tokenIds == tah.tokens, "\(result.tokenIds)")
    try check(result.stats.device == "cpu" && result.stats.deviceNotice == notice, "\(result.stats)")
}

await run.test("leaving the stream early cancels the generation") {
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

await run.test("cancelling the consuming task cancels the generation") {
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

await run.test("cancelling a task awaiting result(for:) cancels the generation") {
    let session = model.newSession()
    let task = Task.detached { try await session.result(for: .user(tah.text), config: long) }
    try await Task.sleep(nanoseconds: 200_000_000)
    task.cancel()
    let result = try await task.value
    try check(result.stopReason == .cancelled, "stop reason \(result.stopReason)")
}

await run.test("cancel from another thread ends the generation with .cancelled") {
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

await run.test("generate on a busy session throws Busy") {
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

await run.test("a throwing listener fails the generation, not the session") {
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

await run.test("two sessions generate concurrently") {
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

await run.test("a missing model directory throws ModelLoad") {
    try await expectError("ModelLoad", {
        if case TahError.ModelLoad(let reason) = $0 { return reason.contains("does-not-exist") }
        return false
    }) {
        _ = try TahModel.load(path: modelDir + "/does-not-exist", options: ModelOptions())
    }
}

await run.test("bad settings throw InvalidArgument") {
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

await run.test("a prompt longer than the context fails with ContextOverflow") {
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

await run.test("a Rust panic becomes TahError.Internal, and the SDK keeps working") {
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

await run.test("releasing the handle mid-generation cancels it; the session goes on") {
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

await lifecycleTests(run, model: model, gguf: gguf, tah: tah)

run.finish()
