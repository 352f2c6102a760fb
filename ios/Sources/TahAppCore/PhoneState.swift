import TahSDK

/// How hot the phone is: `ProcessInfo.ThermalState`'s cases and raw values
/// (`ThermalState(rawValue: ProcessInfo.processInfo.thermalState.rawValue)`).
public enum ThermalState: Int, Sendable {
    case nominal, fair, serious, critical
}

/// The compute threads to use in a thermal state: all `preferred` threads
/// while the phone is cool, half of them when it is serious, one when
/// critical (less heat, and a steadier speed than a throttled core gives).
public func threadsFor(_ thermal: ThermalState, preferred: Int) -> Int {
    switch thermal {
    case .nominal, .fair: return max(1, preferred)
    case .serious: return max(1, preferred / 2)
    case .critical: return 1
    }
}

/// What the latency panel shows about the phone.
public struct PhoneState: Sendable {
    public var thermal = ThermalState.nominal
    /// Compute threads the next answer runs on (nil: no model yet).
    public var threads: Int?
    /// The last memory trim and what it gave back.
    public var lastTrim: (level: TrimLevel, report: TrimReport)?

    public init() {}
}

/// A model the app can open: a name to show and where its bytes are (the
/// app bundle's default model, or a file the user picked).
public struct ModelFile: Sendable {
    public let name: String
    public let source: ModelSource

    public init(name: String, source: ModelSource) {
        self.name = name
        self.source = source
    }

    /// The file at `path`, named after it.
    public static func path(_ path: String) -> ModelFile {
        ModelFile(name: String(path.split(separator: "/").last ?? Substring(path)), source: .path(path: path))
    }
}
