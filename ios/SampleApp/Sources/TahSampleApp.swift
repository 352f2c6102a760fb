import SwiftUI
import TahAppCore

@main
struct TahSampleApp: App {
    @State private var app = AppController()
    @Environment(\.scenePhase) private var scenePhase

    var body: some Scene {
        WindowGroup {
            ContentView(app: app)
        }
        .onChange(of: scenePhase) { _, phase in
            // iOS suspends background apps: stop the answer (kept with its
            // figures; the session's cache stays for the next message) and
            // the benchmark rather than be frozen mid-generation.
            if phase == .background { app.onBackground() }
        }
    }
}
