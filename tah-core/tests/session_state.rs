//! Saved session states: restoring and continuing gives exactly what the
//! uninterrupted session gives (greedy and seeded sampling, every KV
//! precision, two- and three-depth models, GGUF and directory models); a
//! missing, truncated, corrupted, foreign-model or future-version file is a
//! typed error, and the session involved goes on.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::gguf::TempFile;
use common::{default_model_path, fixture_dir, fixture_model, tokenizer_path};
use tah_core::{
    CancelHandle, ChatMessage, Error, GenerationConfig, GenerationResult, IterationMode,
    KvPrecision, LoadOptions, StateProblem, TahModel, TahSession,
};

fn chat(session: &mut TahSession, text: &str, config: &GenerationConfig) -> GenerationResult {
    session
        .chat(text, config, &CancelHandle::new(), &mut |_| {})
        .unwrap()
}

fn configs() -> Vec<(&'static str, GenerationConfig)> {
    let greedy = GenerationConfig {
        max_new_tokens: 20,
        ..GenerationConfig::greedy()
    };
    vec![
        ("greedy", greedy.clone()),
        (
            "always",
            GenerationConfig {
                mode: IterationMode::Always,
                ..greedy.clone()
            },
        ),
        (
            "seeded",
            GenerationConfig {
                seed: Some(11),
                max_new_tokens: 20,
                ..GenerationConfig::default()
            },
        ),
    ]
}

fn with_precision(path: &Path, kv_precision: KvPrecision) -> Arc<TahModel> {
    let options = LoadOptions {
        tokenizer: path.is_dir().then(tokenizer_path),
        kv_precision,
        ..Default::default()
    };
    Arc::new(TahModel::load(path, &options).unwrap())
}

/// One turn, a save, a second turn; then the saved state restored into a
/// new session whose second turn must be the same, token for token.
fn check_restore_continues(model: &Arc<TahModel>, label: &str) {
    for (name, config) in configs() {
        let label = format!("{label} {name}");
        let file = TempFile::new("state");
        let mut original = TahSession::new(Arc::clone(model));
        original.set_history(vec![ChatMessage::system("You add numbers.")]);
        chat(&mut original, "What is 347 + 589?", &config);
        let bytes = original.save_state(&file.0).unwrap();
        assert_eq!(bytes, std::fs::metadata(&file.0).unwrap().len(), "{label}");
        let history = original.history().to_vec();
        let cached = original.cached_token_ids().to_vec();
        let uninterrupted = chat(&mut original, "And 12 + 30?", &config);

        let mut restored = TahSession::restore(Arc::clone(model), &file.0).unwrap();
        assert_eq!(restored.history(), history.as_slice(), "{label}");
        assert_eq!(restored.cached_token_ids(), cached.as_slice(), "{label}");
        let continued = chat(&mut restored, "And 12 + 30?", &config);
        assert_eq!(continued.token_ids, uninterrupted.token_ids, "{label}");
        assert_eq!(continued.text, uninterrupted.text, "{label}");
        // The restored entries were used, not recomputed.
        let stats = (&continued.stats, &uninterrupted.stats);
        assert_eq!(
            stats.0.reused_prefix_tokens, stats.1.reused_prefix_tokens,
            "{label}"
        );
        assert!(stats.0.reused_prefix_tokens > 0, "{label}");
        assert_eq!(
            stats.0.depth2_kv_entries, stats.1.depth2_kv_entries,
            "{label}"
        );
        assert_eq!(restored.history(), original.history(), "{label}");
        println!(
            "{label}: {} bytes for {} tokens ({} at depth 2 after the next turn)",
            bytes,
            cached.len(),
            stats.0.depth2_kv_entries
        );
    }
}

#[test]
fn restored_sessions_continue_like_the_uninterrupted_ones() {
    for precision in [KvPrecision::F16, KvPrecision::Q8, KvPrecision::F32] {
        let model = with_precision(&default_model_path(), precision);
        check_restore_continues(&model, &format!("arith-tah.gguf {precision:?}"));
    }
    for name in ["tiny-d2-a", "tiny-d3-a"] {
        check_restore_continues(&Arc::new(fixture_model(name)), name);
    }
}

fn state_problem(result: tah_core::Result<TahSession>) -> StateProblem {
    match result {
        Err(Error::SessionState { problem, .. }) => problem,
        Err(e) => panic!("expected a session-state error, got {e}"),
        Ok(_) => panic!("restored"),
    }
}

/// A session with a saved state and the state's bytes.
fn saved(model: &Arc<TahModel>) -> (TahSession, TempFile, Vec<u8>) {
    let file = TempFile::new("saved");
    let mut session = TahSession::new(Arc::clone(model));
    let config = GenerationConfig {
        max_new_tokens: 12,
        mode: IterationMode::Always,
        ..GenerationConfig::greedy()
    };
    chat(&mut session, "What is 347 + 589?", &config);
    session.save_state(&file.0).unwrap();
    let bytes = std::fs::read(&file.0).unwrap();
    (session, file, bytes)
}

#[test]
fn damaged_files_are_typed_errors() {
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let (_session, _file, bytes) = saved(&model);
    let damaged = TempFile::new("damaged");
    let restore = |content: &[u8]| {
        std::fs::write(&damaged.0, content).unwrap();
        TahSession::restore(Arc::clone(&model), &damaged.0)
    };

    // Truncated anywhere, including at every section boundary.
    let mut truncations = vec![
        0,
        1,
        8,
        11,
        12,
        20,
        27,
        28,
        100,
        bytes.len() / 2,
        bytes.len() - 4,
        bytes.len() - 1,
    ];
    truncations.extend((0..bytes.len()).step_by(997));
    for len in truncations {
        let problem = state_problem(restore(&bytes[..len]));
        assert!(
            matches!(problem, StateProblem::Truncated(_)),
            "{len}: {problem}"
        );
    }
    // Any changed byte: the magic, the version, or a checksum that fails.
    let mut flips = 0;
    for at in (0..200.min(bytes.len())).chain((200..bytes.len()).step_by(61)) {
        let mut corrupt = bytes.clone();
        corrupt[at] ^= 0x10;
        let problem = state_problem(restore(&corrupt));
        let expected = match at {
            0..8 => matches!(problem, StateProblem::NotAStateFile),
            8..12 => matches!(problem, StateProblem::UnsupportedVersion { .. }),
            // A flipped length reads as a truncation or a checksum failure.
            _ => matches!(
                problem,
                StateProblem::Corrupted(_) | StateProblem::Truncated(_)
            ),
        };
        assert!(expected, "byte {at}: {problem}");
        flips += 1;
    }
    // A file of a newer format.
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    let problem = state_problem(restore(&newer));
    assert_eq!(
        problem,
        StateProblem::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    // Bytes after the end marker.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        state_problem(restore(&longer)),
        StateProblem::Malformed(_)
    ));
    // Not a state file at all, and no file.
    let gguf = std::fs::read(default_model_path()).unwrap();
    assert_eq!(state_problem(restore(&gguf)), StateProblem::NotAStateFile);
    assert_eq!(
        state_problem(restore(b"hello")),
        StateProblem::NotAStateFile
    );
    let missing = TahSession::restore(Arc::clone(&model), Path::new("/nonexistent/state"));
    assert!(matches!(state_problem(missing), StateProblem::Io(_)));
    println!(
        "{} bytes: {flips} single-byte corruptions and every truncation refused",
        bytes.len()
    );
}

#[test]
fn states_of_other_models_or_settings_are_refused() {
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let (_session, file, _) = saved(&model);
    let into = |other: TahModel| state_problem(TahSession::restore(Arc::new(other), &file.0));
    // Another model (another file, or the same shapes with other weights).
    let problem = into(fixture_model("tiny-d3-a"));
    assert!(
        matches!(problem, StateProblem::ForeignModel(_)),
        "{problem}"
    );
    let problem = into(TahModel::load(&default_model_path(), &LoadOptions::default()).unwrap());
    assert!(
        matches!(problem, StateProblem::ForeignModel(_)),
        "{problem}"
    );
    // The same model loaded with another KV precision, or too short a context.
    let load = |options: LoadOptions| {
        TahModel::load(
            &fixture_dir().join("tiny-d2-a"),
            &LoadOptions {
                tokenizer: Some(tokenizer_path()),
                ..options
            },
        )
        .unwrap()
    };
    let problem = into(load(LoadOptions {
        kv_precision: KvPrecision::Q8,
        ..Default::default()
    }));
    assert!(
        matches!(problem, StateProblem::SettingsMismatch(_)),
        "{problem}"
    );
    let problem = into(load(LoadOptions {
        kv_precision: KvPrecision::F32,
        context_length: Some(8),
        ..Default::default()
    }));
    assert!(
        matches!(problem, StateProblem::SettingsMismatch(_)),
        "{problem}"
    );
    // The same model loaded again restores fine.
    TahSession::restore(Arc::new(fixture_model("tiny-d2-a")), &file.0).unwrap();
}

#[test]
fn failed_saves_and_restores_leave_the_session_and_the_file_as_they_were() {
    let model = Arc::new(fixture_model("tiny-d2-a"));
    let (mut session, file, bytes) = saved(&model);
    let config = GenerationConfig {
        max_new_tokens: 8,
        ..GenerationConfig::greedy()
    };
    let mut twin = TahSession::restore(Arc::clone(&model), &file.0).unwrap();
    // A save that cannot be written: a missing directory, a directory.
    for target in [
        Path::new("/nonexistent/dir/state"),
        std::env::temp_dir().as_path(),
    ] {
        match session.save_state(target) {
            Err(Error::SessionState {
                problem: StateProblem::Io(reason),
                ..
            }) => println!("{reason}"),
            other => panic!("{target:?}: {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&file.0).unwrap(), bytes);
    // A damaged file does not affect a session: both go on alike.
    std::fs::write(&file.0, &bytes[..bytes.len() / 3]).unwrap();
    assert!(TahSession::restore(Arc::clone(&model), &file.0).is_err());
    let a = chat(&mut session, "And 12 + 30?", &config);
    let b = chat(&mut twin, "And 12 + 30?", &config);
    assert_eq!(a.token_ids, b.token_ids);
    // Saving again replaces the damaged file with a good one.
    session.save_state(&file.0).unwrap();
    let restored = TahSession::restore(Arc::clone(&model), &file.0).unwrap();
    assert_eq!(restored.cached_token_ids(), session.cached_token_ids());
}
