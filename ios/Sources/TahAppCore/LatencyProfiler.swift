import Foundation
import TahSDK

/// One generation's latency figures: the engine's own measurements (its
/// `Stats`) and what the app measured around them.
public struct LatencyReport: Equatable, Sendable {
    /// Where the model ran: `cpu`, or `gpu: <adapter> (<backend>)`.
    public let device: String
    /// Why it ran on the CPU although the GPU was asked for (nil: it ran where asked).
    public let deviceNotice: String?
    /// How long the engine took to load the model.
    public let loadMs: Double
    /// Engine: from the start of the generation to its first token (template,
    /// tokenization, prefill).
    public let timeToFirstTokenMs: Double
    /// App: from the request to the first token delivered to the app (nil: no token came).
    public let firstTokenWallMs: Double?
    /// App: from the request to the result.
    public let totalWallMs: Double
    /// Prompt tokens run through the model (not counting a reused cached prefix).
    public let prefillTokens: Int
    /// Prompt tokens whose KV entries were reused from the session's cache.
    public let reusedPrefixTokens: Int
    public let prefillTokensPerSecond: Double
    public let decodeTokens: Int
    public let decodeTokensPerSecond: Double
    /// Mean passes over every token the generation ran through the model (prompt and output).
    public let passesPerToken: Double
    /// Share of those tokens that took more than one pass, in percent.
    public let hardTokenPercent: Double
    /// Generated tokens that took more than one pass (depth >= 2).
    public let generatedHardTokens: Int
    /// Largest KV cache size during the generation.
    public let peakKvBytes: Int64
    /// The process's memory when the generation ended.
    public let memory: MemorySample?
    /// Compute threads the generation ran on.
    public let threads: Int
    public let stopReason: StopReason
}

/// Measures one generation: create it when the request is made, `record`
/// every streamed token and `finish` with the result.
public struct LatencyProfiler {
    private let startedAt = DispatchTime.now().uptimeNanoseconds
    private var firstTokenAt: UInt64?
    private var depths = [UInt32]()

    public init() {}

    public mutating func record(_ event: TokenEvent) {
        if firstTokenAt == nil { firstTokenAt = DispatchTime.now().uptimeNanoseconds }
        depths.append(event.depth)
    }

    public func finish(_ result: GenerationResult) -> LatencyReport {
        let now = DispatchTime.now().uptimeNanoseconds
        let stats = result.stats
        // A last event may carry held-back text with the EOS token, which is not part of the output.
        let generated = depths.prefix(result.tokenIds.count)
        return LatencyReport(
            device: stats.device,
            deviceNotice: stats.deviceNotice,
            loadMs: stats.loadMs,
            timeToFirstTokenMs: stats.timeToFirstTokenMs,
            firstTokenWallMs: firstTokenAt.map { Double($0 - startedAt) / 1e6 },
            totalWallMs: Double(now - startedAt) / 1e6,
            prefillTokens: Int(stats.prefillTokens),
            reusedPrefixTokens: Int(stats.reusedPrefixTokens),
            prefillTokensPerSecond: stats.prefillTokPerS,
            decodeTokens: Int(stats.decodeTokens),
            decodeTokensPerSecond: stats.decodeTokPerS,
            passesPerToken: stats.passesPerToken,
            hardTokenPercent: stats.hardTokenFraction * 100,
            generatedHardTokens: generated.filter { $0 > 1 }.count,
            peakKvBytes: Int64(stats.peakKvBytes),
            memory: ProcessMemory.sample(),
            threads: Int(stats.threads),
            stopReason: result.stopReason)
    }
}
