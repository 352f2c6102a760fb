//! The session API on the fixture checkpoints: greedy generation reproduces
//! the reference's decode, and streaming, stop strings, seeds, cancellation,
//! multi-turn reuse and context limits behave.

mod common;

use std::sync::Arc;

use common::{fixture_dir, fixture_model, fixture_names, tokenizer_path};
use serde_json::Value;
use tah_core::{
    CancelHandle, ChatMessage, Error, GenerationConfig, GenerationResult, IterationMode,
    LoadOptions, Prompt, StopReason, TahModel, TahSession, TokenEvent,
};

fn cases(name: &str) -> Vec<Value> {
    let path = fixture_dir().join(name).join("expected.json");
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    expected["cases"].as_array().unwrap().clone()
}

fn u32s(v: &Value) -> Vec<u32> {
    let values = v.as_array().unwrap();
    values.iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn mode_of(case: &Value) -> IterationMode {
    match case["mode"].as_str() {
        Some("never") => IterationMode::Never,
        Some("always") => IterationMode::Always,
        _ => IterationMode::Decider,
    }
}

fn user(text: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::user(text)])
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        ..GenerationConfig::greedy()
    }
}

/// Runs a generation, returning the result and every event.
fn run(
    session: &mut TahSession,
    prompt: &Prompt,
    config: &GenerationConfig,
) -> (GenerationResult, Vec<TokenEvent>) {
    let mut events = Vec::new();
    let result = session
        .generate(prompt, config, &CancelHandle::new(), &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
    (result, events)
}

fn shared(name: &str) -> Arc<TahModel> {
    Arc::new(fixture_model(name))
}

#[test]
fn greedy_generate_reproduces_fixture_decode() {
    for name in fixture_names() {
        let model = shared(&name);
        let mut session = TahSession::new(model.clone());
        for case in cases(&name) {
            let label = format!("{name}/{}", case["name"]);
            let config = GenerationConfig {
                mode: mode_of(&case),
                // The chunked case prefills in several chunks.
                prefill_chunk: if case["kind"] == "chunked" { 16 } else { 64 },
                ..greedy(24)
            };
            let text = case["text"].as_str().unwrap();
            let (result, events) = run(&mut session, &user(text), &config);
            assert_eq!(result.token_ids, u32s(&case["decode"]["tokens"]), "{label}");
            assert_eq!(result.stop_reason, StopReason::MaxTokens, "{label}");
            assert_eq!(result.text, case["decode"]["text"].as_str().unwrap());
            let depths: Vec<u32> = events.iter().map(|e| e.depth).collect();
            assert_eq!(
                depths,
                u32s(&case["decode"]["iter_count_producing"]),
                "{label}"
            );
            let indices: Vec<u32> = events.iter().map(|e| e.index).collect();
            assert_eq!(indices, (0..24).collect::<Vec<u32>>(), "{label}");
            let streamed: String = events.iter().map(|e| e.text.as_str()).collect();
            assert_eq!(streamed, result.text, "{label}");
            let stats = &result.stats;
            assert_eq!(stats.decode_tokens, 24);
            assert!(stats.passes_per_token >= 1.0 && stats.peak_kv_bytes > 0);
        }
    }
}

#[test]
fn non_ascii_output_streams_whole_characters() {
    let model = shared("tiny-d2-a");
    let case = cases("tiny-d2-a")
        .into_iter()
        .find(|c| c["name"] == "non_ascii")
        .unwrap();
    let (result, events) = run(
        &mut TahSession::new(model.clone()),
        &user(case["text"].as_str().unwrap()),
        &greedy(24),
    );
    let tokenizer = model.tokenizer().unwrap();
    let mut streamed = String::new();
    for event in &events {
        streamed += &event.text;
        // Each delta is exactly what decoding the ids so far adds, so no
        // event carries half a character (the held-back bytes come later).
        let upto = &result.token_ids[..=event.index as usize];
        let decoded = tokenizer.decode(upto).unwrap();
        if !decoded.ends_with('\u{FFFD}') {
            assert_eq!(streamed, decoded);
        }
    }
    assert_eq!(streamed, result.text);
    assert!(events.iter().any(|e| !e.text.is_ascii()));
}

#[test]
fn stop_strings_split_across_tokens_end_the_output() {
    let model = shared("tiny-d2-a");
    let prompt = user("What is 7 * 8 + 3? Answer with a number.");
    let (full, events) = run(&mut TahSession::new(model.clone()), &prompt, &greedy(24));
    // A stop string made of the end of token 2's text and the start of token 3's.
    let (a, b) = (&events[1].text, &events[2].text);
    let stop = format!("{}{}", &a[a.len() - 1..], &b[..1]);
    let at = full.text.find(&stop).unwrap();
    let config = GenerationConfig {
        stop: vec!["never appears".into(), stop],
        ..greedy(24)
    };
    let (result, events) = run(&mut TahSession::new(model), &prompt, &config);
    assert_eq!(result.stop_reason, StopReason::StopString);
    assert_eq!(result.text, full.text[..at]);
    assert_eq!(
        events.iter().map(|e| e.text.as_str()).collect::<String>(),
        result.text
    );
    assert_eq!(result.token_ids, full.token_ids[..result.token_ids.len()]);
}

#[test]
fn seeds_reproduce_and_greedy_settings_agree() {
    let model = shared("tiny-d2-a");
    let prompt = user("Natalia sold clips to 48 of her friends in April.");
    let sample = |seed: u64, config: GenerationConfig| {
        let config = GenerationConfig {
            seed: Some(seed),
            max_new_tokens: 16,
            ..config
        };
        run(&mut TahSession::new(model.clone()), &prompt, &config)
            .0
            .token_ids
    };
    let hot = GenerationConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        ..GenerationConfig::default()
    };
    assert_eq!(sample(42, hot.clone()), sample(42, hot.clone()));
    assert_ne!(sample(42, hot.clone()), sample(43, hot));
    let defaults = GenerationConfig::default();
    assert_eq!(sample(5, defaults.clone()), sample(5, defaults));
    let greedy_ids = sample(1, GenerationConfig::greedy());
    let top1 = GenerationConfig {
        top_k: 1,
        ..GenerationConfig::default()
    };
    assert_eq!(sample(1, top1.clone()), greedy_ids);
    assert_eq!(sample(99, top1), greedy_ids);
}

#[test]
fn invalid_settings_are_typed_errors() {
    let mut session = TahSession::new(shared("tiny-d2-a"));
    let bad = GenerationConfig {
        top_p: 0.0,
        ..GenerationConfig::default()
    };
    let err = session
        .generate(&user("hi"), &bad, &CancelHandle::new(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    for prompt in [Prompt::Chat(Vec::new()), Prompt::Raw(String::new())] {
        let err = session
            .generate(&prompt, &greedy(4), &CancelHandle::new(), &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
}

#[test]
fn cancellation_keeps_the_session_consistent() {
    let model = shared("tiny-d2-a");
    let prompt = user("What is 7 * 8 + 3? Answer with a number.");
    let (fresh, _) = run(&mut TahSession::new(model.clone()), &prompt, &greedy(12));

    let mut session = TahSession::new(model.clone());
    let cancel = CancelHandle::new();
    let handle = cancel.clone();
    let result = session
        .generate(&prompt, &greedy(12), &cancel, &mut |e| {
            if e.index == 4 {
                handle.cancel();
            }
        })
        .unwrap();
    assert_eq!(result.stop_reason, StopReason::Cancelled);
    assert_eq!(result.token_ids, fresh.token_ids[..5]);
    // The cancelled token 4 was never fed: the cache holds prompt + 4 tokens.
    let prompt_len = fresh.stats.prefill_tokens as usize;
    assert_eq!(session.cached_tokens(), prompt_len + 4);

    // Still cancelled: stops before the first token, cache untouched.
    let again = session
        .generate(&prompt, &greedy(12), &cancel, &mut |_| {})
        .unwrap();
    assert_eq!(again.stop_reason, StopReason::Cancelled);
    assert!(again.token_ids.is_empty());

    cancel.reset();
    let (after, _) = run(&mut session, &prompt, &greedy(12));
    assert_eq!(after.token_ids, fresh.token_ids);
    assert_eq!(after.stats.reused_prefix_tokens as usize, prompt_len - 1);

    // Cancelled from another thread while generating.
    let cancel = CancelHandle::new();
    let remote = cancel.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut session = TahSession::new(model);
        let config = greedy(100_000);
        let result = session.generate(&prompt, &config, &cancel, &mut |_| {
            let _ = tx.send(());
        });
        (result.unwrap(), session.cached_tokens())
    });
    rx.recv().unwrap();
    remote.cancel();
    let (result, cached) = worker.join().unwrap();
    assert_eq!(result.stop_reason, StopReason::Cancelled);
    assert!(cached <= prompt_len + result.token_ids.len());
}

#[test]
fn second_turn_prefills_only_what_changed() {
    let model = shared("tiny-d2-a");
    let config = greedy(8);
    let mut session = TahSession::new(model.clone());
    let cancel = CancelHandle::new();
    let first = session
        .chat("What is 2 + 2?", &config, &cancel, &mut |_| {})
        .unwrap();
    let cached = session.cached_tokens();
    assert_eq!(cached, first.stats.prefill_tokens as usize + 7);
    let second = session
        .chat("And 3 + 3?", &config, &cancel, &mut |_| {})
        .unwrap();
    assert_eq!(session.history().len(), 4);

    // Independently: the second prompt's tokens and what they share with the
    // first turn's prompt + output.
    let messages = session.history()[..3].to_vec();
    let ids = render_ids(&model, &messages);
    let tokenizer = model.tokenizer().unwrap();
    let first_prompt = render_ids(&model, &session.history()[..1]);
    let cached_ids = [&first_prompt[..], &first.token_ids[..7]].concat();
    let reused = second.stats.reused_prefix_tokens as usize;
    assert_eq!(reused, common_prefix(&cached_ids, &ids));
    assert!(reused > first_prompt.len(), "{reused}");
    assert_eq!(second.stats.prefill_tokens as usize, ids.len() - reused);

    let (fresh, _) = run(
        &mut TahSession::new(model.clone()),
        &Prompt::Chat(messages),
        &config,
    );
    assert_eq!(second.token_ids, fresh.token_ids);
    assert_eq!(fresh.stats.prefill_tokens as usize, ids.len());

    // Raw continuation: everything already cached is reused.
    let mut session = TahSession::new(model.clone());
    let (a, _) = run(&mut session, &Prompt::Raw("One two three".into()), &config);
    let cached_ids = [
        tokenizer.encode("One two three").unwrap(),
        a.token_ids[..7].to_vec(),
    ]
    .concat();
    let next_text = format!("One two three{} four", a.text);
    let next_ids = tokenizer.encode(&next_text).unwrap();
    let next = Prompt::Raw(next_text);
    let (b, _) = run(&mut session, &next, &config);
    let reused = b.stats.reused_prefix_tokens as usize;
    assert_eq!(reused, common_prefix(&cached_ids, &next_ids));
    assert!(reused > 4, "{reused}");
    let (fresh, _) = run(
        &mut TahSession::new(session.model().clone()),
        &next,
        &config,
    );
    assert_eq!(b.token_ids, fresh.token_ids);
}

fn render_ids(model: &TahModel, messages: &[ChatMessage]) -> Vec<u32> {
    let template = model.chat_template().unwrap();
    let rendered = template.render(messages, true, true).unwrap();
    model.tokenizer().unwrap().encode(&rendered).unwrap()
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[test]
fn context_limits_are_explicit() {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_path()),
        context_length: Some(30),
        ..Default::default()
    };
    let model = Arc::new(TahModel::load(&fixture_dir().join("tiny-d2-a"), &options).unwrap());
    let case = cases("tiny-d2-a")
        .into_iter()
        .find(|c| c["name"] == "short_arith")
        .unwrap();
    let expected = u32s(&case["decode"]["tokens"]);
    let mut session = TahSession::new(model);

    // 47 prompt tokens do not fit in 30: an error, nothing cached.
    let long = user("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?");
    let err = session
        .generate(&long, &greedy(4), &CancelHandle::new(), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextOverflow {
                needed: 47,
                capacity: 30
            }
        ),
        "{err}"
    );

    // 24 prompt tokens: 6 more fit, and a 7th is sampled from the last logits.
    let prompt = user(case["text"].as_str().unwrap());
    let (result, _) = run(&mut session, &prompt, &greedy(24));
    assert_eq!(result.stop_reason, StopReason::ContextFull);
    assert_eq!(result.token_ids, expected[..7]);
    assert_eq!(session.cached_tokens(), 30);
}

#[test]
fn hard_token_budget_limits_second_passes() {
    let model = shared("tiny-d2-a");
    let case_named = |n: &str| {
        cases("tiny-d2-a")
            .into_iter()
            .find(|c| c["name"] == n)
            .unwrap()
    };
    let prompt = user(case_named("short_arith")["text"].as_str().unwrap());
    let with_budget = |budget| GenerationConfig {
        hard_token_budget: budget,
        ..greedy(24)
    };
    // Budget 0: the decider runs but no token gets pass 2 = the plain model.
    let (zero, _) = run(
        &mut TahSession::new(model.clone()),
        &prompt,
        &with_budget(Some(0)),
    );
    let never = case_named("short_arith_never");
    assert_eq!(zero.token_ids, u32s(&never["decode"]["tokens"]));
    assert_eq!(zero.stats.hard_token_fraction, 0.0);
    assert_eq!(zero.stats.depth2_kv_entries, 0);
    // Budget 100 changes nothing.
    let (all, _) = run(
        &mut TahSession::new(model.clone()),
        &prompt,
        &with_budget(Some(100)),
    );
    assert_eq!(
        all.token_ids,
        u32s(&case_named("short_arith")["decode"]["tokens"])
    );
    // Budget 20: at most 20 % hard.
    let (some, _) = run(&mut TahSession::new(model), &prompt, &with_budget(Some(20)));
    assert!(some.stats.hard_token_fraction <= 0.2);
    assert!(some.stats.hard_token_fraction > 0.0);
    assert!(all.stats.hard_token_fraction > 0.2);
}

#[test]
fn sessions_share_one_model_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<TahModel>();
    assert_send_sync::<CancelHandle>();
    assert_send::<TahSession>();

    let model = shared("tiny-d3-a");
    let prompts = ["What is 2 + 2?", "½ of 12 is … ✓ 你好!"];
    let sequential: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            run(&mut TahSession::new(model.clone()), &user(p), &greedy(12))
                .0
                .token_ids
        })
        .collect();
    let parallel: Vec<Vec<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|p| {
                let model = model.clone();
                s.spawn(move || {
                    run(&mut TahSession::new(model), &user(p), &greedy(12))
                        .0
                        .token_ids
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(parallel, sequential);
}

#[test]
fn thinking_off_uses_the_templates_empty_think_block() {
    let model = shared("tiny-d2-a");
    let config = GenerationConfig {
        enable_thinking: false,
        ..greedy(4)
    };
    let prompt = user("Hi");
    let (result, _) = run(&mut TahSession::new(model.clone()), &prompt, &config);
    let rendered = model
        .chat_template()
        .unwrap()
        .render(&[ChatMessage::user("Hi")], true, false)
        .unwrap();
    assert!(rendered.ends_with("<think>\n\n</think>\n\n"));
    let ids = model.tokenizer().unwrap().encode(&rendered).unwrap();
    assert_eq!(result.stats.prefill_tokens as usize, ids.len());
    let (raw, _) = run(
        &mut TahSession::new(model),
        &Prompt::Raw(rendered),
        &greedy(4),
    );
    assert_eq!(raw.token_ids, result.token_ids);
}
