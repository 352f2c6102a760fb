import Foundation

/// The benchmark's rows as CSV (RFC 4180), one line per measured run.
public enum BenchmarkCsv {
    public static let header = [
        "device", "compute", "model", "prompt_id", "prompt", "mode", "threshold", "thinking", "repetition", "stop_reason",
        "load_ms", "ttft_ms", "first_token_wall_ms", "total_wall_ms",
        "prefill_tokens", "prefill_tok_per_s", "decode_tokens", "decode_tok_per_s",
        "passes_per_token", "hard_token_pct", "generated_hard_tokens", "peak_kv_bytes", "rss_bytes", "peak_rss_bytes",
    ]

    /// `rows` measured with `model` (a file name) on `device` (e.g. the
    /// phone's model name); `compute` is where the engine ran (`cpu`, `gpu: ...`).
    public static func render(_ rows: [BenchmarkRow], device: String, model: String) -> String {
        var lines = [header.joined(separator: ",")]
        for row in rows {
            let r = row.report
            let threshold = row.threshold.map { number(Double($0)) } ?? ""
            let firstTokenWall = r.firstTokenWallMs.map(number) ?? ""
            let resident = r.memory.map { String($0.residentBytes) } ?? ""
            let peakResident = r.memory?.peakResidentBytes.map { String($0) } ?? ""
            let fields: [String] = [
                device, row.report.device, model, row.prompt.id, row.prompt.text, "\(row.mode)",
                threshold, String(row.thinking), String(row.repetition), snakeCase("\(r.stopReason)"),
                number(r.loadMs), number(r.timeToFirstTokenMs), firstTokenWall, number(r.totalWallMs),
                String(r.prefillTokens), number(r.prefillTokensPerSecond),
                String(r.decodeTokens), number(r.decodeTokensPerSecond),
                number(r.passesPerToken), number(r.hardTokenPercent), String(r.generatedHardTokens),
                String(r.peakKvBytes), resident, peakResident,
            ]
            lines.append(fields.map(field).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Quotes a field holding a comma, a quote or a line break; doubles its quotes.
    public static func field(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Three decimals with a decimal point, whatever the phone's locale.
    private static func number(_ value: Double) -> String {
        String(format: "%.3f", locale: Locale(identifier: "en_US_POSIX"), value)
    }

    /// `maxTokens` -> `max_tokens`, as the Kotlin app writes the stop reasons.
    private static func snakeCase(_ name: String) -> String {
        name.reduce(into: "") { out, c in
            if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
        }
    }
}
