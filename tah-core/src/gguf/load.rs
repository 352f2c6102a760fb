//! A [`TahModel`] from a GGUF file: the Qwen3 config from llama.cpp's
//! `qwen3.*` keys, the TaH parts from `tah.*` (absent: a plain Qwen3 run in
//! `never` mode), weights left in the memory map.

use std::sync::Arc;

use super::mapping::ModelFile;
use super::names::{self, keys, DECIDER_PREFIX, OUTPUT, PEFT_ROOT, TOKEN_EMBD};
use super::plan::module_path;
use super::reader::{GgufFile, GgufSource};
use super::{Value, TAH_FORMAT_VERSION};
use crate::chat_template::ChatTemplate;
use crate::config::{
    DeciderConfig, InputUpdaterConfig, LoraConfig, LoraTargets, Qwen3Config, TahConfig,
};
use crate::decider::Decider;
use crate::embedding::Embedding;
use crate::error::{Error, GgufProblem, Result};
use crate::model::{LoraWeights, Model};
use crate::tah_model::{check_tokenizer_fits, LoadOptions, LoadedParts, MappedModel, TahModel};
use crate::tokenizer::TahTokenizer;
use crate::weights::WeightBuilder;

pub(super) fn qwen3_config(file: &GgufFile) -> Result<Qwen3Config> {
    let arch = file.get_str(keys::ARCHITECTURE)?;
    if arch != keys::ARCH {
        return Err(file.metadata_error(
            keys::ARCHITECTURE,
            format!("architecture `{arch}` is not qwen3"),
        ));
    }
    let embd = file
        .tensor_info(TOKEN_EMBD)
        .ok_or_else(|| Error::MissingTensor {
            path: file.path().to_path_buf(),
            name: TOKEN_EMBD.into(),
        })?;
    let heads = file.get_usize(keys::HEAD_COUNT)?;
    let hidden = file.get_usize(keys::EMBEDDING_LENGTH)?;
    let head_dim = match file.metadata().get(keys::KEY_LENGTH) {
        Some(_) => file.get_usize(keys::KEY_LENGTH)?,
        None => hidden / heads.max(1),
    };
    let eos = match file.metadata().get(keys::EOS_TOKEN_ID) {
        Some(_) => Some(crate::config::EosTokenIds::One(
            u32::try_from(file.get_usize(keys::EOS_TOKEN_ID)?)
                .map_err(|_| file.metadata_error(keys::EOS_TOKEN_ID, "out of range"))?,
        )),
        None => None,
    };
    let cfg = Qwen3Config {
        vocab_size: embd.shape[0],
        hidden_size: hidden,
        intermediate_size: file.get_usize(keys::FEED_FORWARD_LENGTH)?,
        num_hidden_layers: file.get_usize(keys::BLOCK_COUNT)?,
        num_attention_heads: heads,
        num_key_value_heads: file.get_usize(keys::HEAD_COUNT_KV)?,
        head_dim,
        // llama.cpp's default when the key is absent.
        rope_theta: match file.metadata().get(keys::ROPE_FREQ_BASE) {
            Some(_) => file.get_f64(keys::ROPE_FREQ_BASE)?,
            None => 10_000.0,
        },
        rms_norm_eps: file.get_f64(keys::RMS_EPS)?,
        max_position_embeddings: file.get_usize(keys::CONTEXT_LENGTH)?,
        tie_word_embeddings: file.tensor_info(OUTPUT).is_none(),
        eos_token_id: eos,
    };
    cfg.validate(file.path())?;
    Ok(cfg)
}

/// The TaH settings, or None for a file without any `tah.` key.
pub(super) fn tah_config(
    file: &GgufFile,
    cfg: &Qwen3Config,
) -> Result<Option<(TahConfig, LoraConfig)>> {
    if !file.metadata().keys().any(|k| k.starts_with("tah.")) {
        return Ok(None);
    }
    let version = file.get_usize(keys::TAH_VERSION)?;
    if version != TAH_FORMAT_VERSION as usize {
        return Err(Error::gguf(
            file.path(),
            GgufProblem::UnsupportedTahVersion {
                found: u32::try_from(version).unwrap_or(u32::MAX),
                supported: TAH_FORMAT_VERSION,
            },
        ));
    }
    let max_iter = file.get_usize(keys::TAH_MAX_ITER)?;
    let tah = TahConfig {
        max_iter,
        iter_decider: file.get_str(keys::TAH_DECIDER_CLASS)?.to_string(),
        iter_decider_kwargs: DeciderConfig {
            topk: file.get_usize(keys::TAH_DECIDER_TOPK)?,
            hidden_states_size: file.get_usize(keys::TAH_DECIDER_HIDDEN_SIZE)?,
            hidden_states_layer_nums: file.get_usizes(keys::TAH_DECIDER_LAYERS)?,
            hidden_dims: file.get_usizes(keys::TAH_DECIDER_DIMS)?,
            expansion_factor: file.get_usize(keys::TAH_DECIDER_EXPANSION)?,
            normalize_input: match file.get(keys::TAH_DECIDER_NORMALIZE)? {
                Value::Bool(b) => *b,
                _ => return Err(file.metadata_error(keys::TAH_DECIDER_NORMALIZE, "not a bool")),
            },
            threshold: file.get_f64(keys::TAH_DECIDER_THRESHOLD)? as f32,
        },
        input_updater_kwargs: InputUpdaterConfig {
            topk: file.get_usize(keys::TAH_SOFT_TOPK)?,
        },
    };
    tah.validate(cfg, file.path())?;
    let targets = match file.get(keys::TAH_LORA_TARGETS)? {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| file.metadata_error(keys::TAH_LORA_TARGETS, "not a list of strings"))?,
        _ => return Err(file.metadata_error(keys::TAH_LORA_TARGETS, "not an array")),
    };
    let lora = LoraConfig {
        r: file.get_usize(keys::TAH_LORA_R)?,
        lora_alpha: file.get_f64(keys::TAH_LORA_ALPHA)?,
        target_modules: LoraTargets::Named(targets),
        use_rslora: false,
        use_dora: false,
    };
    lora.validate(file.path())?;
    Ok(Some((tah, lora)))
}

pub(crate) fn load(model_file: ModelFile, options: &LoadOptions) -> Result<TahModel> {
    let file = Arc::new(GgufFile::open_file(model_file)?);
    let path = file.path();
    let cfg = qwen3_config(&file)?;
    let tah = tah_config(&file, &cfg)?;
    let max_iter = tah.as_ref().map_or(1, |(t, _)| t.max_iter);
    let source = GgufSource { file: file.clone() };
    let root = WeightBuilder::root(&source);
    // The embedding stays mapped: rows are dequantized as they are looked up.
    let embedding = Embedding::mapped(Arc::new(file.mapped(
        TOKEN_EMBD,
        cfg.vocab_size,
        cfg.hidden_size,
    )?));
    let (net, decider) = match &tah {
        Some((t, lora)) if max_iter > 1 => {
            let targets = lora.targets(path)?;
            check_lora_tensors(&file, &targets, cfg.num_hidden_layers)?;
            let lora_weights = LoraWeights {
                vb: root.pp(PEFT_ROOT),
                config: lora,
                targets: &targets,
            };
            let net = Model::new(&cfg, embedding, &root, Some(&lora_weights))?;
            let decider = Decider::new(&t.iter_decider_kwargs, &root.pp(DECIDER_PREFIX))?;
            (net, Some(decider))
        }
        _ => (Model::new(&cfg, embedding, &root, None)?, None),
    };
    let tokenizer = match (&options.tokenizer, file.metadata().get(keys::HF_TOKENIZER)) {
        (Some(p), _) => {
            let tokenizer = TahTokenizer::from_file(p)?;
            check_tokenizer_fits(&tokenizer, cfg.vocab_size, p)?;
            Some(tokenizer)
        }
        (None, Some(Value::String(json))) => {
            let tokenizer = TahTokenizer::from_json(json)?;
            check_tokenizer_fits(&tokenizer, cfg.vocab_size, path)?;
            Some(tokenizer)
        }
        (None, Some(_)) => return Err(file.metadata_error(keys::HF_TOKENIZER, "not a string")),
        (None, None) => None,
    };
    let chat_template = match file.metadata().get(keys::CHAT_TEMPLATE) {
        Some(Value::String(source)) => Some(ChatTemplate::from_source(source)?),
        Some(_) => return Err(file.metadata_error(keys::CHAT_TEMPLATE, "not a string")),
        None => None,
    };
    let notice = tah.is_none().then(|| {
        format!(
            "{}: no tah.* metadata; running as plain Qwen3 (never mode)",
            path.display()
        )
    });
    TahModel::assemble(
        LoadedParts {
            net,
            decider,
            max_iter,
            soft_topk: tah.as_ref().map_or(1, |(t, _)| t.input_updater_kwargs.topk),
            tokenizer,
            chat_template,
            notice,
            mapping: Some(MappedModel {
                mapping: Arc::clone(file.mapping()),
                header_len: file.header_len(),
            }),
            fingerprint: None,
        },
        options,
    )
}

/// The GGUF twin of the directory loader's LoRA key check: an adapter tensor
/// that no target module of a real layer uses means the adapter is not what
/// the metadata says, so the file is refused rather than partly ignored. The
/// adapter matrices are small and stay f32, so they are also checked for
/// NaN/inf here (the large base matrices stay unread in the mapping).
fn check_lora_tensors(file: &GgufFile, targets: &[&str], num_layers: usize) -> Result<()> {
    // Every adapter tensor name the model's layers and target modules use,
    // built once (a 0.6B model has 392 of them).
    let expected: std::collections::HashSet<String> = (0..num_layers)
        .flat_map(|layer| {
            targets.iter().flat_map(move |module| {
                ["lora_A", "lora_B"].into_iter().filter_map(move |part| {
                    names::to_gguf(&format!(
                        "{PEFT_ROOT}.model.layers.{layer}.{}.{part}.weight",
                        module_path(module)
                    ))
                })
            })
        })
        .collect();
    let mut lora_names: Vec<&str> = file
        .tensor_names()
        .filter(|n| n.ends_with(".lora_a") || n.ends_with(".lora_b"))
        .collect();
    lora_names.sort_unstable();
    for name in lora_names {
        let used = expected.contains(name);
        if !used {
            return Err(Error::config(
                file.path(),
                format!("LoRA tensor `{name}` does not match a target module of this model"),
            ));
        }
        let info = file.tensor_info(name).ok_or_else(|| Error::MissingTensor {
            path: file.path().to_path_buf(),
            name: name.to_string(),
        })?;
        let cols = info.shape.last().copied().unwrap_or(1);
        let rows = info.shape.iter().rev().skip(1).product();
        let values = file.mapped(name, rows, cols)?.dequantize_all()?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::malformed(
                file.path(),
                format!("tensor `{name}` holds NaN or infinite values"),
            ));
        }
    }
    Ok(())
}
