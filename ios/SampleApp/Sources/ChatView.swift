import SwiftUI
import TahAppCore
import TahSDK

struct ChatView: View {
    @Bindable var chat: ChatController
    /// Thermal state, threads and the last memory trim, for the latency panel.
    let phone: PhoneState
    @State private var text = ""

    var body: some View {
        VStack(alignment: .leading, spacing: 6) {
            SettingsPanel(settings: $chat.settings).disabled(chat.generating)
            LatencyPanel(report: chat.lastReport, phone: phone)
            if let notice = chat.notice { Text(notice).font(.caption2).foregroundStyle(.secondary) }
            ScrollViewReader { scroll in
                ScrollView {
                    LazyVStack(alignment: .leading, spacing: 8) {
                        ForEach(chat.entries) { MessageView(entry: $0).id($0.id) }
                    }
                }
                .onChange(of: chat.entries.last?.text) {
                    if let last = chat.entries.last { scroll.scrollTo(last.id, anchor: .bottom) }
                }
            }
            HStack {
                TextField("Ask a math question", text: $text, axis: .vertical).textFieldStyle(.roundedBorder)
                if chat.generating {
                    Button("Stop") { chat.stop() }
                } else {
                    Button("Send") { if chat.send(text) { text = "" } }
                        .disabled(text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
                    Button("New") { chat.newConversation() }
                }
            }
        }
        .padding(8)
    }
}

private struct SettingsPanel: View {
    @Binding var settings: ChatSettings

    var body: some View {
        VStack(alignment: .leading) {
            HStack {
                Toggle("Thinking", isOn: $settings.thinking).fixedSize()
                Picker("Mode", selection: $settings.mode) {
                    Text("decider").tag(IterationMode.decider)
                    Text("never").tag(IterationMode.never)
                    Text("always").tag(IterationMode.always)
                }
                .pickerStyle(.segmented)
            }
            if settings.mode == .decider {
                HStack {
                    Text(settings.threshold.map { String(format: "Threshold %.2f", $0) } ?? "Threshold: model's")
                        .font(.caption).frame(width: 120, alignment: .leading)
                    Slider(
                        value: Binding(get: { settings.threshold ?? 0.5 }, set: { settings.threshold = $0 }),
                        in: 0...1)
                    Button("Reset") { settings.threshold = nil }.disabled(settings.threshold == nil)
                }
            }
        }
    }
}

private struct MessageView: View {
    let entry: ChatEntry

    var body: some View {
        let user = entry.role == .user
        VStack(alignment: user ? .trailing : .leading, spacing: 2) {
            Text(user ? AttributedString(entry.text) : tinted(entry.spans))
                .padding(8)
                .background(user ? Color.blue.opacity(0.12) : Color.gray.opacity(0.12))
                .clipShape(RoundedRectangle(cornerRadius: 8))
            if let note { Text(note).font(.caption2).foregroundStyle(.secondary) }
        }
        .frame(maxWidth: .infinity, alignment: user ? .trailing : .leading)
    }

    private var note: String? {
        switch entry.status {
        case .sent: return nil
        case .streaming: return "…"
        case .finished(let result, let report):
            return "\(result.stopReason) · \(report.decodeTokens) tokens · \(report.generatedHardTokens) hard"
        case .failed(let message): return message
        case .interrupted: return "interrupted"
        case .restored: return "restored"
        }
    }
}

/// The background of a token that took `depth` passes: none for easy tokens, warmer the deeper.
func depthColor(_ depth: Int) -> Color {
    switch depth {
    case ...1: return .clear
    case 2: return Color(red: 1, green: 0.88, blue: 0.51)
    default: return Color(red: 1, green: 0.67, blue: 0.25)
    }
}

/// The spans as text, hard tokens tinted by their depth.
func tinted(_ spans: [TokenSpan]) -> AttributedString {
    spans.reduce(into: AttributedString()) { text, span in
        var piece = AttributedString(span.text)
        piece.backgroundColor = depthColor(span.depth)
        text += piece
    }
}
