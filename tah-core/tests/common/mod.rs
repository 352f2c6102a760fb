//! Helpers shared by the integration tests: where the fixtures live.
#![allow(dead_code)] // each test binary uses a different subset

pub mod check;
pub mod gguf;
pub mod malformed;
pub mod tiny_gguf;

use std::path::PathBuf;

use tah_core::{
    CancelHandle, GenerationConfig, GenerationResult, KvPrecision, LoadOptions, Prompt, TahModel,
    TahSession,
};

/// The repository: where it was built, or `TAH_TEST_ROOT` (a copy of its
/// `tah-core/tests/fixtures` and `models` on another machine, e.g. a phone
/// running a cross-compiled test binary).
pub fn repo_root() -> PathBuf {
    std::env::var_os("TAH_TEST_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// The fixtures copied into the repository (byte-identical to `../shared/fixtures`).
pub fn fixture_dir() -> PathBuf {
    let dir = repo_root().join("tah-core/tests/fixtures");
    assert!(
        dir.join("qwen3-tokenizer/tokenizer.json").exists(),
        "fixtures missing at {}: they are part of the repository (tah-core/tests/fixtures)",
        dir.display()
    );
    dir
}

/// Deterministic "random" numbers for reproducible schedules and texts.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The real Qwen3 tokenizer.
pub fn tokenizer_path() -> PathBuf {
    fixture_dir().join("qwen3-tokenizer/tokenizer.json")
}

/// Every fixture checkpoint (a directory with an `expected.json`), sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("expected.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn fixture_model(name: &str) -> TahModel {
    let options = LoadOptions {
        tokenizer: Some(tokenizer_path()),
        // The reference computes in f32; the tolerances assume the same.
        kv_precision: KvPrecision::F32,
        ..Default::default()
    };
    TahModel::load(&fixture_dir().join(name), &options)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// The committed default model (`models/arith-tah.gguf`): a real GGUF file
/// with its tokenizer and chat template.
pub fn default_model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/arith-tah.gguf")
}

/// A whole generation, not cancelled, events ignored; panics on error.
pub fn generate(
    session: &mut TahSession,
    prompt: &Prompt,
    config: &GenerationConfig,
) -> GenerationResult {
    session
        .generate(prompt, config, &CancelHandle::new(), &mut |_| {})
        .unwrap()
}

/// Full-size load and soak runs (`TAH_SOAK=1`, `scripts/soak.sh`) instead of
/// the CI sizes.
pub fn soak() -> bool {
    std::env::var_os("TAH_SOAK").is_some_and(|v| v != "0")
}
