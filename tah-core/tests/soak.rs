//! One long conversation on one session: many thousand tokens through a
//! context that fills up again and again, with resident memory checked to
//! stay flat. Alone in its test binary so that no other test moves the
//! process's RSS. CI runs 1,000 tokens through a 128-token context;
//! `TAH_SOAK=1` (`scripts/soak.sh`) runs 10,000 through 1,024.
//!
//! Context handling, as the session API defines it: a generation that fills
//! the context stops with `StopReason::ContextFull`; the session does not
//! shift or drop context by itself, so continuing the same conversation then
//! fails with `Error::ContextOverflow` (history unchanged) until the app
//! shortens the history (`set_history`) or calls `reset()`.

mod common;

use std::sync::Arc;

use common::{fixture_dir, soak, tokenizer_path};
use tah_core::{
    CancelHandle, Error, GenerationConfig, LoadOptions, StopReason, TahModel, TahSession,
};

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn ten_thousand_tokens_through_a_full_context_keep_memory_flat() {
    let (target_tokens, context) = if soak() { (10_000, 1024) } else { (1_000, 128) };
    let options = LoadOptions {
        tokenizer: Some(tokenizer_path()),
        context_length: Some(context),
        ..Default::default()
    };
    let model = Arc::new(TahModel::load(&fixture_dir().join("tiny-d2-a"), &options).unwrap());
    // One compute thread: glibc gives each thread that allocates its own
    // malloc arena and keeps each arena's high-water mark, so with several
    // workers the RSS jumps (~20 MiB here) the first time another worker
    // serves a full context, which may come at any turn (a CI run saw it
    // after the warm-up). With one worker the measure is the session's own.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| converse(model, target_tokens, context));
}

fn converse(model: Arc<TahModel>, target_tokens: usize, context: usize) {
    let mut session = TahSession::new(model);
    let config = GenerationConfig {
        seed: Some(1),
        max_new_tokens: 100_000,
        ..GenerationConfig::default()
    };
    let cancel = CancelHandle::new();
    let (mut generated, mut turns, mut filled, mut overflowed) = (0usize, 0usize, 0usize, 0usize);
    let mut rss_after_warmup = None;
    let mut rss_samples = Vec::new();
    let started = std::time::Instant::now();
    while generated < target_tokens {
        let message = format!("Tell me a long story about the number {turns}.");
        let history = session.history().to_vec();
        match session.chat(&message, &config, &cancel, &mut |_| {}) {
            Ok(result) => {
                generated += result.token_ids.len();
                match result.stop_reason {
                    StopReason::ContextFull => {
                        assert_eq!(session.cached_tokens(), context);
                        filled += 1;
                    }
                    // The model may end its answer early; the next turn goes on.
                    StopReason::Eos | StopReason::StopString => {}
                    other => panic!("unexpected stop: {other:?}"),
                }
            }
            // The conversation no longer fits: a typed error, the history
            // unchanged; this app starts over.
            Err(Error::ContextOverflow { needed, capacity }) => {
                assert!(needed > capacity && capacity == context);
                assert_eq!(session.history(), history.as_slice());
                overflowed += 1;
                session.reset();
                // Warm-up: two contexts filled (the KV cache at full size,
                // the allocator's arena at its high-water mark).
                if overflowed == 2 {
                    rss_after_warmup = Some(rss_kib());
                }
            }
            Err(other) => panic!("turn {turns}: {other}"),
        }
        turns += 1;
        rss_samples.push(rss_kib());
    }
    let secs = started.elapsed().as_secs_f64();
    let warm = rss_after_warmup.expect("the conversation overflowed fewer than two times");
    let last = *rss_samples.last().unwrap();
    let peak = *rss_samples.iter().max().unwrap();
    println!(
        "{generated} tokens in {turns} turns ({:.0} tok/s), context {context} filled {filled} times, \
         {overflowed} overflows: RSS after warm-up {warm} KiB, peak {peak} KiB, end {last} KiB ({:+} KiB)",
        generated as f64 / secs,
        last as i64 - warm as i64
    );
    println!("RSS per turn (KiB): {rss_samples:?}");
    // A leak of 1 KiB per token would add ~10 MB over the soak run; a KV
    // cache that is not reused, 4 layers x 2 x 32 floats per position and
    // depth (~1 KiB), the same. Allocator noise stays well below 8 MiB.
    let bound_kib = 8 * 1024;
    assert!(
        peak.saturating_sub(warm) < bound_kib,
        "RSS grew by {} KiB after warm-up",
        peak - warm
    );
    assert!(
        filled >= 2 && overflowed >= 2,
        "the context was not exercised"
    );
}
