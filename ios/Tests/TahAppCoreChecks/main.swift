// End-to-end tests of the sample app's shared logic (ios/Sources/TahAppCore):
// the real libtah_ffi.so, the tiny-d2-a fixture model and the real Qwen3
// tokenizer, driven through the same classes the iOS app uses. Built and run
// by scripts/test-bindings.sh as
//   TahAppCoreChecks <model dir> <tokenizer.json> <cases file> <a .gguf model>
// The last line printed is "N passed, N failed".

import Foundation
import TahAppCore
import TahSDK

/// Polls `condition` until it holds, letting the main actor run meanwhile.
@MainActor
func waitFor(_ what: String, timeout: Double = 60, _ condition: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        try check(Date() < deadline, "timed out waiting for \(what)")
        try await Task.sleep(nanoseconds: 5_000_000)
    }
}

/// An app as the SwiftUI sample builds it, with the fixture model loaded.
@MainActor
func makeApp() async throws -> AppController {
    let app = AppController(chatConfig: greedyGenerationConfig(), threads: 2)
    await app.loadModel(path: modelDir, tokenizerPath: tokenizer)
    guard case .ready = app.models.state else { throw Failure(description: "not loaded: \(app.models.state)") }
    return app
}

/// Sends `text` and waits for the answer to end.
@MainActor
func ask(_ chat: ChatController, _ text: String) async throws -> ChatEntry {
    try check(chat.send(text), "send refused")
    try await waitFor("the answer") { !chat.generating }
    return chat.entries.last!
}

func finished(_ entry: ChatEntry) throws -> (GenerationResult, LatencyReport) {
    guard case .finished(let result, let report) = entry.status else {
        throw Failure(description: "not finished: \(entry.status)")
    }
    return (result, report)
}

/// A strict RFC 4180 reader, to check what `BenchmarkCsv` writes.
func parseCsv(_ text: String) throws -> [[String]] {
    var lines = [[String]]()
    var fields = [String]()
    var field = ""
    var quoted = false
    var chars = Array(text)[...]
    while let c = chars.popFirst() {
        if quoted {
            if c == "\"" {
                if chars.first == "\"" { field.append("\""); chars.removeFirst() } else { quoted = false }
            } else {
                field.append(c)
            }
        } else if c == "\"" && field.isEmpty {
            quoted = true
        } else if c == "," {
            fields.append(field)
            field = ""
        } else if c == "\n" {
            fields.append(field)
            field = ""
            lines.append(fields)
            fields = []
        } else {
            field.append(c)
        }
    }
    try check(!quoted && field.isEmpty && fields.isEmpty, "unterminated CSV")
    return lines
}

let args = CommandLine.arguments
let (modelDir, tokenizer, gguf) = (args[1], args[2], args[4])
let tah = try readCases(args[3])["short_arith"]!
let run = TestRun()
let fixtureSettings = ChatSettings(thinking: true, mode: tah.mode, maxNewTokens: tah.tokens.count)

await run.test("loading: ready with the engine's figures; a bad path fails with the loader's reason") {
    let app = try await makeApp()
    guard case .ready(let loaded) = app.models.state else { throw Failure(description: "not ready") }
    try check(loaded.contextLength > 0 && loaded.loadWallMs > 0, "\(loaded)")
    try check(
        loaded.requestedDevice == .cpu && loaded.deviceName == "cpu" && loaded.deviceNotice == nil, "\(loaded)")
    await app.loadModel(path: modelDir + "/does-not-exist")
    guard case .failed(_, let message) = app.models.state, message.contains("does-not-exist") else {
        throw Failure(description: "\(app.models.state)")
    }
    try check(!app.chat.send("hello"), "sent without a model")
}

let t = try await makeApp()
let chat = t.chat
let model = t.models.model!

await run.test("chat streams the fixture's greedy answer, tinted with the engine's depths") {
    chat.settings = fixtureSettings
    let answer = try await ask(chat, tah.text)
    let (result, report) = try finished(answer)
    try check(result.tokenIds == tah.tokens, "tokens \(result.tokenIds) != \(tah.tokens)")
    try check(answer.text == result.text, "streamed text != result text")
    // The same generation straight through the facade: its events give the depth of every token.
    var events = [TokenEvent]()
    for try await update in model.newSession().updates(.user(tah.text), config: fixtureSettings.apply(to: greedyGenerationConfig())) {
        if case .token(let event) = update { events.append(event) }
    }
    var expected = ChatEntry(id: 0, role: .assistant, spans: [], status: .streaming)
    events.forEach { expected.append($0) }
    try check(answer.spans == expected.spans, "spans \(answer.spans) != \(expected.spans)")
    try check(expected.spans.contains { $0.depth == 2 } && expected.spans.contains { $0.depth == 1 },
        "the fixture mixes easy and hard tokens: \(expected.spans)")
    try check(report.generatedHardTokens == events.filter { $0.depth > 1 }.count, "hard \(report.generatedHardTokens)")
}

await run.test("the latency report holds the engine's stats and the app's own timings") {
    let (result, report) = try finished(chat.entries.last!)
    let stats = result.stats
    try check(report == chat.lastReport, "lastReport is not the answer's")
    try check(report.loadMs == stats.loadMs && report.loadMs > 0, "load \(report.loadMs)")
    try check(report.timeToFirstTokenMs == stats.timeToFirstTokenMs && report.timeToFirstTokenMs > 0, "ttft")
    try check(report.prefillTokens == Int(stats.prefillTokens) && report.prefillTokensPerSecond > 0, "prefill \(report)")
    try check(report.decodeTokens == tah.tokens.count && report.decodeTokensPerSecond > 0, "decode \(report)")
    try check(report.passesPerToken == stats.passesPerToken && report.passesPerToken > 1, "passes \(report.passesPerToken)")
    try check(report.hardTokenPercent == stats.hardTokenFraction * 100, "hard \(report.hardTokenPercent)")
    // The app's clock starts before the engine's and sees the token after it.
    let wall = report.firstTokenWallMs!
    try check(wall + 1 >= report.timeToFirstTokenMs && report.totalWallMs >= wall, "wall \(wall) / \(report.totalWallMs)")
    try check((report.memory?.residentBytes ?? 0) > 0 && report.peakKvBytes > 0, "memory \(String(describing: report.memory))")
    try check(report.stopReason == .maxTokens, "stop \(report.stopReason)")
}

await run.test("mode, threshold and thinking settings reach the engine") {
    @MainActor func answer(_ settings: ChatSettings) async throws -> ChatEntry {
        chat.newConversation()
        chat.settings = settings
        return try await ask(chat, tah.text)
    }
    let short = ChatSettings(maxNewTokens: 3)
    let cases: [(ChatSettings, Int)] = [
        (ChatSettings(mode: .always, maxNewTokens: 3), 2),
        (ChatSettings(mode: .never, maxNewTokens: 3), 1),
        (ChatSettings(mode: .decider, threshold: -1, maxNewTokens: 3), 2),
        (ChatSettings(mode: .decider, threshold: 1, maxNewTokens: 3), 1),
    ]
    for (settings, depth) in cases {
        let entry = try await answer(settings)
        let (_, report) = try finished(entry)
        try check(entry.spans.allSatisfy { $0.depth == depth }, "\(settings): spans \(entry.spans)")
        try check(report.passesPerToken == Double(depth) && report.hardTokenPercent == Double(depth - 1) * 100,
            "\(settings): \(report)")
    }
    var noThinking = short
    noThinking.thinking = false
    let thinking = try finished(try await answer(short)).1.prefillTokens
    let notThinking = try finished(try await answer(noThinking)).1.prefillTokens
    // Qwen3's non-thinking prompt appends an empty <think></think> block.
    try check(notThinking > thinking, "prefill \(notThinking) (no thinking) vs \(thinking)")
}

await run.test("stop() ends the answer as cancelled with its figures; the session is reused after it") {
    chat.newConversation()
    chat.settings = ChatSettings(maxNewTokens: 4000)
    try check(chat.send(tah.text), "send refused")
    try await waitFor("some text") { chat.entries.last!.text.count >= 3 }
    try check(!chat.send("a second question"), "sent while streaming")
    chat.stop()
    try await waitFor("the stop") { !chat.generating }
    let (stopped, stoppedReport) = try finished(chat.entries.last!)
    try check(stopped.stopReason == .cancelled && (1..<4000).contains(stoppedReport.decodeTokens), "\(stoppedReport)")
    // The next question reuses the cached conversation and answers like a fresh session would.
    chat.settings = ChatSettings(maxNewTokens: 8)
    let history = ChatController.conversation(chat.entries) + [ChatMessage(role: .user, content: "What is 2 + 2?")]
    let (next, nextReport) = try finished(try await ask(chat, "What is 2 + 2?"))
    try check(next.stopReason == .maxTokens, "stop \(next.stopReason)")
    try check(nextReport.reusedPrefixTokens > 0, "nothing reused: \(nextReport)")
    let fresh = try await model.newSession().result(
        for: .chat(messages: history), config: ChatSettings(maxNewTokens: 8).apply(to: greedyGenerationConfig()))
    try check(next.tokenIds == fresh.tokenIds, "after stop \(next.tokenIds) != fresh \(fresh.tokenIds)")
}

await run.test("replacing the model interrupts the answer; the conversation continues on the new model") {
    chat.settings = ChatSettings(maxNewTokens: 4000)
    let before = chat.entries.count
    try check(chat.send(tah.text), "send refused")
    try await waitFor("a token") { !chat.entries.last!.text.isEmpty }
    await t.loadModel(path: modelDir, tokenizerPath: tokenizer)
    try await waitFor("the interruption") { !chat.generating }
    try check(chat.entries.last!.status == .interrupted, "\(chat.entries.last!.status)")
    try check(t.models.model !== model, "the model was not replaced")
    chat.settings = ChatSettings(maxNewTokens: 4)
    let (next, nextReport) = try finished(try await ask(chat, "And 3 + 3?"))
    try check(chat.entries.count == before + 4, "entries \(chat.entries.count)")
    // A new session: the whole conversation is prefilled.
    try check(nextReport.reusedPrefixTokens == 0 && next.stopReason == .maxTokens, "\(nextReport)")
}

await run.test("device switch: the model reloads on the GPU (where the library or the phone has none, on the CPU with the reason), answers alike, and back") {
    let app = try await makeApp()
    await app.switchDevice(.gpu)
    guard case .ready(let gpu) = app.models.state else { throw Failure(description: "\(app.models.state)") }
    try check(app.device == .gpu && gpu.requestedDevice == .gpu, "\(gpu)")
    if gpu.backends.gpuCompiled && gpu.backends.gpuAdapter != nil {
        try check(gpu.deviceName.hasPrefix("gpu: ") && gpu.deviceNotice == nil, "\(gpu)")
    } else {
        try check(gpu.deviceName == "cpu" && (gpu.deviceNotice ?? "").contains("GPU"), "\(gpu)")
    }
    app.chat.settings = fixtureSettings
    let (result, report) = try finished(try await ask(app.chat, tah.text))
    try check(result.tokenIds == tah.tokens, "tokens \(result.tokenIds) != \(tah.tokens)")
    try check(report.device == gpu.deviceName && report.deviceNotice == gpu.deviceNotice, "\(report)")
    await app.switchDevice(.cpu)
    guard case .ready(let cpu) = app.models.state else { throw Failure(description: "\(app.models.state)") }
    try check(cpu.deviceName == "cpu" && cpu.deviceNotice == nil, "\(cpu)")
}

await run.test("the benchmark runs the prompt set; its CSV holds the measured rows") {
    let prompts = benchmarkPrompts.filter { $0.id == "muffins" || $0.id == "discount" }
    let plan = BenchmarkPlan(prompts: prompts, modes: [.decider, .always], maxNewTokens: 4, warmupRuns: 0)
    var seen = [BenchmarkRow]()
    let rows = try await BenchmarkRunner(model: model).run(plan) { seen.append($0) }
    try check(rows.count == 4 && seen == rows, "rows \(rows.count), seen \(seen.count)")
    try check(rows.map { "\($0.prompt.id)/\($0.mode)" } == plan.modes.flatMap { m in prompts.map { "\($0.id)/\(m)" } }, "order")
    for row in rows {
        try check(row.report.decodeTokens == 4 && row.report.stopReason == .maxTokens, "\(row.report)")
        try check(row.report.prefillTokens > 0 && row.report.reusedPrefixTokens == 0, "fresh session: \(row.report)")
        if row.mode == .always { try check(row.report.passesPerToken == 2, "always: \(row.report)") }
    }
    let csv = try parseCsv(BenchmarkCsv.render(rows, device: "Linux, \"test\"", model: "tiny-d2-a"))
    try check(csv.first == BenchmarkCsv.header && csv.count == 5, "csv \(csv.count) lines: \(csv.first ?? [])")
    for (row, line) in zip(rows, csv.dropFirst()) {
        let field = Dictionary(uniqueKeysWithValues: zip(BenchmarkCsv.header, line))
        try check(field["device"] == "Linux, \"test\"" && field["prompt"] == row.prompt.text, "text fields: \(line)")
        try check(field["compute"] == "cpu", "\(line)")
        try check(field["mode"] == "\(row.mode)" && field["stop_reason"] == "max_tokens", "\(line)")
        try check(field["decode_tokens"] == "4" && field["prefill_tokens"] == "\(row.report.prefillTokens)", "\(line)")
        try check(abs(Double(field["decode_tok_per_s"]!)! - row.report.decodeTokensPerSecond) < 0.001, "\(line)")
        try check(abs(Double(field["passes_per_token"]!)! - row.report.passesPerToken) < 0.001, "\(line)")
        try check((Int64(field["rss_bytes"]!) ?? 0) > 0, "\(line)")
    }
}

await run.test("the benchmark screen: progress, stop keeps the rows so far, a rerun completes") {
    let bench = t.benchmark
    bench.plan = BenchmarkPlan(modes: [.never], maxNewTokens: 24, warmupRuns: 0)
    try check(t.startBenchmark(), "start refused")
    try check(!bench.start(), "started twice")
    try await waitFor("a row") { !bench.rows.isEmpty }
    t.onBackground()
    try await waitFor("the stop") { !bench.running }
    try check(bench.message == "Stopped" && (1..<benchmarkPrompts.count).contains(bench.rows.count),
        "\(bench.rows.count) rows, \(String(describing: bench.message))")
    try check(try parseCsv(bench.csv(device: "Linux")).count == bench.rows.count + 1, "csv rows")
    bench.plan.prompts = Array(benchmarkPrompts.prefix(2))
    bench.plan.maxNewTokens = 4
    try check(bench.start(), "restart refused")
    try await waitFor("the rerun") { !bench.running }
    try check(bench.message == nil && bench.rows.count == 2 && bench.progress == 1,
        "\(bench.rows.count) rows, \(String(describing: bench.message))")
}

await run.test("ProcessMemory reads VmRSS and VmHWM") {
    let sample = ProcessMemory.parseProcStatus("Name:\tswift\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
    try check(sample == MemorySample(residentBytes: 1024 * 1024, peakResidentBytes: 2048 * 1024), "\(String(describing: sample))")
    try check(ProcessMemory.parseProcStatus("Name:\tswift\n") == nil, "no VmRSS")
    let live = ProcessMemory.sample()!
    try check(live.residentBytes > 0 && live.peakResidentBytes! >= live.residentBytes, "\(live)")
}

await phoneLifeChecks(run, gguf: gguf)

run.finish()
