//! Load and faults on the fixture models: many sessions on one model at
//! once, cancellation from another thread at random moments, listeners that
//! panic, stop or block, handles dropped mid-generation, and loads running
//! side by side. Sized for CI; `TAH_SOAK=1` (see `scripts/soak.sh`) runs the
//! full sizes.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use candle_core::quantized::GgmlDType;
use common::gguf::TempFile;
use common::tiny_gguf::tiny_gguf;
use common::{fixture_dir, fixture_model, generate, soak, tokenizer_path, Lcg};
use tah_core::{
    CancelHandle, ChatMessage, GenerationConfig, GenerationResult, IterationMode, LoadOptions,
    Prompt, StopReason, TahModel, TahSession,
};

fn user(text: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::user(text)])
}

fn sampled(seed: u64, max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        seed: Some(seed),
        max_new_tokens,
        ..GenerationConfig::default()
    }
}

#[test]
fn eight_sessions_on_one_model_match_their_single_session_runs() {
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let modes = [
        IterationMode::Decider,
        IterationMode::Always,
        IterationMode::Never,
    ];
    let jobs: Vec<(Prompt, GenerationConfig)> = (0..8u64)
        .map(|i| {
            let prompt = user(&format!("What is {} + {}?", 17 * i, 5 + i));
            let config = GenerationConfig {
                mode: modes[i as usize % 3],
                ..sampled(i, 16)
            };
            (prompt, config)
        })
        .collect();
    let alone: Vec<GenerationResult> = jobs
        .iter()
        .map(|(p, c)| generate(&mut TahSession::new(model.clone()), p, c))
        .collect();
    // All eight start together and run side by side.
    let start = Barrier::new(jobs.len());
    let together: Vec<GenerationResult> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(p, c)| {
                let (model, start) = (model.clone(), &start);
                s.spawn(move || {
                    let mut session = TahSession::new(model);
                    start.wait();
                    generate(&mut session, p, c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a.token_ids, b.token_ids, "session {i}");
        assert_eq!(a.text, b.text, "session {i}");
        assert_eq!(a.stop_reason, b.stop_reason, "session {i}");
    }
}

/// Cancels from another thread after a random delay, over and over: every
/// outcome leaves the session producing exactly what a fresh session does.
#[test]
fn cancelling_at_random_moments_leaves_the_session_usable() {
    let rounds = if soak() { 1000 } else { 200 };
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let prompt = user("What is 347 + 589?");
    let long = GenerationConfig {
        max_new_tokens: 8,
        ..GenerationConfig::greedy()
    };
    let probe = GenerationConfig {
        max_new_tokens: 3,
        ..GenerationConfig::greedy()
    };
    let fresh = generate(&mut TahSession::new(model.clone()), &prompt, &probe);
    // Delays spread over one whole uncancelled generation (prefill + decode).
    let started = Instant::now();
    generate(&mut TahSession::new(model.clone()), &prompt, &long);
    let span_us = started.elapsed().as_micros() as u64;

    let mut session = TahSession::new(model);
    let mut rng = Lcg(8);
    let (mut in_prefill, mut in_decode, mut finished) = (0, 0, 0);
    for round in 0..rounds {
        let cancel = CancelHandle::new();
        let delay = Duration::from_micros(rng.below(span_us));
        let result = std::thread::scope(|s| {
            let remote = cancel.clone();
            s.spawn(move || {
                std::thread::sleep(delay);
                remote.cancel();
            });
            session
                .generate(&prompt, &long, &cancel, &mut |_| {})
                .unwrap()
        });
        match (result.stop_reason, result.token_ids.len()) {
            (StopReason::Cancelled, 0) => in_prefill += 1,
            (StopReason::Cancelled, _) => in_decode += 1,
            _ => finished += 1,
        }
        let after = generate(&mut session, &prompt, &probe);
        assert_eq!(after.token_ids, fresh.token_ids, "round {round}");
    }
    println!(
        "{rounds} rounds: cancelled before the first token {in_prefill}, while decoding {in_decode}, finished first {finished}"
    );
    assert!(
        in_prefill + in_decode > rounds / 4,
        "cancellation rarely landed"
    );
}

/// A listener that panics unwinds out of `generate` (it is the caller's own
/// code); the session is left consistent and produces the fresh result.
#[test]
fn a_panicking_listener_leaves_the_session_consistent() {
    let model = Arc::new(fixture_model("tiny-d3-a"));
    let prompt = user("Name three prime numbers.");
    let config = GenerationConfig {
        max_new_tokens: 10,
        ..GenerationConfig::greedy()
    };
    let fresh = generate(&mut TahSession::new(model.clone()), &prompt, &config);
    let mut session = TahSession::new(model);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        session.generate(&prompt, &config, &CancelHandle::new(), &mut |e| {
            assert!(e.index < 3, "listener failure on purpose");
        })
    }));
    assert!(panicked.is_err());
    let after = generate(&mut session, &prompt, &config);
    assert_eq!(after.token_ids, fresh.token_ids);
}

/// The core listener has no error channel: a listener that wants to stop
/// cancels the handle, and the output ends right there.
#[test]
fn a_listener_can_stop_the_generation() {
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let prompt = user("Count to ten.");
    let config = GenerationConfig {
        max_new_tokens: 40,
        ..GenerationConfig::greedy()
    };
    let fresh = generate(&mut TahSession::new(model.clone()), &prompt, &config);
    let mut session = TahSession::new(model);
    let cancel = CancelHandle::new();
    let stopper = cancel.clone();
    let result = session
        .generate(&prompt, &config, &cancel, &mut |e| {
            if e.index == 2 {
                stopper.cancel();
            }
        })
        .unwrap();
    assert_eq!(result.stop_reason, StopReason::Cancelled);
    assert_eq!(result.token_ids, fresh.token_ids[..3]);
}

/// A listener that blocks holds up its own generation only: another session
/// on the same model runs a whole generation while it blocks (the listener
/// waits for that generation to finish, so if sessions were serialized this
/// would time out instead), and a cancel sent meanwhile takes effect as soon
/// as it returns.
#[test]
fn a_blocking_listener_delays_only_its_own_generation() {
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let prompt = user("What is 7 * 8?");
    let config = GenerationConfig {
        max_new_tokens: 200,
        ..GenerationConfig::greedy()
    };
    let cancel = CancelHandle::new();
    let (blocked_tx, blocked_rx) = mpsc::channel();
    let (other_done_tx, other_done_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        // The receiver is not `Sync`: the thread takes it (and borrows the rest).
        let (model_ref, prompt_ref, config_ref, cancel_ref) = (&model, &prompt, &config, &cancel);
        let blocked = s.spawn(move || {
            let (model, prompt, config, cancel) = (model_ref, prompt_ref, config_ref, cancel_ref);
            let mut session = TahSession::new(model.clone());
            let mut saw_other_finish = false;
            let result = session
                .generate(prompt, config, cancel, &mut |e| {
                    if e.index == 0 {
                        blocked_tx.send(()).unwrap();
                        // Generous: only a serialized (deadlocked) run reaches it.
                        saw_other_finish =
                            other_done_rx.recv_timeout(Duration::from_secs(300)).is_ok();
                    }
                })
                .unwrap();
            (result, saw_other_finish)
        });
        blocked_rx.recv().unwrap();
        // Meanwhile another session runs a whole generation.
        let other = generate(
            &mut TahSession::new(model.clone()),
            &prompt,
            &GenerationConfig {
                max_new_tokens: 8,
                ..GenerationConfig::greedy()
            },
        );
        assert_eq!(other.token_ids.len(), 8);
        cancel.cancel();
        other_done_tx.send(()).unwrap();
        let (result, saw_other_finish) = blocked.join().unwrap();
        assert!(
            saw_other_finish,
            "the other session waited for the blocked listener"
        );
        assert_eq!(result.stop_reason, StopReason::Cancelled);
        assert_eq!(result.token_ids.len(), 1, "ran on after the cancel");
    });
}

/// The caller's handles may go away mid-generation: the model `Arc`, the
/// cancel handle's clones. The generation holds what it needs.
#[test]
fn dropping_handles_mid_generation_is_harmless() {
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let prompt = user("What is 12 * 12?");
    let config = GenerationConfig {
        max_new_tokens: 16,
        ..GenerationConfig::greedy()
    };
    let fresh = generate(&mut TahSession::new(model.clone()), &prompt, &config);
    let mut session = TahSession::new(model.clone());
    let (tx, rx) = mpsc::channel();
    let cancel = CancelHandle::new();
    let spare = cancel.clone();
    let worker = std::thread::spawn(move || {
        session
            .generate(&prompt, &config, &cancel, &mut |_| {
                let _ = tx.send(());
            })
            .unwrap()
    });
    rx.recv().unwrap();
    drop(model);
    drop(spare);
    let result = worker.join().unwrap();
    assert_eq!(result.token_ids, fresh.token_ids);
}

/// Loads of several models (directories and a GGUF file) run side by side
/// with a generation, and each gives what it gives when loaded alone.
#[test]
fn loads_run_while_other_loads_and_generations_run() {
    let gguf = TempFile::with("tiny", &tiny_gguf(true, GgmlDType::Q8_0));
    let options = LoadOptions {
        tokenizer: Some(tokenizer_path()),
        ..Default::default()
    };
    let sources = [
        (fixture_dir().join("tiny-d2-a"), options.clone()),
        (fixture_dir().join("tiny-d3-a"), options),
        (gguf.0.clone(), LoadOptions::default()),
    ];
    let prompt = user("What is 3 + 4?");
    let config = GenerationConfig {
        max_new_tokens: 8,
        ..GenerationConfig::greedy()
    };
    let output =
        |model: TahModel| generate(&mut TahSession::new(Arc::new(model)), &prompt, &config);
    let alone: Vec<Vec<u32>> = sources
        .iter()
        .map(|(path, opts)| output(TahModel::load(path, opts).unwrap()).token_ids)
        .collect();
    let running = Arc::new(fixture_model("tiny-d3-a"));
    let loads_done = AtomicUsize::new(0);
    let start = Barrier::new(sources.len() + 1);
    let together: Vec<Vec<u32>> = std::thread::scope(|s| {
        let (start, loads_done, sources, config) = (&start, &loads_done, &sources, &config);
        // A generation keeps running until every load is done.
        let generator = s.spawn(move || {
            let mut session = TahSession::new(running);
            start.wait();
            let mut rounds = 0;
            while loads_done.load(Ordering::Acquire) < sources.len() {
                generate(&mut session, &user("Hello!"), config);
                rounds += 1;
            }
            rounds
        });
        let loaders: Vec<_> = sources
            .iter()
            .map(|(path, opts)| {
                s.spawn(move || {
                    start.wait();
                    let model = TahModel::load(path, opts).unwrap();
                    loads_done.fetch_add(1, Ordering::Release);
                    model
                })
            })
            .collect();
        let models: Vec<TahModel> = loaders.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(generator.join().unwrap() >= 1);
        models.into_iter().map(|m| output(m).token_ids).collect()
    });
    assert_eq!(together, alone);
}
