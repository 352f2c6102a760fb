import Foundation

/// The process's memory at one moment.
public struct MemorySample: Equatable, Sendable {
    /// iOS: the physical footprint (what Xcode's memory gauge shows and the
    /// system's memory limit applies to). Linux: the resident set size.
    /// Mapped model pages count in both.
    public let residentBytes: Int64
    /// The highest resident set size so far, when known (Linux `VmHWM`).
    public let peakResidentBytes: Int64?

    public init(residentBytes: Int64, peakResidentBytes: Int64?) {
        self.residentBytes = residentBytes
        self.peakResidentBytes = peakResidentBytes
    }
}

/// Reads the process's memory.
public enum ProcessMemory {
    /// The current figures, or nil where they cannot be read.
    public static func sample() -> MemorySample? {
        #if canImport(Darwin)
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(
            MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
        let status = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        guard status == KERN_SUCCESS else { return nil }
        return MemorySample(residentBytes: Int64(info.phys_footprint), peakResidentBytes: nil)
        #else
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else {
            return nil
        }
        return parseProcStatus(status)
        #endif
    }

    /// Parses the `VmRSS` and `VmHWM` lines (in kB) of a `/proc/<pid>/status` text.
    public static func parseProcStatus(_ status: String) -> MemorySample? {
        func bytes(_ key: String) -> Int64? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") })
            else { return nil }
            let value = line.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces)
            guard value.hasSuffix("kB"), let kib = Int64(value.dropLast(2).trimmingCharacters(in: .whitespaces))
            else { return nil }
            return kib * 1024
        }
        guard let resident = bytes("VmRSS") else { return nil }
        return MemorySample(residentBytes: resident, peakResidentBytes: bytes("VmHWM"))
    }
}
