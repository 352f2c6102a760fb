import Foundation
import UniformTypeIdentifiers

/// Brings a picked `.gguf` into the app's own storage: the engine maps the
/// file from a path, which a security-scoped URL of the file picker does not
/// stay valid for.
enum ModelImport {
    static let ggufType = UTType(filenameExtension: "gguf", conformingTo: .data) ?? .data

    /// Copies `url` to Application Support/models (a file of the same name
    /// and size is reused) and returns the copy's path.
    static func copyIntoApp(_ url: URL) async throws -> String {
        try await Task.detached(priority: .userInitiated) {
            let accessing = url.startAccessingSecurityScopedResource()
            defer { if accessing { url.stopAccessingSecurityScopedResource() } }
            let files = FileManager.default
            let folder = try files.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
                .appendingPathComponent("models", isDirectory: true)
            try files.createDirectory(at: folder, withIntermediateDirectories: true)
            let target = folder.appendingPathComponent(url.lastPathComponent)
            let size = { (u: URL) in try? u.resourceValues(forKeys: [.fileSizeKey]).fileSize }
            if files.fileExists(atPath: target.path), size(target) == size(url) { return target.path }
            let partial = target.appendingPathExtension("partial")
            try? files.removeItem(at: partial)
            try files.copyItem(at: url, to: partial)
            try? files.removeItem(at: target)
            try files.moveItem(at: partial, to: target)
            return target.path
        }.value
    }
}
