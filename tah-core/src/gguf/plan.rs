//! What goes into a TaH GGUF file, shared by the writers ([`super::convert`]
//! from a checkpoint directory, [`super::random`] from a seed): the tensor
//! plan (names, types, shapes), the metadata, and writing it all through a
//! temporary file with a summary.

use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use super::names::{self, keys, PEFT_ROOT};
use super::writer::{write_gguf, TensorEntry};
use super::{Value, DEFAULT_ALIGNMENT, TAH_FORMAT_VERSION};
use crate::chat_template::ChatTemplate;
use crate::config::{LoraConfig, Qwen3Config, TahConfig};
use crate::error::{Error, Result};
use crate::tokenizer::TahTokenizer;

/// The type requested for the large base matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4K,
    Q4_0,
}

impl std::str::FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => Quant::F32,
            "f16" => Quant::F16,
            "bf16" => Quant::Bf16,
            "q8_0" => Quant::Q8_0,
            "q4_k" => Quant::Q4K,
            "q4_0" => Quant::Q4_0,
            _ => {
                return Err(format!(
                    "unknown quantization `{s}` (f32, f16, bf16, q8_0, q4_k, q4_0)"
                ))
            }
        })
    }
}

impl Quant {
    fn dtype(self) -> GgmlDType {
        match self {
            Quant::F32 => GgmlDType::F32,
            Quant::F16 => GgmlDType::F16,
            Quant::Bf16 => GgmlDType::BF16,
            Quant::Q8_0 => GgmlDType::Q8_0,
            Quant::Q4K => GgmlDType::Q4K,
            Quant::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_*; q4_k is "Q4_K_S").
    fn file_type(self) -> u32 {
        match self {
            Quant::F32 => 0,
            Quant::F16 => 1,
            Quant::Q4_0 => 2,
            Quant::Q8_0 => 7,
            Quant::Q4K => 14,
            Quant::Bf16 => 32,
        }
    }
}

/// (wanted, used) type of a quantized matrix: like llama.cpp, a tied
/// embedding (which is also the output layer) wants Q6_K under 4-bit types,
/// and a type whose blocks do not divide the row length falls back to a
/// smaller block.
fn choose_dtype(quant: Quant, gguf_name: &str, tied: bool, row: usize) -> (GgmlDType, GgmlDType) {
    let wanted = match quant.dtype() {
        GgmlDType::Q4K | GgmlDType::Q4_0 if tied && gguf_name == names::TOKEN_EMBD => {
            GgmlDType::Q6K
        }
        dtype => dtype,
    };
    let mut used = wanted;
    while !row.is_multiple_of(used.block_size()) {
        used = match used {
            GgmlDType::Q6K => GgmlDType::Q8_0,
            GgmlDType::Q4K => GgmlDType::Q5_0,
            _ => GgmlDType::F16,
        };
    }
    (wanted, used)
}

/// Bytes and element count of one part of the file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartSize {
    pub bytes: usize,
    pub elements: usize,
}

impl PartSize {
    pub fn bits_per_weight(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.bytes as f64 * 8.0 / self.elements as f64
        }
    }
}

/// What a writer wrote.
#[derive(Clone, Debug, Default)]
pub struct ConvertSummary {
    /// (part, size): "embedding", "projections", "output", "norms", "lora", "decider".
    pub parts: Vec<(&'static str, PartSize)>,
    /// Header: metadata (settings, tokenizer, chat template) and tensor index.
    pub header_bytes: usize,
    pub file_bytes: u64,
    /// (tensor, requested type, type used) where the requested type did not fit.
    pub fallbacks: Vec<(String, GgmlDType, GgmlDType)>,
    pub tensors: usize,
}

/// The part of the model a tensor belongs to (a line of the summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Embedding,
    Projections,
    Output,
    Norms,
    Lora,
    Decider,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Embedding => "embedding",
            Part::Projections => "projections",
            Part::Output => "output",
            Part::Norms => "norms",
            Part::Lora => "lora",
            Part::Decider => "decider",
        }
    }
}

/// One tensor of the file, and the name its data comes from: the Hugging
/// Face (or PEFT) name of base and LoRA tensors, the state-dict name of
/// decider tensors.
pub(crate) struct Planned {
    pub entry: TensorEntry,
    pub part: Part,
    pub source: String,
}

/// The tensors of a file, in order.
#[derive(Default)]
pub(crate) struct Plan {
    pub tensors: Vec<Planned>,
    pub fallbacks: Vec<(String, GgmlDType, GgmlDType)>,
}

impl Plan {
    pub fn push(&mut self, entry: TensorEntry, part: Part, source: String) {
        self.tensors.push(Planned {
            entry,
            part,
            source,
        });
    }
}

/// `(in, out)` of a Qwen3 linear module.
fn module_dims(cfg: &Qwen3Config, module: &str) -> (usize, usize) {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let (q, kv) = (
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
    );
    match module {
        "q_proj" => (h, q),
        "k_proj" | "v_proj" => (h, kv),
        "o_proj" => (q, h),
        "gate_proj" | "up_proj" => (h, i),
        _ => (i, h), // down_proj
    }
}

/// `self_attn.q_proj`, `mlp.up_proj`...: where a linear module lives in a layer.
pub(crate) fn module_path(module: &str) -> String {
    let group = if module.ends_with("_proj") && !module.starts_with(['g', 'u', 'd']) {
        "self_attn"
    } else {
        "mlp"
    };
    format!("{group}.{module}")
}

/// Every base tensor with its Hugging Face name and shape.
fn base_tensors(cfg: &Qwen3Config) -> Vec<(String, Vec<usize>)> {
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
        out.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
        for module in crate::config::LINEAR_MODULES {
            let (i, o) = module_dims(cfg, module);
            out.push((format!("{p}.{}.weight", module_path(module)), vec![o, i]));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    out
}

/// Adds the base network: the large matrices in `quant` (with fallbacks),
/// norms in f32. `missing` names the file a name would be missing from.
pub(crate) fn plan_base(
    plan: &mut Plan,
    cfg: &Qwen3Config,
    quant: Quant,
    missing: &Path,
) -> Result<()> {
    for (hf, shape) in base_tensors(cfg) {
        let gguf = names::to_gguf(&hf).ok_or_else(|| Error::MissingTensor {
            path: missing.to_path_buf(),
            name: hf.clone(),
        })?;
        let (dtype, part) = if names::is_quantizable(&gguf) {
            let row = shape[shape.len() - 1];
            let (wanted, dtype) = choose_dtype(quant, &gguf, cfg.tie_word_embeddings, row);
            if wanted != dtype {
                plan.fallbacks.push((gguf.clone(), wanted, dtype));
            }
            let part = match gguf.as_str() {
                names::TOKEN_EMBD => Part::Embedding,
                names::OUTPUT => Part::Output,
                _ => Part::Projections,
            };
            (dtype, part)
        } else {
            (GgmlDType::F32, Part::Norms)
        };
        plan.push(
            TensorEntry {
                name: gguf,
                dtype,
                shape,
            },
            part,
            hf,
        );
    }
    Ok(())
}

/// Adds LoRA A `[r, in]` and B `[out, r]` (f32) of every target module.
pub(crate) fn plan_lora(plan: &mut Plan, cfg: &Qwen3Config, r: usize, targets: &[&str]) {
    for l in 0..cfg.num_hidden_layers {
        for &module in targets {
            let (i, o) = module_dims(cfg, module);
            let path = format!("{PEFT_ROOT}.model.layers.{l}.{}", module_path(module));
            for (ab, shape) in [("lora_A", vec![r, i]), ("lora_B", vec![o, r])] {
                let hf = format!("{path}.{ab}.weight");
                let gguf = names::to_gguf(&hf).unwrap_or_default();
                plan.push(
                    TensorEntry {
                        name: gguf,
                        dtype: GgmlDType::F32,
                        shape,
                    },
                    Part::Lora,
                    hf,
                );
            }
        }
    }
}

/// The TaH settings written under `tah.`.
pub(crate) struct TahSettings<'a> {
    pub tah: &'a TahConfig,
    pub lora: &'a LoraConfig,
    pub targets: &'a [&'static str],
}

/// The metadata of a file: llama.cpp's `qwen3` keys, the tokenizer and chat
/// template, and the TaH settings when there are any.
pub(crate) fn metadata(
    name: String,
    cfg: &Qwen3Config,
    quant: Quant,
    tah: Option<&TahSettings>,
    tokenizer_json: String,
    chat_template: Option<String>,
) -> Vec<(String, Value)> {
    let u32v = |v: usize| Value::U32(v as u32);
    let mut m = vec![
        (keys::ARCHITECTURE, Value::String(keys::ARCH.into())),
        (keys::NAME, Value::String(name)),
        (keys::ALIGNMENT, u32v(DEFAULT_ALIGNMENT)),
        (keys::FILE_TYPE, Value::U32(quant.file_type())),
        (keys::BLOCK_COUNT, u32v(cfg.num_hidden_layers)),
        (keys::CONTEXT_LENGTH, u32v(cfg.max_position_embeddings)),
        (keys::EMBEDDING_LENGTH, u32v(cfg.hidden_size)),
        (keys::FEED_FORWARD_LENGTH, u32v(cfg.intermediate_size)),
        (keys::HEAD_COUNT, u32v(cfg.num_attention_heads)),
        (keys::HEAD_COUNT_KV, u32v(cfg.num_key_value_heads)),
        (keys::KEY_LENGTH, u32v(cfg.head_dim)),
        (keys::VALUE_LENGTH, u32v(cfg.head_dim)),
        (keys::RMS_EPS, Value::F32(cfg.rms_norm_eps as f32)),
        (keys::ROPE_FREQ_BASE, Value::F32(cfg.rope_theta as f32)),
        (keys::HF_TOKENIZER, Value::String(tokenizer_json)),
    ];
    if let Some(eos) = cfg
        .eos_token_id
        .as_ref()
        .and_then(|e| e.ids().first().copied())
    {
        m.push((keys::EOS_TOKEN_ID, Value::U32(eos)));
    }
    if let Some(template) = chat_template {
        m.push((keys::CHAT_TEMPLATE, Value::String(template)));
    }
    if let Some(t) = tah {
        let d = &t.tah.iter_decider_kwargs;
        let list = |v: &[usize]| Value::Array(v.iter().map(|&x| u32v(x)).collect());
        m.extend([
            (keys::TAH_VERSION, Value::U32(TAH_FORMAT_VERSION)),
            (keys::TAH_MAX_ITER, u32v(t.tah.max_iter)),
            (keys::TAH_SOFT_TOPK, u32v(t.tah.input_updater_kwargs.topk)),
            (
                keys::TAH_DECIDER_CLASS,
                Value::String(t.tah.iter_decider.clone()),
            ),
            (keys::TAH_DECIDER_TOPK, u32v(d.topk)),
            (keys::TAH_DECIDER_HIDDEN_SIZE, u32v(d.hidden_states_size)),
            (keys::TAH_DECIDER_LAYERS, list(&d.hidden_states_layer_nums)),
            (keys::TAH_DECIDER_DIMS, list(&d.hidden_dims)),
            (keys::TAH_DECIDER_EXPANSION, u32v(d.expansion_factor)),
            (keys::TAH_DECIDER_NORMALIZE, Value::Bool(d.normalize_input)),
            (keys::TAH_DECIDER_THRESHOLD, Value::F32(d.threshold)),
            (keys::TAH_LORA_R, u32v(t.lora.r)),
            (keys::TAH_LORA_ALPHA, Value::F32(t.lora.lora_alpha as f32)),
            (
                keys::TAH_LORA_TARGETS,
                Value::Array(
                    t.targets
                        .iter()
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ),
            ),
        ]);
    }
    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The bytes of `tensor` stored as `dtype`.
pub(crate) fn tensor_bytes(tensor: &Tensor, dtype: GgmlDType) -> Result<Vec<u8>> {
    Ok(QTensor::quantize(tensor, dtype)?.data()?.into_owned())
}

/// Refuses to replace `to` unless `force`.
/// The texts a model file embeds: the `tokenizer.json` at `tokenizer`
/// (checked to parse as a tokenizer) and, when `tokenizer_config` exists,
/// its chat template.
pub fn read_embedded_texts(
    tokenizer: &Path,
    tokenizer_config: &Path,
) -> Result<(String, Option<String>)> {
    TahTokenizer::from_file(tokenizer)?;
    let tokenizer_json = std::fs::read_to_string(tokenizer).map_err(|e| Error::io(tokenizer, e))?;
    let chat_template = if tokenizer_config.exists() {
        Some(
            ChatTemplate::from_tokenizer_config(tokenizer_config)?
                .source()
                .to_string(),
        )
    } else {
        None
    };
    Ok((tokenizer_json, chat_template))
}

pub(crate) fn check_overwrite(to: &Path, force: bool) -> Result<()> {
    if to.exists() && !force {
        return Err(Error::InvalidArgument(format!(
            "{} exists (use --force to overwrite)",
            to.display()
        )));
    }
    Ok(())
}

/// Writes `plan` to `to` through a temporary file renamed into place only
/// when complete. `data` gives the bytes of a tensor;
/// `progress(done_bytes, total_bytes, tensor)` is called after each tensor.
pub(crate) fn write_plan(
    to: &Path,
    metadata: &[(String, Value)],
    plan: &Plan,
    mut data: impl FnMut(&Planned) -> Result<Vec<u8>>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ConvertSummary> {
    let entries: Vec<TensorEntry> = plan.tensors.iter().map(|p| p.entry.clone()).collect();
    let total: usize = entries.iter().map(|e| e.byte_size().unwrap_or(0)).sum();
    let mut done = 0;
    crate::atomic_file::write_atomically(to, |writer| {
        write_gguf(to, writer, metadata, &entries, |i| {
            let bytes = data(&plan.tensors[i])?;
            done += bytes.len();
            progress(done, total, &entries[i].name);
            Ok(bytes)
        })
    })?;

    let file_bytes = std::fs::metadata(to).map_err(|e| Error::io(to, e))?.len();
    let mut parts: Vec<(&'static str, PartSize)> = Vec::new();
    for p in &plan.tensors {
        let size = p.entry.byte_size()?;
        let elements: usize = p.entry.shape.iter().product();
        let part = p.part.name();
        match parts.iter_mut().find(|(name, _)| *name == part) {
            Some((_, s)) => {
                s.bytes += size;
                s.elements += elements;
            }
            None => parts.push((
                part,
                PartSize {
                    bytes: size,
                    elements,
                },
            )),
        }
    }
    let data_bytes: usize = parts.iter().map(|(_, s)| s.bytes).sum();
    Ok(ConvertSummary {
        parts,
        header_bytes: (file_bytes as usize).saturating_sub(data_bytes),
        file_bytes,
        fallbacks: plan.fallbacks.clone(),
        tensors: plan.tensors.len(),
    })
}
