//! Faults at the boundary, through tah-ffi's own API (what the generated
//! bindings call) on the tiny-d2-a fixture: listeners that fail, panic or
//! block, handles and sessions dropped mid-generation, and engine panics
//! becoming `TahError::Internal`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{await_idle, greedy, listener, run, Fault};
use tah_ffi::{
    diagnostic_panic, ChatMessage, ModelOptions, Prompt, Role, StopReason, TahError, TahModel,
};

fn model() -> Arc<TahModel> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tah-core/tests/fixtures");
    let options = ModelOptions {
        tokenizer_path: Some(
            fixtures
                .join("qwen3-tokenizer/tokenizer.json")
                .display()
                .to_string(),
        ),
        ..Default::default()
    };
    TahModel::load(fixtures.join("tiny-d2-a").display().to_string(), options).unwrap()
}

fn prompt() -> Prompt {
    Prompt::Chat {
        messages: vec![ChatMessage {
            role: Role::User,
            content: "What is 347 + 589?".into(),
        }],
    }
}

#[test]
fn a_panic_in_the_runtime_becomes_an_internal_error() {
    let err = diagnostic_panic("boom".into()).unwrap_err();
    assert_eq!(
        err,
        TahError::Internal {
            reason: "the engine panicked: boom".into()
        }
    );
}

#[test]
fn failing_and_panicking_listeners_fail_the_generation_not_the_session() {
    let model = model();
    let fresh = run(&model.new_session(), prompt(), greedy(8));
    for fault in [Fault::Fail(2), Fault::Panic(2)] {
        let session = model.new_session();
        let (l, watch) = listener(fault);
        let _handle = session.generate(prompt(), greedy(8), l.clone()).unwrap();
        let err = watch.outcome().unwrap_err();
        let reason = match &err {
            TahError::Internal { reason } => reason,
            other => panic!("expected Internal, got {other:?}"),
        };
        assert!(reason.contains("on purpose"), "{reason}");
        // The generation stopped at the failing token.
        assert_eq!(l.tokens.lock().unwrap().len(), 3);
        await_idle(&session);
        assert_eq!(
            run(&session, prompt(), greedy(8)).token_ids,
            fresh.token_ids
        );
    }
}

#[test]
fn a_blocking_listener_keeps_the_session_busy_until_it_returns() {
    let model = model();
    let session = model.new_session();
    let block = Duration::from_millis(1500);
    let (l, watch) = listener(Fault::Block(0, block));
    let handle = session.generate(prompt(), greedy(200), l.clone()).unwrap();
    watch.first_token();
    let (other, _) = listener(Fault::None);
    assert!(matches!(
        session.generate(prompt(), greedy(4), other),
        Err(TahError::Busy { .. })
    ));
    assert!(matches!(session.reset(), Err(TahError::Busy { .. })));
    // Another session of the same model is not held up.
    let started = Instant::now();
    assert_eq!(
        run(&model.new_session(), prompt(), greedy(4))
            .token_ids
            .len(),
        4
    );
    assert!(started.elapsed() < block);
    handle.cancel();
    let result = watch.outcome().unwrap();
    assert_eq!(result.stop_reason, StopReason::Cancelled);
    assert_eq!(result.token_ids.len(), 1);
    await_idle(&session);
}

#[test]
fn dropping_the_handle_or_the_session_mid_generation_cancels_it() {
    let model = model();
    let fresh = run(&model.new_session(), prompt(), greedy(8));
    // The handle.
    let session = model.new_session();
    let (l, watch) = listener(Fault::None);
    let handle = session.generate(prompt(), greedy(4000), l).unwrap();
    watch.first_token();
    drop(handle);
    let result = watch.outcome().unwrap();
    assert_eq!(result.stop_reason, StopReason::Cancelled);
    assert!(result.token_ids.len() < 4000);
    await_idle(&session);
    assert_eq!(
        run(&session, prompt(), greedy(8)).token_ids,
        fresh.token_ids
    );
    // The session (the worker keeps what it needs and reports the end).
    let (l, watch) = listener(Fault::None);
    let handle = session.generate(prompt(), greedy(4000), l).unwrap();
    watch.first_token();
    drop(session);
    assert_eq!(watch.outcome().unwrap().stop_reason, StopReason::Cancelled);
    assert!(handle.is_finished());
    // The model, while a session generates: the session holds it.
    let session = model.new_session();
    let (l, watch) = listener(Fault::None);
    let _handle = session.generate(prompt(), greedy(8), l).unwrap();
    drop(model);
    assert_eq!(watch.outcome().unwrap().token_ids, fresh.token_ids);
}
