import SwiftUI
import TahAppCore
import TahSDK
import UIKit

@main
struct TahSampleApp: App {
    /// Where the last model picked with "Open model" is remembered.
    static let lastModelKey = "lastModel"

    @State private var app = AppController(conversationPath: TahSampleApp.conversationPath)
    @Environment(\.scenePhase) private var scenePhase

    var body: some Scene {
        WindowGroup {
            ContentView(app: app)
                .task {
                    // The last model picked if it is still there, else the one in the app bundle
                    // (project.yml: models/arith-tah.gguf as a resource): a first launch works offline.
                    app.onThermalState(Self.thermalState)
                    await app.launch(
                        lastPicked: UserDefaults.standard.string(forKey: Self.lastModelKey),
                        bundled: ModelFile(name: "arith-tah.gguf (bundled)", source: .path(path: Self.bundledModel)))
                }
                .onReceive(NotificationCenter.default.publisher(for: ProcessInfo.thermalStateDidChangeNotification)) { _ in
                    app.onThermalState(Self.thermalState)
                }
                .onReceive(NotificationCenter.default.publisher(for: UIApplication.didReceiveMemoryWarningNotification)) { _ in
                    // iOS kills apps that do not give memory back (jetsam).
                    Task { await app.trimMemory(.critical) }
                }
        }
        .onChange(of: scenePhase) { _, phase in
            // iOS suspends background apps: stop the answer (kept with its
            // figures; the session's cache stays for the next message) and
            // the benchmark rather than be frozen mid-generation.
            if phase == .background { app.onBackground() }
        }
    }

    private static var thermalState: ThermalState {
        ThermalState(rawValue: ProcessInfo.processInfo.thermalState.rawValue) ?? .nominal
    }

    /// The default model, a resource of the app bundle, mapped in place.
    private static var bundledModel: String {
        Bundle.main.path(forResource: "arith-tah", ofType: "gguf") ?? "arith-tah.gguf"
    }

    /// Application Support/conversation.tahstate: the conversation, saved after every answer.
    private static var conversationPath: String? {
        let folder = try? FileManager.default.url(
            for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        return folder?.appendingPathComponent("conversation.tahstate").path
    }
}
