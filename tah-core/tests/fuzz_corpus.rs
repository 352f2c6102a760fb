//! Replays every committed fuzz seed and crash reproducer
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the fuzz
//! targets' own entry points, so `cargo test` covers them without building
//! the fuzzer; and checks that the seeds written by code are current
//! (`TAH_WRITE_FUZZ_SEEDS=1 cargo test -p tah-core --test fuzz_corpus`
//! rewrites them).

mod common;
#[path = "../../fuzz/entry_points.rs"]
mod entry_points;

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use common::tiny_gguf::tiny_gguf;
use entry_points::fuzz_dir;
use tah_core::{
    CancelHandle, ChatMessage, GenerationConfig, IterationMode, LoadOptions, Prompt, TahModel,
    TahSession,
};

fn files_in(dir: PathBuf) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_runs_clean() {
    for target in entry_points::TARGETS {
        let seeds = files_in(fuzz_dir().join("corpus").join(target));
        let reproducers = files_in(fuzz_dir().join("regressions").join(target));
        assert!(!seeds.is_empty(), "fuzz target {target} has no seed");
        for file in seeds.iter().chain(&reproducers) {
            let data = std::fs::read(file).unwrap();
            let started = std::time::Instant::now();
            entry_points::run(target, &data);
            println!(
                "{target:20} {:40} {:7} bytes  {:6.1} ms",
                file.file_name().unwrap().to_string_lossy(),
                data.len(),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

/// A small safetensors file, written by hand so its bytes are fixed: one
/// tensor of each float type the loader reads, and one it refuses.
fn small_safetensors() -> Vec<u8> {
    let header = serde_json::json!({
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
        "c": {"dtype": "F16", "shape": [1, 2], "data_offsets": [22, 26]},
        "d": {"dtype": "I64", "shape": [1], "data_offsets": [26, 34]},
    })
    .to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for v in [1.0f32, -2.0, 0.5, 3.0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1.0f32, 2.0, -1.0] {
        out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
    }
    for v in [0.25f32, 4.0] {
        out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
    }
    out.extend_from_slice(&7i64.to_le_bytes());
    out
}

/// The seeds made by code: (target, file name, bytes).
fn generated_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        (
            "gguf_model",
            "tiny-tah-f32.gguf",
            tiny_gguf(true, GgmlDType::F32),
        ),
        (
            "gguf_model",
            "tiny-tah-q8_0.gguf",
            tiny_gguf(true, GgmlDType::Q8_0),
        ),
        (
            "gguf_model",
            "tiny-plain-q4_0.gguf",
            tiny_gguf(false, GgmlDType::Q4_0),
        ),
        (
            "safetensors_weights",
            "small.safetensors",
            small_safetensors(),
        ),
    ]
}

#[test]
fn generated_seeds_are_current() {
    let write = std::env::var_os("TAH_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in generated_seeds() {
        let path = fuzz_dir().join("corpus").join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} is stale: rerun with TAH_WRITE_FUZZ_SEEDS=1",
            path.display()
        );
    }
}

/// The GGUF seeds are valid models that load and generate, so the fuzzer
/// starts from inputs that reach the deepest code (LoRA, decider, sampling).
#[test]
fn gguf_seeds_are_working_models() {
    for (target, name, bytes) in generated_seeds() {
        if target != "gguf_model" {
            continue;
        }
        let path = std::env::temp_dir().join(format!("tah-seed-{}-{name}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let loaded = TahModel::load(&path, &LoadOptions::default());
        std::fs::remove_file(&path).unwrap();
        let model = Arc::new(loaded.unwrap_or_else(|e| panic!("{name}: {e}")));
        assert_eq!(model.max_iter(), if name.contains("tah") { 2 } else { 1 });
        let mut session = TahSession::new(model);
        let config = GenerationConfig {
            max_new_tokens: 8,
            mode: IterationMode::Always,
            ..GenerationConfig::greedy()
        };
        let prompt = Prompt::Chat(vec![ChatMessage::user("what is 1 + 2 ?")]);
        let result = session
            .generate(&prompt, &config, &CancelHandle::new(), &mut |_| {})
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!result.token_ids.is_empty(), "{name}: no token");
        println!("{name}: {} bytes, generated {:?}", bytes.len(), result.text);
    }
}

/// The session-state seed is a saved state of the tiny seed model (with
/// depth-2 entries). Its K/V values come from the CPU's float kernels, so it
/// is checked by restoring it rather than byte for byte;
/// `TAH_WRITE_FUZZ_SEEDS=1` rewrites it.
#[test]
fn the_session_state_seed_restores_into_its_model() {
    let path = fuzz_dir().join("corpus/session_state/tiny-tah.tahstate");
    let model = entry_points::state_model();
    if std::env::var_os("TAH_WRITE_FUZZ_SEEDS").is_some() {
        let mut session = TahSession::new(Arc::clone(&model));
        let config = GenerationConfig {
            max_new_tokens: 6,
            mode: IterationMode::Always,
            ..GenerationConfig::greedy()
        };
        session
            .chat(
                "what is 1 + 2 ?",
                &config,
                &CancelHandle::new(),
                &mut |_| {},
            )
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        session.save_state(&path).unwrap();
    }
    let restored = TahSession::restore(model, &path)
        .unwrap_or_else(|e| panic!("{e}: rerun with TAH_WRITE_FUZZ_SEEDS=1"));
    assert!(restored.cached_tokens() > 0 && restored.history().len() == 2);
}
