// The sample app's phone-life logic (ios/Sources/TahAppCore) on the real
// library and the default GGUF model: launch on the bundled model, the
// conversation saved after every answer and restored at launch, thermal
// state and threads, memory warnings, and stop then ask again. Called from
// main.swift.

import Foundation
import TahAppCore
import TahSDK

/// An app launched as the SwiftUI sample launches, with `gguf` as its bundled model.
@MainActor
func launchedApp(_ gguf: String, conversation: String? = nil, picked: String? = nil) async throws -> AppController {
    let app = AppController(chatConfig: greedyGenerationConfig(), threads: 2, conversationPath: conversation)
    await app.launch(lastPicked: picked, bundled: ModelFile(name: "arith-tah.gguf (bundled)", source: .path(path: gguf)))
    guard case .ready = app.models.state else { throw Failure(description: "not loaded: \(app.models.state)") }
    app.chat.settings = ChatSettings(maxNewTokens: 24)
    return app
}

func modelName(_ app: AppController) async -> String? {
    await MainActor.run { if case .ready(let m) = app.models.state { return m.name }; return nil }
}

@MainActor
func phoneLifeChecks(_ run: TestRun, gguf: String) async {
    let dir = NSTemporaryDirectory() + "tah-app-phone-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }

    await run.test("launch opens the bundled model; a picked model that still exists wins") {
        let bundled = try await launchedApp(gguf)
        try check(await modelName(bundled) == "arith-tah.gguf (bundled)", "\(bundled.models.state)")
        let answer = try finished(try await ask(bundled.chat, "What is 347 + 589?")).0
        let expected = try await TahModel.load(path: gguf, options: ModelOptions()).newSession()
            .result(for: .user("What is 347 + 589?"), config: ChatSettings(maxNewTokens: 24).apply(to: greedyGenerationConfig()))
        try check(answer.tokenIds == expected.tokenIds, "\(answer.tokenIds) != \(expected.tokenIds)")
        let picked = try await launchedApp(gguf, picked: gguf)
        try check(await modelName(picked) == "arith-tah.gguf", "\(picked.models.state)")
        let gone = try await launchedApp(gguf, picked: dir + "/gone.gguf")
        try check(await modelName(gone) == "arith-tah.gguf (bundled)", "\(gone.models.state)")
    }

    await run.test("the conversation is saved after every answer and restored, with its cache, at the next launch") {
        let conversation = dir + "/conversation.tahstate"
        let saved = dir + "/saved.tahstate"
        let first = try await launchedApp(gguf, conversation: conversation)
        _ = try await ask(first.chat, "What is 347 + 589?")
        _ = try await ask(first.chat, "And 12 + 30?")
        try check(FileManager.default.fileExists(atPath: conversation), "not saved")
        try FileManager.default.copyItem(atPath: conversation, toPath: saved)
        let entries = first.chat.entries
        let expected = try finished(try await ask(first.chat, "And 5 + 5?")).0
        try FileManager.default.removeItem(atPath: conversation)
        try FileManager.default.copyItem(atPath: saved, toPath: conversation)

        let second = try await launchedApp(gguf, conversation: conversation)
        let restored = second.chat.entries
        try check(restored.map(\.text) == entries.map(\.text) && restored.map(\.role) == entries.map(\.role),
            "restored \(restored.map(\.text))")
        try check(restored.map(\.status) == [.sent, .restored, .sent, .restored], "\(restored.map(\.status))")
        let (next, report) = try finished(try await ask(second.chat, "And 5 + 5?"))
        try check(next.tokenIds == expected.tokenIds, "\(next.tokenIds) != \(expected.tokenIds)")
        try check(report.reusedPrefixTokens > 0, "the restored cache was not used: \(report)")
        second.chat.newConversation()
        try await waitFor("the saved conversation's deletion") { !FileManager.default.fileExists(atPath: conversation) }
    }

    await run.test("a damaged conversation file: an empty chat with a notice; the next answer saves a good one") {
        let conversation = dir + "/damaged.tahstate"
        try check(FileManager.default.createFile(atPath: conversation, contents: Data("TAHSTATE garbage".utf8)),
            "cannot write \(conversation)")
        let app = try await launchedApp(gguf, conversation: conversation)
        try check(app.chat.entries.isEmpty && (app.chat.notice ?? "").contains("could not be restored"),
            "\(String(describing: app.chat.notice))")
        _ = try await ask(app.chat, "What is 347 + 589?")
        let restored = try TahSession.restore(model: app.models.model!, path: conversation)
        let history = try restored.history()
        try check(history.count == 2, "\(history)")
    }

    await run.test("a serious thermal state halves the threads, a critical one leaves one; the report shows them") {
        try check(threadsFor(.fair, preferred: 8) == 8 && threadsFor(.serious, preferred: 8) == 4, "policy")
        try check(threadsFor(.serious, preferred: 1) == 1 && threadsFor(.critical, preferred: 8) == 1, "policy")
        try check(ThermalState(rawValue: 2) == .serious, "ProcessInfo.ThermalState's raw values")
        let app = try await launchedApp(gguf)
        try check(app.phone.threads == 2, "\(app.phone)")
        app.onThermalState(.serious)
        try check(app.phone.threads == 1 && app.models.model!.threads() == 1, "\(app.phone)")
        try check(try finished(try await ask(app.chat, "What is 347 + 589?")).1.threads == 1, "ran on other threads")
        app.onThermalState(.nominal)
        try check(app.phone.threads == 2, "\(app.phone)")
        try check(try finished(try await ask(app.chat, "And 12 + 30?")).1.threads == 2, "ran on other threads")
    }

    await run.test("memory warnings trim the SDK, the report reaches the panel, answers stay the same") {
        let twin = try await launchedApp(gguf)
        _ = try await ask(twin.chat, "What is 347 + 589?")
        let expected = try finished(try await ask(twin.chat, "And 12 + 30?")).0.tokenIds
        let app = try await launchedApp(gguf)
        _ = try await ask(app.chat, "What is 347 + 589?")
        await app.trimMemory(.moderate)
        try check(app.phone.lastTrim?.level == .moderate && (app.phone.lastTrim?.report.weightBytes ?? 0) > 0,
            "\(String(describing: app.phone.lastTrim))")
        try check(try finished(try await ask(app.chat, "And 12 + 30?")).0.tokenIds == expected, "tokens changed by the trim")
        await app.trimMemory(.critical)
        try check(app.phone.lastTrim?.level == .critical && (app.phone.lastTrim?.report.kvCacheBytes ?? 0) > 0,
            "\(String(describing: app.phone.lastTrim))")
        _ = try finished(try await ask(app.chat, "And 5 + 5?"))
    }

    await run.test("stop, then ask again at once, 10 times: every answer finishes") {
        let app = try await launchedApp(gguf)
        let chat = app.chat
        for round in 0..<10 {
            // The default model's context is 512 tokens: a new conversation every 3 rounds.
            if round % 3 == 0 { chat.newConversation() }
            chat.settings = ChatSettings(maxNewTokens: 4000)
            try check(chat.send("Count from 1 to 1000, round \(round)."), "send refused")
            try await waitFor("three tokens") { chat.entries.last!.text.count >= 3 || !chat.generating }
            chat.stop()
            try await waitFor("the stop") { !chat.generating }
            chat.settings = ChatSettings(maxNewTokens: 24)
            let (next, _) = try finished(try await ask(chat, "What is \(round) + \(round)?"))
            try check(next.stopReason != .cancelled, "round \(round): \(next.stopReason)")
        }
        try check(chat.entries.filter { $0.role == .user }.count == 2, "entries")
    }
}
