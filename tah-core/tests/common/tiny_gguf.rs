//! A tiny but complete TaH model written straight through the GGUF writer:
//! 2 layers, hidden size 32, a 40-word vocabulary with its own word-level
//! tokenizer and chat template, LoRA on every linear module and a decider.
//! A few KB, so it is the GGUF fuzz target's seed and a fast model for tests
//! that need many files. Deterministic: the same bytes every time.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use tah_core::config::LINEAR_MODULES;
use tah_core::gguf::writer::{write_gguf, TensorEntry};
use tah_core::gguf::Value;

pub const HIDDEN: usize = 32;
pub const HEADS: usize = 2;
pub const KV_HEADS: usize = 1;
pub const HEAD_DIM: usize = 16;
pub const FFN: usize = 64;
pub const LAYERS: usize = 2;
pub const CONTEXT: usize = 64;
pub const LORA_R: usize = 2;
pub const DECIDER_DIM: usize = 16;
pub const DECIDER_LAYERS: [usize; 2] = [0, 2];
pub const TOPK: usize = 4;

/// The vocabulary: specials first (`<|im_end|>` is the EOS), then words.
pub const WORDS: [&str; 40] = [
    "<unk>",
    "<|im_start|>",
    "<|im_end|>",
    "user",
    "assistant",
    "system",
    "what",
    "is",
    "the",
    "sum",
    "of",
    "and",
    "a",
    "b",
    "c",
    "x",
    "y",
    "+",
    "-",
    "=",
    "?",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "think",
    "answer",
    "yes",
    "no",
    "add",
    "two",
    "numbers",
    "ok",
    "hi",
];
pub const VOCAB: usize = WORDS.len();
pub const EOS: u32 = 2;

/// Word-level: whitespace splits words, unknown words are `<unk>`.
pub fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i.into()))
        .collect();
    let special = |id: usize| {
        serde_json::json!({"id": id, "content": WORDS[id], "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0), special(1), special(2)],
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
    .to_string()
}

pub const CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|> {{ m.role }} {{ m.content }} <|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}";

/// Deterministic values in [-scale, scale) (xorshift).
struct Values(u64);

impl Values {
    fn take(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// Every tensor: (GGUF name, shape, whether it is a large base matrix).
fn tensor_list(tah: bool) -> Vec<(String, Vec<usize>, bool)> {
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    // (GGUF module, in, out)
    let linear = [
        ("attn_q", HIDDEN, q),
        ("attn_k", HIDDEN, kv),
        ("attn_v", HIDDEN, kv),
        ("attn_output", q, HIDDEN),
        ("ffn_gate", HIDDEN, FFN),
        ("ffn_up", HIDDEN, FFN),
        ("ffn_down", FFN, HIDDEN),
    ];
    let mut out = vec![("token_embd.weight".to_string(), vec![VOCAB, HIDDEN], true)];
    for l in 0..LAYERS {
        for (norm, dim) in [
            ("attn_norm", HIDDEN),
            ("ffn_norm", HIDDEN),
            ("attn_q_norm", HEAD_DIM),
            ("attn_k_norm", HEAD_DIM),
        ] {
            out.push((format!("blk.{l}.{norm}.weight"), vec![dim], false));
        }
        for (module, i, o) in linear {
            out.push((format!("blk.{l}.{module}.weight"), vec![o, i], true));
            if tah {
                let lora = format!("blk.{l}.{module}.weight.lora");
                out.push((format!("{lora}_a"), vec![LORA_R, i], false));
                out.push((format!("{lora}_b"), vec![o, LORA_R], false));
            }
        }
    }
    out.push(("output_norm.weight".to_string(), vec![HIDDEN], false));
    if tah {
        let d = |n: &str| format!("tah.decider.{n}");
        let features = HIDDEN * DECIDER_LAYERS.len();
        let mut decider = vec![
            (d("logits_projection.weight"), vec![HIDDEN, TOPK]),
            (d("logits_projection.bias"), vec![HIDDEN]),
            (
                d("combined_projection.weight"),
                vec![DECIDER_DIM, features + HIDDEN],
            ),
            (d("combined_projection.bias"), vec![DECIDER_DIM]),
            (
                d("backbone.input_projection.weight"),
                vec![DECIDER_DIM, DECIDER_DIM],
            ),
            (d("backbone.input_projection.bias"), vec![DECIDER_DIM]),
            (d("backbone.output_layer.0.weight"), vec![DECIDER_DIM]),
            (d("backbone.output_layer.0.bias"), vec![DECIDER_DIM]),
            (d("backbone.output_layer.1.weight"), vec![1, DECIDER_DIM]),
            (d("backbone.output_layer.1.bias"), vec![1]),
        ];
        // One block (hidden_dims has one entry): dim -> dim, expansion 2.
        let block = |n: &str| d(&format!("backbone.blocks.0.{n}"));
        decider.extend([
            (block("layer_norm.weight"), vec![DECIDER_DIM]),
            (block("layer_norm.bias"), vec![DECIDER_DIM]),
            (block("mlp.0.weight"), vec![2 * DECIDER_DIM, DECIDER_DIM]),
            (block("mlp.0.bias"), vec![2 * DECIDER_DIM]),
            (block("mlp.3.weight"), vec![DECIDER_DIM, 2 * DECIDER_DIM]),
            (block("mlp.3.bias"), vec![DECIDER_DIM]),
        ]);
        out.extend(decider.into_iter().map(|(n, s)| (n, s, false)));
    }
    out
}

fn metadata(tah: bool) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let mut m = vec![
        ("general.architecture", Value::String("qwen3".into())),
        ("general.alignment", u(32)),
        ("qwen3.block_count", u(LAYERS)),
        ("qwen3.context_length", u(CONTEXT)),
        ("qwen3.embedding_length", u(HIDDEN)),
        ("qwen3.feed_forward_length", u(FFN)),
        ("qwen3.attention.head_count", u(HEADS)),
        ("qwen3.attention.head_count_kv", u(KV_HEADS)),
        ("qwen3.attention.key_length", u(HEAD_DIM)),
        ("qwen3.attention.value_length", u(HEAD_DIM)),
        ("qwen3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("qwen3.rope.freq_base", Value::F32(10_000.0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(EOS)),
        (
            "tokenizer.huggingface.json",
            Value::String(tokenizer_json()),
        ),
        (
            "tokenizer.chat_template",
            Value::String(CHAT_TEMPLATE.into()),
        ),
    ];
    if tah {
        let list = |v: &[usize]| Value::Array(v.iter().map(|&x| u(x)).collect());
        m.extend([
            ("tah.format_version", u(1)),
            ("tah.max_iter", u(2)),
            ("tah.soft_embedding.topk", u(TOPK)),
            ("tah.decider.class", Value::String("MLPIterDecider".into())),
            ("tah.decider.topk", u(TOPK)),
            ("tah.decider.hidden_states_size", u(HIDDEN)),
            (
                "tah.decider.hidden_states_layer_nums",
                list(&DECIDER_LAYERS),
            ),
            ("tah.decider.hidden_dims", list(&[DECIDER_DIM])),
            ("tah.decider.expansion_factor", u(2)),
            ("tah.decider.normalize_input", Value::Bool(false)),
            // Low enough that the random decider marks some tokens hard.
            ("tah.decider.threshold", Value::F32(0.3)),
            ("tah.lora.r", u(LORA_R)),
            ("tah.lora.alpha", Value::F32(4.0)),
            (
                "tah.lora.targets",
                Value::Array(LINEAR_MODULES.map(|t| Value::String(t.into())).to_vec()),
            ),
        ]);
    }
    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The file's bytes. `tah = false` gives a plain Qwen3 file (no `tah.*`
/// keys, no LoRA, no decider); `base` is the type of the large matrices.
pub fn tiny_gguf(tah: bool, base: GgmlDType) -> Vec<u8> {
    let tensors = tensor_list(tah);
    let entries: Vec<TensorEntry> = tensors
        .iter()
        .map(|(name, shape, large)| TensorEntry {
            name: name.clone(),
            dtype: if *large { base } else { GgmlDType::F32 },
            shape: shape.clone(),
        })
        .collect();
    let mut values = Values(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::new();
    let path = std::path::Path::new("tiny.gguf");
    write_gguf(path, &mut out, &metadata(tah), &entries, |i| {
        let (name, shape, _) = &tensors[i];
        let n = shape.iter().product();
        // Norm weights near 1 (as trained models have), the rest small.
        let data = if name.contains("norm") && name.ends_with("weight") {
            values.take(n, 0.1).iter().map(|v| 1.0 + v).collect()
        } else {
            values.take(n, 0.3)
        };
        let tensor = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)?;
        Ok(QTensor::quantize(&tensor, entries[i].dtype)?
            .data()?
            .into_owned())
    })
    .expect("writing the tiny model");
    out
}
