import SwiftUI
import TahAppCore
import TahSDK
import UniformTypeIdentifiers

struct ContentView: View {
    let app: AppController
    @State private var picking = false
    @State private var importing: String?
    @State private var importError: String?
    /// The settings' switch: switching reloads the model on the other device.
    @State private var device = Device.cpu

    var body: some View {
        VStack(spacing: 0) {
            HStack {
                Text(status).font(.caption).lineLimit(2)
                Spacer()
                Picker("Device", selection: $device) {
                    Text("CPU").tag(Device.cpu)
                    Text("GPU").tag(Device.gpu)
                }
                .pickerStyle(.segmented)
                .fixedSize()
                .disabled(importing != nil || isLoading)
                .onChange(of: device) { Task { await app.switchDevice(device) } }
                Button("Open model") { picking = true }
                    .disabled(importing != nil || isLoading)
            }
            .padding(8)
            TabView {
                ChatView(chat: app.chat, phone: app.phone)
                    .tabItem { Label("Chat", systemImage: "bubble.left.and.bubble.right") }
                BenchmarkView(app: app)
                    .tabItem { Label("Benchmark", systemImage: "speedometer") }
            }
        }
        .fileImporter(isPresented: $picking, allowedContentTypes: [ModelImport.ggufType]) { result in
            switch result {
            case .success(let url): importModel(url)
            case .failure(let error): importError = error.localizedDescription
            }
        }
    }

    private var isLoading: Bool {
        if case .loading = app.models.state { return true }
        return false
    }

    private var status: String {
        if let importing { return "Copying \(importing)…" }
        if let importError { return importError }
        switch app.models.state {
        case .empty: return "No model: open a .gguf file"
        case .loading(let name): return "Loading \(name)…"
        case .ready(let m):
            return "\(m.name) · \(m.contextLength) ctx · "
                + "load \(Int(m.loadWallMs)) ms · \(m.deviceName)"
                + (m.deviceNotice.map { " (\($0))" } ?? "")
        case .failed(_, let message): return message
        }
    }

    private func importModel(_ url: URL) {
        importing = url.lastPathComponent
        importError = nil
        Task {
            do {
                let path = try await ModelImport.copyIntoApp(url)
                importing = nil
                UserDefaults.standard.set(path, forKey: TahSampleApp.lastModelKey)
                await app.loadModel(path: path)
            } catch {
                importing = nil
                importError = "Could not copy \(url.lastPathComponent): \(error.localizedDescription)"
            }
        }
    }
}
