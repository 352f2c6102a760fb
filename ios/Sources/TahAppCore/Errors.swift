import TahSDK

/// A one-line message for the user.
public func describe(_ error: Error) -> String {
    guard let error = error as? TahError else { return "\(error)" }
    switch error {
    case .ModelLoad(let reason): return "The model could not be loaded: \(reason)"
    case .InvalidArgument(let reason): return "Invalid setting: \(reason)"
    case .ContextOverflow(let reason):
        return "The conversation no longer fits in the context; start a new one (\(reason))"
    case .Busy(let reason): return "Busy: \(reason)"
    case .Cancelled(let reason): return "Cancelled: \(reason)"
    case .Gpu(let reason): return "GPU: \(reason)"
    case .SessionState(let reason): return "Saved conversation: \(reason)"
    case .Internal(let reason): return "Internal error: \(reason)"
    }
}
