//! A loaded TaH model: immutable weights (network, LoRA, decider) on the
//! CPU or the GPU, TaH settings, tokenizer and chat template. Shareable
//! across threads; each conversation keeps its own [`KvCache`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::chat_template::ChatTemplate;
use crate::config::{DeciderConfig, Qwen3Config};
use crate::decider::Decider;
use crate::device::{ComputeDevice, GpuOptions};
use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::gguf::mapping::Mapping;
use crate::kv_cache::{KvCache, KvPrecision, KvShape};
use crate::model::Model;
use crate::tokenizer::TahTokenizer;

/// Options for [`TahModel::load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// A `tokenizer.json` to use instead of the one next to the model.
    pub tokenizer: Option<PathBuf>,
    /// Context length of sessions (default: the model's
    /// `max_position_embeddings`).
    pub context_length: Option<usize>,
    /// How sessions' KV caches store K/V (default f16; `q8` takes about a
    /// quarter of the f32 memory).
    pub kv_precision: KvPrecision,
    /// Where the model runs (default: the CPU).
    pub device: ComputeDevice,
    /// How it is put on the GPU, when `device` is [`ComputeDevice::Gpu`].
    pub gpu: GpuOptions,
}

/// Where a loaded model's weights live and its passes run.
#[allow(clippy::large_enum_variant)] // one per model
pub(crate) enum Engine {
    Cpu {
        net: Model,
        decider: Option<Decider>,
    },
    #[cfg(feature = "gpu")]
    Gpu(crate::gpu::GpuModel),
}

pub struct TahModel {
    pub(crate) engine: Engine,
    cfg: Qwen3Config,
    decider_config: Option<DeciderConfig>,
    max_iter: usize,
    soft_topk: usize,
    tokenizer: Option<TahTokenizer>,
    chat_template: Option<ChatTemplate>,
    eos_token_ids: Vec<u32>,
    context_length: usize,
    kv_precision: KvPrecision,
    /// Wall time of [`TahModel::load`], reported in generation stats.
    pub(crate) load_ms: f64,
    notice: Option<String>,
    /// Why a GPU model runs on the CPU (`fallback_to_cpu`).
    device_notice: Option<String>,
    /// The mapped model file (GGUF models), whose pages a trim releases.
    mapping: Option<MappedModel>,
    /// See [`TahModel::fingerprint`]; computed on first use for mapped files.
    fingerprint: OnceLock<u64>,
}

/// A GGUF model's mapping and where its tensor data starts.
pub(crate) struct MappedModel {
    pub mapping: Arc<Mapping>,
    pub header_len: usize,
}

/// What a format-specific loader hands to [`TahModel::assemble`].
pub(crate) struct LoadedParts {
    pub net: Model,
    pub decider: Option<Decider>,
    pub max_iter: usize,
    pub soft_topk: usize,
    pub tokenizer: Option<TahTokenizer>,
    pub chat_template: Option<ChatTemplate>,
    /// Shown to the user once (e.g. "no TaH parts: plain Qwen3").
    pub notice: Option<String>,
    /// A GGUF model's mapping; None for a checkpoint directory.
    pub mapping: Option<MappedModel>,
    /// Known at load time (directories); mapped files compute it lazily.
    pub fingerprint: Option<u64>,
}

impl TahModel {
    /// Fails (with [`crate::GgufProblem::ShrankAfterLoad`]) when the mapped
    /// model file has been truncated since it was loaded, where reading its
    /// weights would crash the process. Sessions check it before every
    /// generation.
    pub fn check_weights_intact(&self) -> Result<()> {
        self.mapping
            .as_ref()
            .map_or(Ok(()), |m| m.mapping.check_intact())
    }

    /// Drops the mapped weights' pages from the resident set (they are read
    /// back from the file on their next use, unchanged) and returns the
    /// resident bytes released. A checkpoint directory's weights live on the
    /// heap: nothing to release there.
    pub fn release_weight_pages(&self) -> usize {
        self.mapping
            .as_ref()
            .map_or(0, |m| m.mapping.release_resident_pages())
    }

    /// The model's identity for saved session states: a hash of its files'
    /// headers and of samples of its weights (`crate::fingerprint`).
    pub fn fingerprint(&self) -> u64 {
        *self.fingerprint.get_or_init(|| {
            self.mapping.as_ref().map_or(0, |m| {
                crate::fingerprint::of_bytes(m.mapping.bytes(), m.header_len)
            })
        })
    }

    /// How long [`TahModel::load`] took, in milliseconds.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

    pub(crate) fn assemble(parts: LoadedParts, options: &LoadOptions) -> Result<Self> {
        if let Some(notice) = &parts.notice {
            log::warn!("{notice}");
        }
        let eos_token_ids = eos_ids(parts.net.config(), parts.tokenizer.as_ref());
        let context_length = options
            .context_length
            .unwrap_or(parts.net.config().max_position_embeddings);
        if context_length == 0 {
            return Err(Error::InvalidArgument(
                "context length must be positive".into(),
            ));
        }
        let cfg = parts.net.config().clone();
        let decider_config = parts.decider.as_ref().map(|d| d.config().clone());
        let (engine, device_notice) = place(
            parts.net,
            parts.decider,
            options,
            (parts.max_iter, parts.soft_topk),
        )?;
        let fingerprint = OnceLock::new();
        if let Some(known) = parts.fingerprint {
            let _ = fingerprint.set(known);
        }
        Ok(TahModel {
            engine,
            cfg,
            decider_config,
            max_iter: parts.max_iter,
            soft_topk: parts.soft_topk,
            tokenizer: parts.tokenizer,
            chat_template: parts.chat_template,
            eos_token_ids,
            context_length,
            kv_precision: options.kv_precision,
            load_ms: 0.0,
            notice: parts.notice,
            device_notice,
            mapping: parts.mapping,
            fingerprint,
        })
    }

    /// A notice about how the model was loaded (e.g. a plain Qwen3 model
    /// running in `never` mode), for the user to see.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Where the model runs: `cpu`, or `gpu: <adapter> (<backend>)`.
    pub fn device_name(&self) -> String {
        match &self.engine {
            Engine::Cpu { .. } => "cpu".into(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(gpu) => format!("gpu: {}", gpu.adapter_name()),
        }
    }

    /// Destroys the GPU device under a GPU model, as a driver reset would
    /// (for tests of device loss; nothing happens to a CPU model).
    #[doc(hidden)]
    pub fn lose_gpu_device(&self) {
        #[cfg(feature = "gpu")]
        if let Engine::Gpu(gpu) = &self.engine {
            gpu.lose_device();
        }
    }

    /// Why a model asked for on the GPU runs on the CPU (see
    /// [`GpuOptions::fallback_to_cpu`]).
    pub fn device_notice(&self) -> Option<&str> {
        self.device_notice.as_deref()
    }

    /// The network's token embedding (None when the model runs on the GPU).
    pub fn embedding(&self) -> Option<&Embedding> {
        match &self.engine {
            Engine::Cpu { net, .. } => Some(net.embedding()),
            #[cfg(feature = "gpu")]
            Engine::Gpu(_) => None,
        }
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    /// D: the most passes a token can take (1 for a plain Qwen3 model).
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }

    /// Number of top logits mixed into a soft embedding.
    pub fn soft_topk(&self) -> usize {
        self.soft_topk
    }

    /// The decider as it runs on the CPU (None for a model without one, or
    /// one that runs on the GPU; see [`Self::decider_config`]).
    pub fn decider(&self) -> Option<&Decider> {
        match &self.engine {
            Engine::Cpu { decider, .. } => decider.as_ref(),
            #[cfg(feature = "gpu")]
            Engine::Gpu(_) => None,
        }
    }

    /// The decider's settings (None: a plain Qwen3 model).
    pub fn decider_config(&self) -> Option<&DeciderConfig> {
        self.decider_config.as_ref()
    }

    pub fn tokenizer(&self) -> Result<&TahTokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::Tokenizer("this model has no tokenizer (give one with --tokenizer)".into())
        })
    }

    pub fn chat_template(&self) -> Result<&ChatTemplate> {
        self.chat_template
            .as_ref()
            .ok_or_else(|| Error::ChatTemplate("this model has no chat template".into()))
    }

    /// Token ids that end a generation.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// A fresh KV cache for one conversation, on the model's device.
    pub fn new_cache(&self) -> KvCache {
        let shape = KvShape {
            num_layers: self.cfg.num_hidden_layers,
            num_kv_heads: self.cfg.num_key_value_heads,
            head_dim: self.cfg.head_dim,
            max_depth: self.max_iter,
        };
        match &self.engine {
            Engine::Cpu { .. } => KvCache::new(shape, self.context_length, self.kv_precision),
            #[cfg(feature = "gpu")]
            Engine::Gpu(gpu) => gpu.new_cache(shape, self.context_length, self.kv_precision),
        }
    }
}

/// Puts the loaded network where `options` asks: kept as is for the CPU,
/// uploaded (and the CPU copy dropped) for the GPU. Returns the engine and,
/// after a fallback to the CPU, why.
fn place(
    net: Model,
    decider: Option<Decider>,
    options: &LoadOptions,
    (max_iter, soft_topk): (usize, usize),
) -> Result<(Engine, Option<String>)> {
    if options.device == ComputeDevice::Cpu {
        return Ok((Engine::Cpu { net, decider }, None));
    }
    #[cfg(feature = "gpu")]
    let error = match crate::gpu::GpuModel::upload(
        &net,
        decider.as_ref(),
        max_iter,
        soft_topk,
        options.kv_precision,
        &options.gpu,
    ) {
        Ok(gpu) => return Ok((Engine::Gpu(gpu), None)),
        Err(e) => e,
    };
    #[cfg(not(feature = "gpu"))]
    let error = {
        let _ = (max_iter, soft_topk);
        Error::Gpu(crate::error::GpuProblem::NotCompiled)
    };
    if !options.gpu.fallback_to_cpu {
        return Err(error);
    }
    let notice = format!("running on the CPU: {error}");
    log::warn!("{notice}");
    Ok((Engine::Cpu { net, decider }, Some(notice)))
}

/// A tokenizer that can produce ids the embedding has no row for belongs to
/// another model.
pub(crate) fn check_tokenizer_fits(
    tokenizer: &TahTokenizer,
    vocab_size: usize,
    path: &Path,
) -> Result<()> {
    if tokenizer.max_token_id() as usize >= vocab_size {
        return Err(Error::config(
            path,
            format!(
                "tokenizer produces ids up to {} but the model has {vocab_size} embedding rows",
                tokenizer.max_token_id()
            ),
        ));
    }
    Ok(())
}

/// EOS ids: the config's, plus Qwen's `<|im_end|>` / `<|endoftext|>` when the
/// tokenizer knows them.
fn eos_ids(cfg: &Qwen3Config, tokenizer: Option<&TahTokenizer>) -> Vec<u32> {
    let mut ids = cfg
        .eos_token_id
        .as_ref()
        .map(|e| e.ids())
        .unwrap_or_default();
    if let Some(tok) = tokenizer {
        for special in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tok.token_to_id(special) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}
