//! The phone-life additions through tah-ffi's own API (what the generated
//! bindings call): stop-and-ask without `Busy`, memory trims, thread
//! changes between generations, saved sessions and descriptor sources.

mod common;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use common::{await_tokens, greedy, listener, run, Fault};
use tah_ffi::{
    ChatMessage, ModelOptions, ModelSource, Prompt, Role, StopReason, TahError, TahModel,
    TahSession, TrimLevel,
};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The committed default model, a GGUF file.
fn model() -> Arc<TahModel> {
    let path = repository().join("models/arith-tah.gguf");
    TahModel::load(path.display().to_string(), ModelOptions::default()).unwrap()
}

fn user(text: &str) -> Prompt {
    Prompt::Chat {
        messages: vec![ChatMessage {
            role: Role::User,
            content: text.into(),
        }],
    }
}

#[test]
fn stop_and_ask_again_at_once_never_finds_the_session_busy() {
    let model = model();
    let session = model.new_session();
    let questions = [
        "What is 347 + 589?",
        "What is 12 * 12?",
        "What is 1000 - 1?",
    ];
    for round in 0..30 {
        let question = questions[round % questions.len()];
        // Stop after three tokens, as a "stop" button or `take(3)` does.
        let (l, watch) = listener(Fault::None);
        let handle = session
            .generate(user(question), greedy(500), l.clone())
            .unwrap();
        await_tokens(&l, 3);
        handle.cancel();
        drop(handle);
        // Ask again at once: the next generation waits for the cancelled one.
        let next = user(questions[(round + 1) % questions.len()]);
        let result = run(&session, next.clone(), greedy(12));
        let stopped = watch.outcome().unwrap();
        assert_eq!(stopped.stop_reason, StopReason::Cancelled, "round {round}");
        assert!(stopped.token_ids.len() >= 3, "round {round}");
        let fresh = run(&model.new_session(), next, greedy(12));
        assert_eq!(result.token_ids, fresh.token_ids, "round {round}");
    }
}

#[test]
fn trims_report_what_they_freed_and_change_no_token() {
    let model = model();
    let (a, b) = (model.new_session(), model.new_session());
    let first = run(&a, user("What is 347 + 589?"), greedy(16));
    run(&b, user("What is 347 + 589?"), greedy(16));
    let follow = Prompt::Chat {
        messages: vec![
            ChatMessage {
                role: Role::User,
                content: "What is 347 + 589?".into(),
            },
            ChatMessage {
                role: Role::Assistant,
                content: first.text.clone(),
            },
            ChatMessage {
                role: Role::User,
                content: "And 12 + 30?".into(),
            },
        ],
    };
    let moderate = model.trim_memory(TrimLevel::Moderate).unwrap();
    println!("moderate: {moderate:?}");
    assert!(moderate.weight_bytes > 0);
    assert_eq!(
        moderate.total_bytes,
        moderate.weight_bytes + moderate.heap_bytes
    );
    let x = run(&a, follow.clone(), greedy(16));
    let critical = model.trim_memory(TrimLevel::Critical).unwrap();
    println!("critical: {critical:?}");
    assert!(critical.kv_cache_bytes > 0);
    assert_eq!(a.cached_tokens().unwrap(), 0);
    let y = run(&b, follow.clone(), greedy(16));
    assert_eq!(x.token_ids, y.token_ids);
    // After the critical trim, `a` recomputes and answers like a fresh session.
    assert_eq!(
        run(&a, follow.clone(), greedy(16)).token_ids,
        run(&model.new_session(), follow, greedy(16)).token_ids
    );
}

#[test]
fn threads_change_between_generations() {
    let model = model();
    let session = model.new_session();
    let baseline = run(&session, user("What is 347 + 589?"), greedy(8));
    assert_eq!(baseline.stats.threads, model.threads());
    for threads in [1, 2, 1] {
        model.set_threads(threads).unwrap();
        assert_eq!(model.threads(), threads);
        let result = run(&model.new_session(), user("What is 347 + 589?"), greedy(8));
        assert_eq!(result.stats.threads, threads);
        assert_eq!(result.token_ids, baseline.token_ids);
    }
    assert!(matches!(
        model.set_threads(0),
        Err(TahError::InvalidArgument { .. })
    ));
}

#[test]
fn saved_sessions_restore_through_the_ffi() {
    let model = model();
    let dir = std::env::temp_dir().join(format!("tah-ffi-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chat.tahstate").display().to_string();
    let session = model.new_session();
    let first = run(&session, user("What is 347 + 589?"), greedy(12));
    // Busy while generating; then saved.
    let (l, watch) = listener(Fault::None);
    let handle = session
        .generate(user("What is 2 + 2?"), greedy(400), l)
        .unwrap();
    watch.first_token();
    assert!(matches!(
        session.save_state(path.clone()),
        Err(TahError::Busy { .. })
    ));
    handle.cancel();
    assert!(
        session.save_state(path.clone()).unwrap() > 0,
        "waits for the cancelled generation"
    );
    let history = session.history().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].content, "What is 2 + 2?");
    let restored = TahSession::restore(Arc::clone(&model), path.clone()).unwrap();
    assert_eq!(restored.history().unwrap(), history);
    assert_eq!(
        restored.cached_tokens().unwrap(),
        session.cached_tokens().unwrap()
    );
    let next = user("What is 9 + 9?");
    assert_eq!(
        run(&restored, next.clone(), greedy(8)).token_ids,
        run(&session, next, greedy(8)).token_ids
    );
    // Damaged: a typed error.
    std::fs::write(&path, b"TAHSTATE\x01\x00\x00\x00garbage").unwrap();
    match TahSession::restore(Arc::clone(&model), path.clone()) {
        Err(TahError::SessionState { reason }) => println!("{reason}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(!first.token_ids.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn descriptor_sources_load_and_refuse_bad_descriptors() {
    let path = repository().join("models/arith-tah.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let packed = std::env::temp_dir().join(format!("tah-ffi-packed-{}", std::process::id()));
    let mut content = vec![0u8; 8192];
    content.extend(&bytes);
    content.extend(vec![0u8; 100]);
    std::fs::write(&packed, &content).unwrap();
    let file = std::fs::File::open(&packed).unwrap();
    let fd = file.as_raw_fd();
    let source = |offset: u64, length: u64| ModelSource::Fd { fd, offset, length };
    let model =
        TahModel::load_from(source(8192, bytes.len() as u64), ModelOptions::default()).unwrap();
    drop(file);
    let expected = run(
        &self::model().new_session(),
        user("What is 347 + 589?"),
        greedy(12),
    );
    assert_eq!(
        run(&model.new_session(), user("What is 347 + 589?"), greedy(12)).token_ids,
        expected.token_ids
    );
    let file = std::fs::File::open(&packed).unwrap();
    let fd = file.as_raw_fd();
    let load = |source| TahModel::load_from(source, ModelOptions::default()).map(|_| ());
    assert!(matches!(
        load(ModelSource::Fd {
            fd,
            offset: 8192,
            length: content.len() as u64
        }),
        Err(TahError::InvalidArgument { .. })
    ));
    assert!(matches!(
        load(ModelSource::Fd {
            fd: -1,
            offset: 0,
            length: 10
        }),
        Err(TahError::InvalidArgument { .. })
    ));
    assert!(matches!(
        load(ModelSource::Fd {
            fd,
            offset: 8000,
            length: bytes.len() as u64
        }),
        Err(TahError::ModelLoad { .. })
    ));
    std::fs::remove_file(&packed).unwrap();
}
