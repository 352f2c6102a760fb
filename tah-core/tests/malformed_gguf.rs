//! A corpus of malformed GGUF model files, each made from a valid file by one
//! change (mostly the tiny model of `common/tiny_gguf.rs`, written by the real
//! writer): every one must give a specific typed error, never a panic and
//! never a huge allocation. Prints the table input -> error.

mod common;

use candle_core::quantized::GgmlDType;
use common::gguf::{GgufParts, TempFile};
use common::malformed::{check, check_error, Expect};
use common::tiny_gguf::{tiny_gguf, tokenizer_json, WORDS};
use tah_core::gguf::{GgufFile, Value};
use tah_core::{
    CancelHandle, GenerationConfig, IterationMode, LoadOptions, Prompt, TahModel, TahSession,
};

struct Case {
    label: String,
    bytes: Vec<u8>,
    options: LoadOptions,
    expect: Expect,
}

fn case(label: impl Into<String>, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        label: label.into(),
        bytes,
        options: LoadOptions::default(),
        expect,
    }
}

fn tiny() -> Vec<u8> {
    tiny_gguf(true, GgmlDType::Q8_0)
}

/// The tiny model with one edit of its parts, written back by the writer.
fn edited(base: &[u8], edit: impl FnOnce(&mut GgufParts)) -> Vec<u8> {
    let mut parts = GgufParts::from_bytes(base);
    edit(&mut parts);
    parts.to_bytes()
}

fn with_key(key: &'static str, value: Value) -> Vec<u8> {
    edited(&tiny(), |p| p.set(key, value))
}

/// Where `string` (as GGUF writes it: u64 length, bytes) ends in `bytes`:
/// for a key, its value type follows; for a tensor name, its rank.
fn after_string(bytes: &[u8], string: &str) -> usize {
    let mut needle = (string.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(string.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("`{string}` not in the header"));
    at + needle.len()
}

/// The tiny file with `patch` written at `offset(bytes)`.
fn patched(offset: impl Fn(&[u8]) -> usize, patch: &[u8]) -> Vec<u8> {
    let mut bytes = tiny();
    let at = offset(&bytes);
    bytes[at..at + patch.len()].copy_from_slice(patch);
    bytes
}

/// A rank-2 tensor's header entry: rank, dims, type, offset.
const Q_PROJ: &str = "blk.0.attn_q.weight";
fn dims_at(bytes: &[u8]) -> usize {
    after_string(bytes, Q_PROJ) + 4
}
fn type_at(bytes: &[u8]) -> usize {
    dims_at(bytes) + 16
}
fn offset_at(bytes: &[u8]) -> usize {
    type_at(bytes) + 4
}

/// f32 NaN / inf in the first value of `tensor` (an f32 tensor).
fn poisoned(base: &[u8], tensor: &str, value: f32) -> Vec<u8> {
    edited(base, |p| {
        p.tensor_mut(tensor).1[..4].copy_from_slice(&value.to_le_bytes())
    })
}

/// The f32 tiny model with the first projection's data one byte off its
/// 4-byte boundary (still inside the file).
fn misaligned() -> Vec<u8> {
    let mut bytes = tiny_gguf(true, GgmlDType::F32);
    let at = offset_at(&bytes);
    let offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at..at + 8].copy_from_slice(&(offset + 1).to_le_bytes());
    bytes
}

fn cases() -> Vec<Case> {
    let tiny_bytes = tiny();
    let data_start = {
        let file = TempFile::with("offsets", &tiny_bytes);
        let parsed = GgufFile::open(&file.0).unwrap();
        let starts = parsed
            .tensor_names()
            .map(|n| parsed.tensor_info(n).unwrap().offset);
        starts.min().unwrap()
    };
    let len = tiny_bytes.len();
    let mut cases = vec![
        // The container.
        case(
            "bad magic",
            patched(|_| 0, b"GGUX"),
            Expect::Gguf("BadMagic"),
        ),
        case(
            "GGUF version 1",
            patched(|_| 4, &1u32.to_le_bytes()),
            Expect::Gguf("UnsupportedVersion(1)"),
        ),
        case(
            "GGUF version 99",
            patched(|_| 4, &99u32.to_le_bytes()),
            Expect::Gguf("UnsupportedVersion(99)"),
        ),
        case(
            "tensor count 2^64-1",
            patched(|_| 8, &u64::MAX.to_le_bytes()),
            Expect::Gguf("TooLarge"),
        ),
        case(
            "metadata count 2^40",
            patched(|_| 16, &(1u64 << 40).to_le_bytes()),
            Expect::Gguf("TooLarge"),
        ),
        case(
            "first key length 2^63",
            patched(|_| 24, &(1u64 << 63).to_le_bytes()),
            Expect::Gguf("TooLarge"),
        ),
        case(
            "unknown metadata value type",
            patched(|b| after_string(b, "general.architecture"), &[77, 0, 0, 0]),
            Expect::Gguf("Metadata { key: \"general.architecture\""),
        ),
        case(
            "string value not UTF-8",
            patched(|b| after_string(b, "qwen3") - 1, &[0xff]),
            Expect::Gguf("Metadata"),
        ),
        case(
            "bool byte 2",
            patched(|b| after_string(b, "tah.decider.normalize_input") + 4, &[2]),
            Expect::Gguf("Metadata { key: \"tah.decider.normalize_input\""),
        ),
        case(
            "array nested too deeply",
            // The decider's layer list claims to hold arrays of arrays.
            patched(
                |b| after_string(b, "tah.decider.hidden_states_layer_nums") + 4,
                &9u32.to_le_bytes(),
            ),
            Expect::Gguf("Metadata|TooLarge|Truncated"),
        ),
        case(
            "alignment 3",
            with_key("general.alignment", Value::U32(3)),
            Expect::Gguf("Metadata { key: \"general.alignment\""),
        ),
        case(
            "duplicate key",
            edited(&tiny_bytes, |p| {
                p.metadata.push(("qwen3.block_count".into(), Value::U32(2)))
            }),
            Expect::Gguf("Metadata { key: \"qwen3.block_count\""),
        ),
        // Tensor index entries.
        case(
            "tensor rank 5",
            patched(|b| after_string(b, Q_PROJ), &5u32.to_le_bytes()),
            Expect::Gguf("TooLarge"),
        ),
        case(
            "tensor dimension 0",
            patched(dims_at, &0u64.to_le_bytes()),
            Expect::Gguf("TooLarge"),
        ),
        case(
            "tensor dimensions overflow",
            patched(
                dims_at,
                &[u64::MAX.to_le_bytes(), u64::MAX.to_le_bytes()].concat(),
            ),
            Expect::Gguf("TooLarge"),
        ),
        case(
            "tensor row not whole blocks",
            patched(dims_at, &16u64.to_le_bytes()),
            Expect::Gguf("Metadata { key: \"blk.0.attn_q.weight\""),
        ),
        case(
            "tensor type 99",
            patched(type_at, &99u32.to_le_bytes()),
            Expect::Gguf("UnsupportedType"),
        ),
        case(
            "tensor offset past the end",
            patched(offset_at, &(1u64 << 40).to_le_bytes()),
            Expect::Gguf("TensorOutOfBounds"),
        ),
        case(
            "tensor offset 2^64-1",
            patched(offset_at, &u64::MAX.to_le_bytes()),
            Expect::Gguf("TensorOutOfBounds"),
        ),
        case(
            "misaligned f32 tensor",
            misaligned(),
            Expect::Gguf("Misaligned"),
        ),
        case(
            "duplicate tensor",
            edited(&tiny_bytes, |p| {
                let first = p.tensors[0].clone();
                p.tensors.push(first);
            }),
            Expect::Gguf("Metadata"),
        ),
        // What the metadata says.
        case(
            "architecture llama",
            with_key("general.architecture", Value::String("llama".into())),
            Expect::Gguf("Metadata { key: \"general.architecture\""),
        ),
        case(
            "no block count",
            edited(&tiny_bytes, |p| p.remove_keys(|k| k == "qwen3.block_count")),
            Expect::Gguf("Metadata { key: \"qwen3.block_count\""),
        ),
        case(
            "block count a string",
            with_key("qwen3.block_count", Value::String("2".into())),
            Expect::Gguf("Metadata { key: \"qwen3.block_count\""),
        ),
        case(
            "absurd block count",
            with_key("qwen3.block_count", Value::U64(u64::MAX)),
            Expect::Config("num_hidden_layers"),
        ),
        case(
            "more blocks than tensors",
            with_key("qwen3.block_count", Value::U32(3)),
            Expect::Missing("blk.2"),
        ),
        case(
            "absurd context length",
            with_key("qwen3.context_length", Value::U64(1 << 40)),
            Expect::Config("max_position_embeddings"),
        ),
        case(
            "kv heads not dividing heads",
            with_key("qwen3.attention.head_count_kv", Value::U32(3)),
            Expect::Config("num_key_value_heads"),
        ),
        case(
            "negative RMS epsilon",
            with_key("qwen3.attention.layer_norm_rms_epsilon", Value::F32(-1.0)),
            Expect::Config("rms_norm_eps"),
        ),
        case(
            "embedding length disagrees with tensors",
            with_key("qwen3.embedding_length", Value::U32(64)),
            Expect::Config("hidden_states_size"),
        ),
        case(
            "feed-forward length disagrees with tensors",
            with_key("qwen3.feed_forward_length", Value::U32(96)),
            Expect::Shape("ffn_gate"),
        ),
        case(
            "TaH format version 2",
            with_key("tah.format_version", Value::U32(2)),
            Expect::Gguf("UnsupportedTahVersion"),
        ),
        case(
            "max_iter 0",
            with_key("tah.max_iter", Value::U32(0)),
            Expect::Config("max_iter"),
        ),
        case(
            "unknown decider class",
            with_key("tah.decider.class", Value::String("Oracle".into())),
            Expect::Config("Oracle"),
        ),
        case(
            "decider reads layer 9 of 2",
            with_key(
                "tah.decider.hidden_states_layer_nums",
                Value::Array(vec![Value::U32(0), Value::U32(9)]),
            ),
            Expect::Config("decider layer index 9"),
        ),
        case(
            "decider top-k above the vocabulary",
            with_key("tah.decider.topk", Value::U32(1_000_000_000)),
            Expect::Config("topk"),
        ),
        case(
            "LoRA target unknown",
            with_key(
                "tah.lora.targets",
                Value::Array(vec![Value::String("foo_proj".into())]),
            ),
            Expect::Config("foo_proj"),
        ),
        case(
            "LoRA targets not strings",
            with_key("tah.lora.targets", Value::Array(vec![Value::U32(1)])),
            Expect::Gguf("Metadata { key: \"tah.lora.targets\""),
        ),
        case(
            "LoRA rank disagrees with tensors",
            with_key("tah.lora.r", Value::U32(8)),
            Expect::Shape("lora_a"),
        ),
        // Tensors missing, unused, of the wrong shape or not finite.
        case(
            "base tensor missing",
            edited(&tiny_bytes, |p| p.remove_tensors(|n| n == Q_PROJ)),
            Expect::Missing(Q_PROJ),
        ),
        case(
            "LoRA tensor missing",
            edited(&tiny_bytes, |p| {
                p.remove_tensors(|n| n == "blk.1.ffn_up.weight.lora_b")
            }),
            Expect::Missing("blk.1.ffn_up.weight.lora_b"),
        ),
        case(
            "LoRA tensors no target module uses",
            with_key(
                "tah.lora.targets",
                Value::Array(vec![Value::String("q_proj".into())]),
            ),
            Expect::Config("blk.0.attn_k.weight.lora_a` does not match a target module"),
        ),
        case(
            "LoRA tensor for layer 9",
            edited(&tiny_bytes, |p| {
                let mut extra = p.tensor_mut("blk.0.attn_q.weight.lora_a").clone();
                extra.0.name = "blk.9.attn_q.weight.lora_a".into();
                p.tensors.push(extra);
            }),
            Expect::Config("blk.9.attn_q.weight.lora_a"),
        ),
        case(
            "decider tensor missing",
            edited(&tiny_bytes, |p| {
                p.remove_tensors(|n| n == "tah.decider.logits_projection.bias")
            }),
            Expect::Missing("logits_projection.bias"),
        ),
        case(
            "tensor transposed",
            edited(&tiny_gguf(true, GgmlDType::F32), |p| {
                p.tensor_mut("blk.1.attn_k.weight").0.shape = vec![32, 16]
            }),
            Expect::Shape("blk.1.attn_k.weight"),
        ),
        case(
            "NaN in a norm",
            poisoned(&tiny_bytes, "blk.0.attn_norm.weight", f32::NAN),
            Expect::Malformed("NaN"),
        ),
        case(
            "infinity in a LoRA matrix",
            poisoned(&tiny_bytes, "blk.1.ffn_down.weight.lora_b", f32::INFINITY),
            Expect::Malformed("blk.1.ffn_down.weight.lora_b` holds NaN or infinite"),
        ),
        case(
            "NaN in the decider",
            poisoned(
                &tiny_bytes,
                "tah.decider.backbone.output_layer.1.bias",
                f32::NAN,
            ),
            Expect::Malformed("NaN"),
        ),
        case(
            "NaN in an f32 projection",
            poisoned(&tiny_gguf(true, GgmlDType::F32), Q_PROJ, f32::NAN),
            Expect::NonFiniteOutput,
        ),
        // Quantizing the activations before the next quantized matmul maps
        // NaN to 0, so only the final hidden state's finite check sees these.
        case(
            "NaN block scale in a q8_0 projection",
            edited(&tiny_bytes, |p| {
                let nan = half::f16::NAN.to_le_bytes();
                p.tensor_mut(Q_PROJ).1[..2].copy_from_slice(&nan)
            }),
            Expect::NonFiniteOutput,
        ),
        case(
            "infinite block scale in layer 1's q8_0 down projection",
            edited(&tiny_bytes, |p| {
                let inf = half::f16::INFINITY.to_le_bytes();
                p.tensor_mut("blk.1.ffn_down.weight").1[..2].copy_from_slice(&inf)
            }),
            Expect::NonFiniteOutput,
        ),
        case(
            "NaN block scale in the q8_0 embedding (tied LM head)",
            edited(&tiny_bytes, |p| {
                let nan = half::f16::NAN.to_le_bytes();
                p.tensor_mut("token_embd.weight").1[..2].copy_from_slice(&nan)
            }),
            Expect::NonFiniteOutput,
        ),
        // Tokenizer and chat template.
        case(
            "embedded tokenizer not JSON",
            with_key("tokenizer.huggingface.json", Value::String("{ nope".into())),
            Expect::Tokenizer("tokenizer.json"),
        ),
        case(
            "embedded tokenizer a number",
            with_key("tokenizer.huggingface.json", Value::U32(7)),
            Expect::Gguf("Metadata { key: \"tokenizer.huggingface.json\""),
        ),
        case(
            "embedded tokenizer with ids beyond the embedding",
            with_key(
                "tokenizer.huggingface.json",
                Value::String(tokenizer_json().replace("\"hi\":39", "\"hi\":39,\"far\":1000")),
            ),
            Expect::Config("ids up to 1000"),
        ),
        case(
            "chat template that does not compile",
            with_key(
                "tokenizer.chat_template",
                Value::String("{% for m in messages %}".into()),
            ),
            Expect::ChatTemplate("syntax error"),
        ),
        Case {
            label: "tokenizer of another model given at load".into(),
            bytes: tiny_bytes.clone(),
            options: LoadOptions {
                tokenizer: Some(common::tokenizer_path()),
                ..Default::default()
            },
            expect: Expect::Config("but the model has 40 embedding rows"),
        },
    ];
    assert_eq!(WORDS.len(), 40);
    // Cut anywhere: in the fixed header, the metadata, the tensor index, the data.
    let cuts = [
        0,
        3,
        23,
        24,
        40,
        100,
        1_000,
        data_start / 2,
        data_start - 1,
        data_start + 1,
        (data_start + len) / 2,
        len - 1,
    ];
    for cut in cuts {
        cases.push(case(
            format!("cut at byte {cut} of {len}"),
            tiny_bytes[..cut].to_vec(),
            Expect::Gguf("Truncated|TooLarge|TensorOutOfBounds"),
        ));
    }
    cases
}

#[test]
fn every_malformed_gguf_gives_a_typed_error() {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "the corpus should hold at least 30 files"
    );
    let mut labels = std::collections::HashSet::new();
    for (i, c) in cases.iter().enumerate() {
        assert!(labels.insert(&c.label), "duplicate case {}", c.label);
        let file = TempFile::with(&i.to_string(), &c.bytes);
        let loaded = TahModel::load(&file.0, &c.options);
        let message = match (&c.expect, loaded) {
            (Expect::NonFiniteOutput, Ok(model)) => {
                let mut session = TahSession::new(std::sync::Arc::new(model));
                let config = GenerationConfig {
                    max_new_tokens: 4,
                    mode: IterationMode::Always,
                    ..GenerationConfig::greedy()
                };
                let prompt = Prompt::Raw("what is 1 + 2 ?".into());
                let err = session
                    .generate(&prompt, &config, &CancelHandle::new(), &mut |_| {})
                    .err()
                    .unwrap_or_else(|| panic!("{}: generated from corrupt weights", c.label));
                format!(
                    "(loads) generate: {}",
                    check_error(&c.label, &err, &c.expect)
                )
            }
            (expect, loaded) => check(&c.label, loaded, expect),
        };
        let message = message.replace(&file.0.display().to_string(), "FILE");
        println!("{:48} -> {message}", c.label);
    }
    println!("{} malformed GGUF files", cases.len());
}

#[test]
fn the_unmodified_tiny_model_loads_and_reads_back_the_same() {
    let bytes = tiny();
    // The parts round-trip byte for byte once written in sorted order.
    let once = GgufParts::from_bytes(&bytes).to_bytes();
    assert_eq!(GgufParts::from_bytes(&once).to_bytes(), once);
    let file = TempFile::with("control", &bytes);
    let model = TahModel::load(&file.0, &LoadOptions::default()).expect("the control must load");
    assert_eq!(model.max_iter(), 2);
}
