//! What each fuzz target runs on its input. Shared with the regression test
//! `tah-core/tests/fuzz_corpus.rs` (which includes this file), so every
//! committed seed and crash reproducer is replayed by `cargo test` through
//! exactly the code the fuzzer ran, without building the fuzzer.
//!
//! An entry point may return early on an error (that is the expected outcome
//! for most inputs); it panics only on a real bug: a panic inside tah-core,
//! or a broken invariant asserted here.
#![allow(dead_code)] // each fuzz binary uses one entry point

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tah_core::chat_template::{ChatMessage, ChatTemplate};
use tah_core::config::{LoraConfig, Qwen3Config, TahConfig};
use tah_core::generation::GenerationConfig;
use tah_core::sampling::{Sampler, SamplingParams};
use tah_core::tokenizer::{StreamDecoder, TahTokenizer};
use tah_core::torch_pickle::TorchCheckpoint;
use tah_core::weights::{SafetensorsSource, WeightSource};
use tah_core::{CancelHandle, IterationMode, LoadOptions, Prompt, TahModel, TahSession};

/// Every target, by its `cargo fuzz` name.
pub const TARGETS: [&str; 7] = [
    "torch_pickle",
    "model_config",
    "safetensors_weights",
    "chat_tokenizer",
    "sampling_config",
    "gguf_model",
    "session_state",
];

/// Runs `target`'s entry point on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "torch_pickle" => torch_pickle(data),
        "model_config" => model_config(data),
        "safetensors_weights" => safetensors_weights(data),
        "chat_tokenizer" => chat_tokenizer(data),
        "sampling_config" => sampling_config(data),
        "gguf_model" => gguf_model(data),
        "session_state" => session_state(data),
        _ => panic!("unknown fuzz target `{target}`"),
    }
}

/// The repository's fixtures, from the fuzz crate or from tah-core's tests.
fn fixture_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("tests/fixtures"),
        here.join("../tah-core/tests/fixtures"),
    ]
    .into_iter()
    .find(|d| d.is_dir())
    .expect("tah-core/tests/fixtures")
}

/// The fuzz crate's directory, from itself or from tah-core's tests.
pub fn fuzz_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [here.to_path_buf(), here.join("../fuzz")]
        .into_iter()
        .find(|d| d.join("entry_points.rs").is_file())
        .expect("the fuzz directory")
}

/// The model the session-state seeds were saved with: the tiny TaH seed of
/// `gguf_model` (loaded once per process).
pub fn state_model() -> Arc<TahModel> {
    static MODEL: OnceLock<Arc<TahModel>> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let path = fuzz_dir().join("corpus/gguf_model/tiny-tah-f32.gguf");
        Arc::new(TahModel::load(&path, &LoadOptions::default()).expect("the tiny seed model"))
    });
    Arc::clone(model)
}

/// A scratch file for loaders that take a path, unique per process and
/// thread (the regression test replays in parallel), removed on drop.
struct ScratchFile(PathBuf);

impl ScratchFile {
    fn with(data: &[u8], ext: &str) -> Option<Self> {
        let name = format!(
            "tah-fuzz-{}-{:?}.{ext}",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], "");
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, data).ok()?;
        Some(ScratchFile(path))
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `iter_decider.bin` reader (zip + strict unpickler).
pub fn torch_pickle(data: &[u8]) {
    let _ = TorchCheckpoint::from_bytes(data, Path::new("fuzz.bin"));
}

/// `config.json`, `tah_config.json` and `lora/adapter_config.json` parsing
/// and validation.
pub fn model_config(data: &[u8]) {
    let path = Path::new("fuzz.json");
    if let Ok(cfg) = serde_json::from_slice::<Qwen3Config>(data) {
        let _ = cfg.validate(path);
    }
    if let Ok(tah) = serde_json::from_slice::<TahConfig>(data) {
        let qwen = Qwen3Config {
            vocab_size: 1000,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rope_theta: 1e6,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 4096,
            tie_word_embeddings: true,
            eos_token_id: None,
        };
        let _ = tah.validate(&qwen, path);
    }
    if let Ok(lora) = serde_json::from_slice::<LoraConfig>(data) {
        let _ = lora.validate(path);
        let _ = lora.targets(path);
    }
}

/// The memory-mapped safetensors source: open, list, and read every tensor
/// at its declared shape and at wrong ones.
pub fn safetensors_weights(data: &[u8]) {
    let Some(file) = ScratchFile::with(data, "safetensors") else {
        return;
    };
    if let Ok(source) = SafetensorsSource::open(&file.0) {
        for name in source.names() {
            let declared = source.tensor(&name, &[]).err().and_then(|e| match e {
                tah_core::Error::ShapeMismatch { actual, .. } => Some(actual),
                _ => None,
            });
            for shape in [&[][..], &[1, 1][..], &[2][..]]
                .into_iter()
                .chain(declared.as_deref())
            {
                let _ = source.tensor(&name, shape);
            }
        }
    }
}

/// The real Qwen3 tokenizer and chat template (loaded once per process).
fn qwen3_assets() -> &'static (TahTokenizer, ChatTemplate) {
    static ASSETS: OnceLock<(TahTokenizer, ChatTemplate)> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let dir = fixture_dir().join("qwen3-tokenizer");
        let tokenizer = TahTokenizer::from_file(&dir.join("tokenizer.json")).expect("tokenizer");
        let template = ChatTemplate::from_tokenizer_config(&dir.join("tokenizer_config.json"))
            .expect("chat template");
        (tokenizer, template)
    })
}

/// Arbitrary bytes as a user message (invalid UTF-8 repaired to U+FFFD, as a
/// host platform's string conversion does): chat template render, encode,
/// decode and streaming decode. Then the bytes as token ids (known and
/// unknown) through the streaming decoder, whose output must equal `decode`.
pub fn chat_tokenizer(data: &[u8]) {
    let (tokenizer, template) = qwen3_assets();
    let text = String::from_utf8_lossy(data);
    let messages = [ChatMessage::system("Be brief."), ChatMessage::user(text)];
    if let Ok(prompt) = template.render(&messages, true, data.len().is_multiple_of(2)) {
        if let Ok(ids) = tokenizer.encode(&prompt) {
            check_stream(tokenizer, &ids);
        }
    }
    // Ids spread over the vocabulary and a little past it.
    let span = tokenizer.max_token_id() as u64 + 64;
    let ids: Vec<u32> = data
        .chunks(3)
        .map(|c| {
            let raw = c.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            (raw * 2_654_435_761 % span) as u32
        })
        .collect();
    let mut stream = StreamDecoder::new(tokenizer);
    let (mut streamed, mut accepted) = (String::new(), Vec::new());
    for &id in &ids {
        // An unknown id is refused and leaves the decoder as it was.
        if let Ok(text) = stream.push(id) {
            streamed.push_str(&text);
            accepted.push(id);
        }
    }
    streamed.push_str(&stream.finish().expect("finish"));
    assert_eq!(streamed, tokenizer.decode(&accepted).expect("decode"));
}

fn check_stream(tokenizer: &TahTokenizer, ids: &[u32]) {
    let whole = tokenizer.decode(ids).expect("ids from encode decode");
    let mut stream = StreamDecoder::new(tokenizer);
    let mut streamed = String::new();
    for &id in ids {
        streamed.push_str(&stream.push(id).expect("known id"));
    }
    streamed.push_str(&stream.finish().expect("finish"));
    assert_eq!(streamed, whole, "streaming decode must equal decode");
}

/// Generation settings from arbitrary JSON (up to a NUL byte): validation,
/// then, when valid, sampling from a logits row made of the remaining bytes.
pub fn sampling_config(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(config) = serde_json::from_slice::<GenerationConfig>(&data[..split]) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let params = SamplingParams {
        temperature: config.temperature,
        top_k: config.top_k,
        top_p: config.top_p,
        min_p: config.min_p,
        repetition_penalty: config.repetition_penalty,
    };
    let mut logits: Vec<f32> = data[split..]
        .iter()
        .map(|&b| b as f32 / 16.0 - 8.0)
        .collect();
    if logits.is_empty() {
        return;
    }
    let vocab = logits.len();
    let mut sampler = Sampler::new(params, config.seed.or(Some(1)), vocab, &[0]);
    if let Some(id) = sampler.sample(&mut logits) {
        assert!((id as usize) < vocab, "sampled id out of range");
    }
}

/// A whole model file: the strict GGUF reader, the full load (metadata,
/// weights, LoRA, decider, embedded tokenizer and chat template), then a
/// short generation in decider and always modes, so weights and settings
/// that load must also run.
pub fn gguf_model(data: &[u8]) {
    let Some(file) = ScratchFile::with(data, "gguf") else {
        return;
    };
    let Ok(model) = TahModel::load(&file.0, &LoadOptions::default()) else {
        return;
    };
    let mut session = TahSession::new(Arc::new(model));
    let chat = Prompt::Chat(vec![ChatMessage::user("what is 1 + 2 ?")]);
    for (prompt, mode) in [
        (chat, IterationMode::Decider),
        (Prompt::Raw("a b c".into()), IterationMode::Always),
    ] {
        let config = GenerationConfig {
            max_new_tokens: 3,
            mode,
            ..GenerationConfig::greedy()
        };
        let _ = session.generate(&prompt, &config, &CancelHandle::new(), &mut |_| {});
    }
}

/// A saved session state for the tiny seed model: restored as it is, then
/// with every section's checksum recomputed so that the contents (settings,
/// counts, positions, K/V values) are checked rather than the checksums; a
/// state that restores must then continue a conversation (an error is fine,
/// a panic is not).
pub fn session_state(data: &[u8]) {
    for bytes in [data.to_vec(), with_valid_checksums(data)] {
        let Some(file) = ScratchFile::with(&bytes, "tahstate") else {
            return;
        };
        let Ok(mut session) = TahSession::restore(state_model(), &file.0) else {
            continue;
        };
        let mut messages = session.history().to_vec();
        messages.push(ChatMessage::user("and 2 + 2 ?"));
        let config = GenerationConfig {
            max_new_tokens: 2,
            ..GenerationConfig::greedy()
        };
        let _ = session.generate(
            &Prompt::Chat(messages),
            &config,
            &CancelHandle::new(),
            &mut |_| {},
        );
    }
}

/// `data` with the CRC-32 of every section that fits recomputed (the layout
/// of `tah-core/src/session_state.rs`: a 12-byte header, then sections of
/// `kind: u32, length: u64, payload, crc: u32`).
fn with_valid_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 12;
    while at + 12 <= out.len() {
        let len = u64::from_le_bytes(out[at + 4..at + 12].try_into().unwrap_or_default());
        // `end + 4` within the input (a huge length must not wrap around).
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|l| (at + 12).checked_add(l))
            .filter(|end| end.checked_add(4).is_some_and(|e| e <= out.len()))
        else {
            break;
        };
        let crc = crc32(&out[at..end]);
        out[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        at = end + 4;
    }
    out
}

/// CRC-32 (IEEE, as `crc32fast` computes it), bit by bit: fuzz inputs are small.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
