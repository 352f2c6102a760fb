//! The three configuration files of a published TaH checkpoint:
//! `config.json` (Qwen3), `tah_config.json` (TaH) and `lora/adapter_config.json` (PEFT).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest sizes we accept from a config file. They are far above any real
/// model and only stop absurd values from turning into huge allocations.
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 1024;
const MAX_VOCAB: usize = 1 << 24;

/// Qwen3 architecture (`config.json`, Hugging Face names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub eos_token_id: Option<EosTokenIds>,
}

/// `eos_token_id` is a single id or a list in Hugging Face configs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosTokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl EosTokenIds {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            EosTokenIds::One(id) => vec![*id],
            EosTokenIds::Many(ids) => ids.clone(),
        }
    }
}

impl Qwen3Config {
    /// Checks the sizes are positive, consistent and not absurd.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let err = |reason: String| Err(Error::config(path, reason));
        let dims = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("intermediate_size", self.intermediate_size, MAX_DIM),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_DIM),
            ("num_key_value_heads", self.num_key_value_heads, MAX_DIM),
            ("head_dim", self.head_dim, MAX_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 24,
            ),
        ];
        for (name, value, max) in dims {
            if value == 0 || value > max {
                return err(format!("{name} = {value} is out of range 1..={max}"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return err(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return err(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return err(format!("rope_theta ({}) must be positive", self.rope_theta));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return err(format!(
                "rms_norm_eps ({}) must be positive",
                self.rms_norm_eps
            ));
        }
        Ok(())
    }
}

/// `iter_decider_kwargs` of `tah_config.json` (the `MLPIterDecider` constructor).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeciderConfig {
    pub topk: usize,
    pub hidden_states_size: usize,
    pub hidden_states_layer_nums: Vec<usize>,
    pub hidden_dims: Vec<usize>,
    pub expansion_factor: usize,
    #[serde(default)]
    pub normalize_input: bool,
    pub threshold: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputUpdaterConfig {
    /// Number of top logits mixed into the soft embedding.
    pub topk: usize,
}

/// `tah_config.json`: the TaH parts of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TahConfig {
    /// D: the largest number of passes a token can take.
    pub max_iter: usize,
    pub iter_decider: String,
    pub iter_decider_kwargs: DeciderConfig,
    pub input_updater_kwargs: InputUpdaterConfig,
}

impl TahConfig {
    pub fn validate(&self, qwen: &Qwen3Config, path: &Path) -> Result<()> {
        let err = |reason: String| Err(Error::config(path, reason));
        if self.iter_decider != "MLPIterDecider" {
            return err(format!(
                "iter_decider `{}` is not supported (only MLPIterDecider)",
                self.iter_decider
            ));
        }
        if !(1..=16).contains(&self.max_iter) {
            return err(format!(
                "max_iter = {} is out of range 1..=16",
                self.max_iter
            ));
        }
        let dec = &self.iter_decider_kwargs;
        for (name, k) in [
            ("iter_decider_kwargs.topk", dec.topk),
            ("input_updater_kwargs.topk", self.input_updater_kwargs.topk),
        ] {
            if k == 0 || k > qwen.vocab_size {
                return err(format!(
                    "{name} = {k} is out of range 1..={}",
                    qwen.vocab_size
                ));
            }
        }
        if dec.hidden_states_size != qwen.hidden_size {
            return err(format!(
                "iter_decider_kwargs.hidden_states_size = {} differs from hidden_size = {}",
                dec.hidden_states_size, qwen.hidden_size
            ));
        }
        if dec.hidden_states_layer_nums.is_empty() {
            return err("iter_decider_kwargs.hidden_states_layer_nums is empty".into());
        }
        if let Some(&bad) = dec
            .hidden_states_layer_nums
            .iter()
            .find(|&&l| l > qwen.num_hidden_layers)
        {
            return err(format!(
                "decider layer index {bad} is out of range 0..={} (hidden-state indices)",
                qwen.num_hidden_layers
            ));
        }
        if dec.hidden_dims.is_empty() || dec.hidden_dims.iter().any(|&d| d == 0 || d > MAX_DIM) {
            return err(format!(
                "iter_decider_kwargs.hidden_dims {:?} must be non-empty and positive",
                dec.hidden_dims
            ));
        }
        if dec.expansion_factor == 0 || dec.expansion_factor > 64 {
            return err(format!(
                "iter_decider_kwargs.expansion_factor = {} is out of range",
                dec.expansion_factor
            ));
        }
        if !dec.threshold.is_finite() {
            return err("iter_decider_kwargs.threshold is not finite".into());
        }
        Ok(())
    }
}

/// `lora/adapter_config.json` (PEFT).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub target_modules: LoraTargets,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
}

/// PEFT writes `target_modules` as a list, or as the string `all-linear`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoraTargets {
    Named(Vec<String>),
    Keyword(String),
}

impl Default for LoraTargets {
    fn default() -> Self {
        LoraTargets::Keyword("all-linear".into())
    }
}

/// The seven linear modules of a Qwen3 layer.
pub const LINEAR_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraConfig {
    /// `lora_alpha / r`: the factor on `B (A x)`.
    pub fn scaling(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    /// Which of [`LINEAR_MODULES`] carry an adapter.
    pub fn targets(&self, path: &Path) -> Result<Vec<&'static str>> {
        match &self.target_modules {
            LoraTargets::Keyword(k) if k == "all-linear" => Ok(LINEAR_MODULES.to_vec()),
            LoraTargets::Keyword(k) => Err(Error::config(
                path,
                format!("target_modules `{k}` is not supported"),
            )),
            LoraTargets::Named(names) => names
                .iter()
                .map(|n| {
                    LINEAR_MODULES
                        .iter()
                        .copied()
                        .find(|m| m == n)
                        .ok_or_else(|| {
                            Error::config(
                                path,
                                format!("LoRA target `{n}` is not a Qwen3 linear module"),
                            )
                        })
                })
                .collect(),
        }
    }

    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.r == 0 || self.r > 4096 {
            return Err(Error::config(
                path,
                format!("r = {} is out of range", self.r),
            ));
        }
        if !self.lora_alpha.is_finite() {
            return Err(Error::config(path, "lora_alpha is not finite"));
        }
        if self.use_rslora || self.use_dora {
            return Err(Error::config(
                path,
                "rsLoRA / DoRA adapters are not supported",
            ));
        }
        self.targets(path).map(|_| ())
    }
}

/// Reads and parses a JSON file into `T`, naming the file on failure.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::malformed(path, e.to_string()))
}
