import Foundation
import SwiftUI
import TahAppCore
import TahSDK
import UniformTypeIdentifiers

struct BenchmarkView: View {
    let app: AppController
    @State private var exporting = false

    var body: some View {
        @Bindable var bench = app.benchmark
        VStack(alignment: .leading, spacing: 8) {
            Text("\(bench.plan.prompts.count) prompts × \(bench.plan.modes.count) modes, greedy, "
                + "\(bench.plan.maxNewTokens) new tokens, thinking \(bench.plan.thinking ? "on" : "off")")
                .font(.caption)
            HStack {
                ForEach([IterationMode.decider, .never, .always], id: \.self) { mode in
                    Toggle("\(mode)", isOn: Binding(
                        get: { bench.plan.modes.contains(mode) },
                        set: { on in
                            bench.plan.modes.removeAll { $0 == mode }
                            if on { bench.plan.modes.append(mode) }
                        }))
                    .toggleStyle(.button)
                }
            }
            .disabled(bench.running)
            HStack {
                if bench.running {
                    Button("Stop") { bench.cancel() }
                } else {
                    Button("Run") { app.startBenchmark() }.disabled(bench.plan.modes.isEmpty)
                }
                Button("Export CSV") { exporting = true }.disabled(bench.rows.isEmpty || bench.running)
            }
            if bench.running { ProgressView(value: bench.progress) }
            if let message = bench.message { Text(message).font(.caption) }
            List(Array(bench.rows.enumerated()), id: \.offset) { item in
                Text(summary(item.element)).font(.caption.monospacedDigit())
            }
        }
        .padding(8)
        .fileExporter(
            isPresented: $exporting, document: CsvDocument(text: bench.csv(device: hardwareModel())),
            contentType: .commaSeparatedText, defaultFilename: "tah-benchmark.csv"
        ) { _ in }
    }

    private func summary(_ row: BenchmarkRow) -> String {
        let r = row.report
        return String(format: "%@ · %@ · TTFT %.0f ms · prefill %.1f · decode %.1f tok/s · %.2f passes · %.1f%% hard",
            row.prompt.id, "\(row.mode)", r.timeToFirstTokenMs, r.prefillTokensPerSecond,
            r.decodeTokensPerSecond, r.passesPerToken, r.hardTokenPercent)
    }
}

/// The hardware model, e.g. "iPhone16,1" (UIDevice only says "iPhone").
func hardwareModel() -> String {
    var info = utsname()
    uname(&info)
    return withUnsafeBytes(of: &info.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

/// The benchmark CSV for the system's file exporter.
struct CsvDocument: FileDocument {
    static let readableContentTypes = [UTType.commaSeparatedText]
    let text: String

    init(text: String) { self.text = text }

    init(configuration: ReadConfiguration) throws {
        text = String(decoding: configuration.file.regularFileContents ?? Data(), as: UTF8.self)
    }

    func fileWrapper(configuration: WriteConfiguration) throws -> FileWrapper {
        FileWrapper(regularFileWithContents: Data(text.utf8))
    }
}
