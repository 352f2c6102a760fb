import SwiftUI
import TahAppCore

/// The last answer's figures and the phone's state (heat, threads, the last memory trim).
struct LatencyPanel: View {
    let report: LatencyReport?
    let phone: PhoneState

    var body: some View {
        VStack(alignment: .leading, spacing: 2) {
            ForEach(lines, id: \.self) { Text($0) }
        }
        .font(.caption.monospacedDigit())
        .padding(6)
        .background(Color.gray.opacity(0.08))
        .clipShape(RoundedRectangle(cornerRadius: 6))
    }

    private var lines: [String] {
        var phoneLines = ["thermal \(phone.thermal) · " + (phone.threads.map { "\($0) threads" } ?? "–")]
        if let trim = phone.lastTrim {
            let r = trim.report
            phoneLines.append(
                "trim (\(trim.level)): \(mib(Int64(r.totalBytes))) given back (weights \(mib(Int64(r.weightBytes))), "
                    + "heap \(mib(Int64(r.heapBytes))), KV \(mib(Int64(r.kvCacheBytes))))")
        }
        guard let r = report else { return phoneLines }
        let cached = r.reusedPrefixTokens > 0 ? " (+\(r.reusedPrefixTokens) cached)" : ""
        return [
            "device \(r.device)" + (r.deviceNotice.map { " (\($0))" } ?? ""),
            "load \(ms(r.loadMs)) · TTFT \(ms(r.timeToFirstTokenMs)) (app \(r.firstTokenWallMs.map(ms) ?? "–"))",
            String(format: "prefill %ld tok @ %.1f tok/s", r.prefillTokens, r.prefillTokensPerSecond) + cached
                + String(format: " · decode %ld tok @ %.1f tok/s", r.decodeTokens, r.decodeTokensPerSecond),
            String(format: "%.2f passes/token · %.1f%% hard · %ld hard answer tokens",
                r.passesPerToken, r.hardTokenPercent, r.generatedHardTokens),
            "memory \(r.memory.map { mib($0.residentBytes) } ?? "–") · KV \(mib(r.peakKvBytes)) · \(r.threads) threads",
        ] + phoneLines
    }

    private func ms(_ value: Double) -> String { String(format: "%.0f ms", value) }
    private func mib(_ bytes: Int64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
}
