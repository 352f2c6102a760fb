//! Giving memory back on the fixtures and the default model: a trim that
//! keeps the KV entries changes no token; one that drops them keeps the
//! system prompt and then answers like a fresh session; the mapped weights'
//! pages leave the resident set and read back unchanged.

mod common;

use std::sync::Arc;

use common::{default_model_path, fixture_model, generate};
use tah_core::{memory, ChatMessage, GenerationConfig, LoadOptions, Prompt, TahModel, TahSession};

fn conversation(turns: &[&str]) -> Prompt {
    let mut messages = vec![ChatMessage::system("You are a careful arithmetic tutor.")];
    for (i, text) in turns.iter().enumerate() {
        messages.push(if i % 2 == 0 {
            ChatMessage::user(*text)
        } else {
            ChatMessage::assistant(*text)
        });
    }
    Prompt::Chat(messages)
}

fn check_trims(model: Arc<TahModel>, label: &str) {
    let config = GenerationConfig {
        max_new_tokens: 16,
        ..GenerationConfig::greedy()
    };
    let first = conversation(&["What is 347 + 589?"]);
    let (mut trimmed, mut untouched) = (
        TahSession::new(Arc::clone(&model)),
        TahSession::new(Arc::clone(&model)),
    );
    let answer = generate(&mut trimmed, &first, &config);
    generate(&mut untouched, &first, &config);
    let next = conversation(&["What is 347 + 589?", &answer.text, "And 12 + 30?"]);

    // Keeping the entries: only unused room, free heap and weight pages go.
    let cached = trimmed.cached_tokens();
    trimmed.trim_cache(false);
    memory::release_free_heap();
    let weights = model.release_weight_pages();
    assert_eq!(trimmed.cached_tokens(), cached, "{label}");
    let after = generate(&mut trimmed, &next, &config);
    let expected = generate(&mut untouched, &next, &config);
    assert_eq!(after.token_ids, expected.token_ids, "{label}");
    assert_eq!(
        after.stats.reused_prefix_tokens, expected.stats.reused_prefix_tokens,
        "{label}"
    );

    // Dropping them: the system prompt stays, the rest is recomputed.
    let kv_bytes = after.stats.peak_kv_bytes as usize;
    let freed = trimmed.trim_cache(true);
    assert!(
        freed >= kv_bytes / 2,
        "{label}: freed {freed} of {kv_bytes}"
    );
    let kept = trimmed.cached_tokens();
    assert!(
        kept > 0 && kept < cached,
        "{label}: kept {kept} of {cached}"
    );
    let third = conversation(&[
        "What is 347 + 589?",
        &answer.text,
        "And 12 + 30?",
        &after.text,
        "And 5 + 5?",
    ]);
    let again = generate(&mut trimmed, &third, &config);
    let fresh = generate(&mut TahSession::new(Arc::clone(&model)), &third, &config);
    assert_eq!(again.token_ids, fresh.token_ids, "{label}");
    assert_eq!(again.stats.reused_prefix_tokens as usize, kept, "{label}");
    println!(
        "{label}: {weights} weight bytes released; KV {freed} bytes freed, {kept} system-prompt tokens kept"
    );

    // Without a system message nothing is kept.
    let mut plain = TahSession::new(model);
    generate(
        &mut plain,
        &Prompt::Chat(vec![ChatMessage::user("Hi")]),
        &config,
    );
    plain.trim_cache(true);
    assert_eq!(plain.cached_tokens(), 0, "{label}");
}

#[test]
fn trims_change_no_token() {
    let gguf = Arc::new(TahModel::load(&default_model_path(), &LoadOptions::default()).unwrap());
    check_trims(gguf, "arith-tah.gguf");
    check_trims(Arc::new(fixture_model("tiny-d2-a")), "tiny-d2-a");
}
