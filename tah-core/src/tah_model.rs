//! A loaded TaH model: immutable weights (network, LoRA, decider), TaH
//! settings, tokenizer and chat template. Shareable across threads; each
//! conversation keeps its own [`KvCache`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::chat_template::ChatTemplate;
use crate::config::Qwen3Config;
use crate::decider::Decider;
use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::gguf::mapping::Mapping;
use crate::kv_cache::{KvCache, KvPrecision};
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
    /// How sessions' KV caches store K/V (default f32; `q8` takes about a
    /// quarter of the memory).
    pub kv_precision: KvPrecision,
}

pub struct TahModel {
    pub(crate) net: Model,
    pub(crate) decider: Option<Decider>,
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
        let fingerprint = OnceLock::new();
        if let Some(known) = parts.fingerprint {
            let _ = fingerprint.set(known);
        }
        Ok(TahModel {
            net: parts.net,
            decider: parts.decider,
            max_iter: parts.max_iter,
            soft_topk: parts.soft_topk,
            tokenizer: parts.tokenizer,
            chat_template: parts.chat_template,
            eos_token_ids,
            context_length,
            kv_precision: options.kv_precision,
            load_ms: 0.0,
            notice: parts.notice,
            mapping: parts.mapping,
            fingerprint,
        })
    }

    /// A notice about how the model was loaded (e.g. a plain Qwen3 model
    /// running in `never` mode), for the user to see.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// The network's token embedding.
    pub fn embedding(&self) -> &Embedding {
        self.net.embedding()
    }

    pub fn config(&self) -> &Qwen3Config {
        self.net.config()
    }

    /// D: the most passes a token can take (1 for a plain Qwen3 model).
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }

    /// Number of top logits mixed into a soft embedding.
    pub fn soft_topk(&self) -> usize {
        self.soft_topk
    }

    pub fn decider(&self) -> Option<&Decider> {
        self.decider.as_ref()
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

    /// A fresh KV cache for one conversation.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.net.kv_shape(self.max_iter),
            self.context_length,
            self.kv_precision,
        )
    }
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
