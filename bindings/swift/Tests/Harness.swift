// What the end-to-end suites share (bindings/swift/Tests/main.swift,
// ios/Tests/TahAppCoreChecks/main.swift): a minimal runner, assertions and the
// fixture's greedy cases. Not a mock of anything: the suites drive the real
// library.

import Foundation
import TahSDK

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

/// Reads the cases file written by scripts/test-bindings.sh (name|mode|tokens|hex text|hex prompt).
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

/// Runs named tests, counting passes and failures; `finish()` prints "N passed, N failed" and exits.
final class TestRun {
    private var passed = 0
    private var failed = 0

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

    func finish() -> Never {
        print("\(passed) passed, \(failed) failed")
        exit(failed == 0 ? 0 : 1)
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
