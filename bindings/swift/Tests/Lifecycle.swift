// The phone-life parts of the Swift bindings, end to end on the real
// library: stop and ask again at once, models opened through a file
// descriptor, saved sessions, memory trims and thread changes. Called from
// main.swift.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TahSDK

func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }
func assistant(_ text: String) -> ChatMessage { ChatMessage(role: .assistant, content: text) }

func fresh(_ model: TahModel, _ prompt: Prompt, _ config: GenerationConfig) async throws -> GenerationResult {
    try await model.newSession().result(for: prompt, config: config)
}

func isInvalidArgument(_ e: Error) -> Bool { if case TahError.InvalidArgument = e { return true }; return false }
func isModelLoad(_ e: Error) -> Bool { if case TahError.ModelLoad = e { return true }; return false }
func isSessionState(_ e: Error) -> Bool { if case TahError.SessionState = e { return true }; return false }

func lifecycleTests(_ run: TestRun, model: TahModel, gguf: String, tah: Case) async {
    let dir = NSTemporaryDirectory() + "tah-swift-lifecycle-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var short = greedyGenerationConfig()
    short.maxNewTokens = 8
    var long = greedyGenerationConfig()
    long.maxNewTokens = 4000
    // Additions the default model answers in several lines.
    let questions = ["What is 347 + 589?", "What is 128 + 256?", "What is 905 + 77?", "What is 4321 + 1234?"]

    await run.test("stop and ask at once: break out of `for try await`, then result(for:), 20 rounds, never Busy") {
        let model = try TahModel.load(path: gguf, options: ModelOptions())
        let session = model.newSession()
        for round in 0..<20 {
            let question = user(questions[round % questions.count])
            var streamed = ""
            var count = 0
            for try await event in session.generate(.chat(messages: [question]), config: long) {
                streamed += event.text
                count += 1
                if count == 3 { break }
            }
            try check(count == 3, "round \(round): \(count) tokens")
            // The next question, right away, after what was streamed.
            let conversation = [question, assistant(streamed), user(questions[(round + 1) % questions.count])]
            let next = try await session.result(for: .chat(messages: conversation), config: short)
            let expected = try await fresh(model, .chat(messages: conversation), short)
            try check(next.tokenIds == expected.tokenIds, "round \(round): \(next.tokenIds) != fresh \(expected.tokenIds)")
            try check(next.stats.reusedPrefixTokens > 0, "round \(round): the cache was not reused")
        }
    }

    let modelData = FileManager.default.contents(atPath: gguf)!
    let packed = dir + "/packed.bin"
    precondition(FileManager.default.createFile(
        atPath: packed, contents: Data(repeating: 0x5A, count: 4096) + modelData + Data(count: 1000)),
        "cannot write \(packed)")
    let size = UInt64(modelData.count)
    func loadFd(_ fd: Int32, _ offset: UInt64, _ length: UInt64) throws -> TahModel {
        try TahModel.loadFrom(source: .fd(fd: fd, offset: offset, length: length), options: ModelOptions())
    }

    await run.test("a model inside a larger file opens through its descriptor and answers like its own file") {
        let fd = open(packed, O_RDONLY)
        try check(fd >= 0, "open failed")
        let viaFd: TahModel
        do {
            defer { close(fd) }  // the SDK keeps its own duplicate
            viaFd = try loadFd(fd, 4096, size)
        }
        let viaPath = try TahModel.load(path: gguf, options: ModelOptions())
        var config = short
        config.maxNewTokens = 24
        let a = try await fresh(viaFd, .user("What is 347 + 589?"), config)
        let b = try await fresh(viaPath, .user("What is 347 + 589?"), config)
        try check(!a.tokenIds.isEmpty && a.tokenIds == b.tokenIds, "\(a.tokenIds) != \(b.tokenIds)")
    }

    await run.test("wrong descriptors, offsets and lengths are typed errors") {
        let fd = open(packed, O_RDONLY)
        try check(fd >= 0, "open failed")
        try await expectError("InvalidArgument", isInvalidArgument) { _ = try loadFd(-1, 0, size) }
        try await expectError("InvalidArgument", isInvalidArgument) { _ = try loadFd(fd, 4096, size + 1001) }
        try await expectError("InvalidArgument", isInvalidArgument) { _ = try loadFd(fd, 4096, 0) }
        try await expectError("ModelLoad", isModelLoad) { _ = try loadFd(fd, 4100, size) }
        try await expectError("ModelLoad", isModelLoad) { _ = try loadFd(fd, 0, size) }
        try await expectError("ModelLoad", isModelLoad) { _ = try loadFd(fd, 4096, size / 2) }
        close(fd)
        try await expectError("InvalidArgument", isInvalidArgument) { _ = try loadFd(fd, 4096, size) }
    }

    await run.test("saveState + TahSession.restore continue exactly like the uninterrupted session (greedy and seeded)") {
        var greedy = short
        greedy.maxNewTokens = 12
        greedy.mode = tah.mode
        var seeded = defaultGenerationConfig()
        seeded.seed = 7
        seeded.maxNewTokens = 12
        seeded.mode = tah.mode
        for config in [greedy, seeded] {
            let original = model.newSession()
            var conversation = [user(tah.text)]
            let first = try await original.result(for: .chat(messages: conversation), config: config)
            let path = dir + "/chat.tahstate"
            let bytes = try original.saveState(path: path)
            let onDisk = try FileManager.default.attributesOfItem(atPath: path)[.size] as! NSNumber
            try check(bytes == onDisk.uint64Value, "size \(bytes)")
            conversation.append(assistant(first.text))
            let history = try original.history()
            try check(history == conversation, "history \(history)")
            conversation.append(user("And 12 + 30?"))
            let uninterrupted = try await original.result(for: .chat(messages: conversation), config: config)
            let restored = try TahSession.restore(model: model, path: path)
            let restoredHistory = try restored.history()
            try check(restoredHistory == Array(conversation.dropLast()), "restored history \(restoredHistory)")
            let continued = try await restored.result(for: .chat(messages: conversation), config: config)
            try check(continued.tokenIds == uninterrupted.tokenIds, "\(continued.tokenIds) != \(uninterrupted.tokenIds)")
            let reused = continued.stats.reusedPrefixTokens
            try check(reused > 0 && reused == uninterrupted.stats.reusedPrefixTokens, "reused \(reused)")
        }
    }

    await run.test("damaged, future-version and foreign-model state files throw SessionState; the sessions go on") {
        let session = model.newSession()
        _ = try await session.result(for: .user(tah.text), config: short)
        let good = dir + "/good.tahstate"
        _ = try session.saveState(path: good)
        let bytes = [UInt8](FileManager.default.contents(atPath: good)!)
        var flipped = bytes
        flipped[bytes.count / 2] ^= 1
        var future = bytes
        future[8] = 2
        let variants: [(String, [UInt8])] = [
            ("truncated", Array(bytes[..<(bytes.count / 2)])), ("a flipped byte", flipped),
            ("a future version", future), ("empty", []), ("not a state", Array("hello".utf8)),
        ]
        let damaged = dir + "/damaged.tahstate"
        for (name, content) in variants {
            try check(FileManager.default.createFile(atPath: damaged, contents: Data(content)), "cannot write \(damaged)")
            try await expectError("SessionState (\(name))", isSessionState) {
                _ = try TahSession.restore(model: model, path: damaged)
            }
        }
        try await expectError("SessionState (missing)", isSessionState) {
            _ = try TahSession.restore(model: model, path: dir + "/missing")
        }
        let other = try TahModel.load(path: gguf, options: ModelOptions())
        try await expectError("SessionState (another model)", isSessionState) {
            _ = try TahSession.restore(model: other, path: good)
        }
        try await expectError("SessionState (no directory)", isSessionState) {
            _ = try session.saveState(path: dir + "/no/such/dir")
        }
        // The session, and the good file, still work.
        let expected = try await TahSession.restore(model: model, path: good).result(for: .user("What is 9 + 9?"), config: short)
        let next = try await session.result(for: .user("What is 9 + 9?"), config: short)
        try check(next.tokenIds == expected.tokenIds, "the session changed")
    }

    await run.test("trimMemory: .moderate changes no token, .critical frees idle sessions' KV; both report bytes") {
        let m = try TahModel.load(path: gguf, options: ModelOptions())
        let (a, b) = (m.newSession(), m.newSession())
        let first = try await a.result(for: .user("What is 347 + 589?"), config: short)
        _ = try await b.result(for: .user("What is 347 + 589?"), config: short)
        let follow = Prompt.chat(messages: [user("What is 347 + 589?"), assistant(first.text), user("And 12 + 30?")])
        let moderate = try m.trimMemory(level: .moderate)
        try check(moderate.weightBytes > 0 && moderate.totalBytes == moderate.weightBytes + moderate.heapBytes, "\(moderate)")
        let x = try await a.result(for: follow, config: short)
        let y = try await b.result(for: follow, config: short)
        try check(x.tokenIds == y.tokenIds, "tokens changed by the trim")
        let critical = try m.trimMemory(level: .critical)
        try check(critical.kvCacheBytes > 0 && (try a.cachedTokens()) == 0, "\(critical)")
        let again = try await a.result(for: follow, config: short)
        let expected = try await fresh(m, follow, short)
        try check(again.tokenIds == expected.tokenIds, "after the critical trim")
    }

    await run.test("setThreads: the next generation runs on the new number of threads, with the same tokens") {
        let m = try TahModel.load(path: gguf, options: ModelOptions(threads: 2))
        let baseline = try await fresh(m, .user("What is 347 + 589?"), short)
        try check(baseline.stats.threads == 2 && m.threads() == 2, "threads \(baseline.stats.threads)")
        for threads: UInt32 in [1, 2] {
            try m.setThreads(threads: threads)
            let result = try await fresh(m, .user("What is 347 + 589?"), short)
            try check(m.threads() == threads && result.stats.threads == threads, "threads \(result.stats.threads)")
            try check(result.tokenIds == baseline.tokenIds, "tokens changed with the threads")
        }
        try await expectError("InvalidArgument", isInvalidArgument) { try m.setThreads(threads: 0) }
    }
}
