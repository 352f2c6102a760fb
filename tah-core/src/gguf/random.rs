//! Random-weight model files with real shapes, for benchmarks (`tah
//! init-random`): the released TaH recipe on Qwen3-0.6B's shapes, or a tiny
//! shape for tests, in any quantization, from a seed.
//!
//! What the weights are:
//! - base matrices: uniform values with the standard deviation of Hugging
//!   Face's initialisation (0.02), quantized once into a pool of blocks;
//!   each matrix is a seeded random sequence of pool blocks (32 values, or
//!   256 for k-quants). Quantizing 600M values one by one would take
//!   minutes; tiling the pool takes a second and gives the same bytes per
//!   weight, so the same speed and memory;
//! - norms: ones; LoRA A and B: uniform, std 0.02, f32;
//! - decider: Linear weights uniform std 0.02, biases 0, LayerNorms 1 / 0,
//!   and an output bias of -4, so it says "easy" (p ~ 0.02, far below the
//!   0.9 threshold) for nearly every token: a realistic hard rate comes from
//!   `tah bench --hard-rate`, while the decider still runs on every token.
//!
//! Every tensor's bytes depend only on the seed and its name, so the
//! `base_only` file (a plain Qwen3 GGUF, without any `tah.` key, LoRA or
//! decider tensor, with llama.cpp's tokenizer keys so llama.cpp runs it) has
//! exactly the base tensors of the TaH file written with the same seed.

use std::path::Path;
use std::sync::Mutex;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};

use super::names::DECIDER_PREFIX;
use super::plan::{
    check_overwrite, metadata, plan_base, plan_lora, tensor_bytes, write_plan, ConvertSummary,
    Part, Plan, Quant, TahSettings,
};
use super::vocab::ggml_tokenizer_metadata;
use super::writer::TensorEntry;
use super::{byte_size, dtype_id};
use crate::config::{
    DeciderConfig, EosTokenIds, InputUpdaterConfig, LoraConfig, LoraTargets, Qwen3Config,
    TahConfig, LINEAR_MODULES,
};
use crate::decider::Decider;
use crate::error::{Error, Result};
use crate::tokenizer::TahTokenizer;
use crate::weights::{WeightBuilder, WeightSource};

/// Standard deviation of every random weight (Hugging Face's `initializer_range`).
const WEIGHT_STD: f32 = 0.02;
/// Bias of the decider's output unit: sigmoid(-4) ~ 0.018.
const DECIDER_OUTPUT_BIAS: f32 = -4.0;
/// Values quantized into each type's pool of blocks.
const POOL_VALUES: usize = 1 << 20;
/// Qwen3's `<|im_end|>`.
const QWEN3_EOS: u32 = 151_645;
/// Qwen3's embedding rows (151669 tokens, padded).
const QWEN3_VOCAB: usize = 151_936;

/// The shapes and TaH settings of a random model.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomShape {
    pub name: &'static str,
    pub qwen3: Qwen3Config,
    pub tah: TahConfig,
    pub lora_r: usize,
    pub lora_alpha: f64,
}

impl RandomShape {
    /// Qwen3-0.6B with the released TaH recipe (LoRA r 16 / alpha 32 on all
    /// linear layers, decider on hidden states [0, 7, 13, 20, 26] with six
    /// 256-wide blocks, expansion 4, top-k 100, threshold 0.9, max_iter 2).
    /// `normalize_input` is not documented for the release; it is on here
    /// (one LayerNorm over 5 x 1024 features per token).
    pub fn qwen3_0_6b() -> Self {
        RandomShape {
            name: "qwen3-0.6b",
            qwen3: Qwen3Config {
                vocab_size: QWEN3_VOCAB,
                hidden_size: 1024,
                intermediate_size: 3072,
                num_hidden_layers: 28,
                num_attention_heads: 16,
                num_key_value_heads: 8,
                head_dim: 128,
                rope_theta: 1e6,
                rms_norm_eps: 1e-6,
                max_position_embeddings: 40_960,
                tie_word_embeddings: true,
                eos_token_id: Some(EosTokenIds::One(QWEN3_EOS)),
            },
            tah: TahConfig {
                max_iter: 2,
                iter_decider: "MLPIterDecider".into(),
                iter_decider_kwargs: DeciderConfig {
                    topk: 100,
                    hidden_states_size: 1024,
                    hidden_states_layer_nums: vec![0, 7, 13, 20, 26],
                    hidden_dims: vec![256; 6],
                    expansion_factor: 4,
                    normalize_input: true,
                    threshold: 0.9,
                },
                input_updater_kwargs: InputUpdaterConfig { topk: 100 },
            },
            lora_r: 16,
            lora_alpha: 32.0,
        }
    }

    /// A small model with the real vocabulary, rows of whole k-quant blocks,
    /// and every TaH part, for tests and quick runs. Its rows are one
    /// k-quant block, so under q4_k many embedding rows repeat (tied
    /// logits); types with 32-value blocks do not have that problem.
    pub fn tiny() -> Self {
        let full = Self::qwen3_0_6b();
        let hidden = 256;
        RandomShape {
            name: "tiny",
            qwen3: Qwen3Config {
                hidden_size: hidden,
                intermediate_size: 512,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 64,
                max_position_embeddings: 4096,
                ..full.qwen3
            },
            tah: TahConfig {
                iter_decider_kwargs: DeciderConfig {
                    hidden_states_size: hidden,
                    hidden_states_layer_nums: vec![0, 2, 4],
                    hidden_dims: vec![64, 64],
                    expansion_factor: 2,
                    ..full.tah.iter_decider_kwargs
                },
                ..full.tah
            },
            lora_r: 4,
            lora_alpha: 8.0,
        }
    }
}

impl std::str::FromStr for RandomShape {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "qwen3-0.6b" => Ok(Self::qwen3_0_6b()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(format!("unknown shape `{s}` (qwen3-0.6b, tiny)")),
        }
    }
}

pub struct RandomModelOptions {
    pub shape: RandomShape,
    pub quant: Quant,
    pub seed: u64,
    /// A plain Qwen3 file (no TaH parts) that llama.cpp can run.
    pub base_only: bool,
    /// The `tokenizer.json` text to embed.
    pub tokenizer_json: String,
    /// The chat template to embed.
    pub chat_template: Option<String>,
    /// Replace an existing output file.
    pub force: bool,
}

/// SplitMix64: small, fast, and the same stream on every platform.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, name: &str) -> Self {
        // FNV-1a of the name, so a tensor's stream does not depend on its index.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Rng(seed ^ hash.rotate_left(17))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform with standard deviation `std`.
    fn uniform(&mut self, std: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
        (unit * 2.0 - 1.0) * std * 3f32.sqrt()
    }

    fn values(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(std)).collect()
    }
}

/// Random values quantized once into `dtype`, handed out in units of whole blocks.
struct BlockPool {
    dtype: GgmlDType,
    bytes: Vec<u8>,
    unit_bytes: usize,
}

impl BlockPool {
    fn new(dtype: GgmlDType, seed: u64) -> Result<Self> {
        let unit = dtype.block_size().max(32);
        let values =
            Rng::new(seed, &format!("pool.{}", dtype_id(dtype))).values(POOL_VALUES, WEIGHT_STD);
        let pool = Tensor::from_vec(values, (POOL_VALUES / 256, 256), &Device::Cpu)?;
        Ok(BlockPool {
            dtype,
            bytes: tensor_bytes(&pool, dtype)?,
            unit_bytes: byte_size(dtype, unit).unwrap_or(0),
        })
    }

    /// `len` bytes of randomly chosen units (the last one cut short for
    /// float types, whose units are whole values).
    fn fill(&self, len: usize, rng: &mut Rng) -> Vec<u8> {
        let units = (self.bytes.len() / self.unit_bytes) as u64;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let start = (rng.next_u64() % units) as usize * self.unit_bytes;
            let take = self.unit_bytes.min(len - out.len());
            out.extend_from_slice(&self.bytes[start..start + take]);
        }
        out
    }
}

/// Makes up each decider tensor as [`Decider::new`] asks for it, so the list
/// of names and shapes is the decider's own.
struct DeciderInit {
    seed: u64,
    made: Mutex<Vec<(String, Tensor)>>,
}

impl WeightSource for DeciderInit {
    fn path(&self) -> &Path {
        Path::new("<random decider>")
    }

    fn contains(&self, _name: &str) -> bool {
        true
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let values = if name == "backbone.output_layer.1.bias" {
            vec![DECIDER_OUTPUT_BIAS; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else if shape.len() == 1 {
            vec![1.0; n] // LayerNorm weight
        } else {
            Rng::new(self.seed, name).values(n, WEIGHT_STD)
        };
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?;
        let mut made = self
            .made
            .lock()
            .map_err(|_| Error::InvalidArgument("decider init lock poisoned".into()))?;
        made.push((name.to_string(), tensor.clone()));
        Ok(tensor)
    }
}

fn random_decider(cfg: &DeciderConfig, seed: u64) -> Result<Vec<(String, Tensor)>> {
    let init = DeciderInit {
        seed,
        made: Mutex::new(Vec::new()),
    };
    Decider::new(cfg, &WeightBuilder::root(&init))?;
    init.made
        .into_inner()
        .map_err(|_| Error::InvalidArgument("decider init lock poisoned".into()))
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// Writes a random model to `to` (see the module docs for what it holds).
/// `progress(done_bytes, total_bytes, tensor)` is called after each tensor.
pub fn write_random(
    to: &Path,
    options: &RandomModelOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ConvertSummary> {
    check_overwrite(to, options.force)?;
    TahTokenizer::from_json(&options.tokenizer_json)?;
    let shape = &options.shape;
    let cfg = &shape.qwen3;
    let seed = options.seed;
    let lora = LoraConfig {
        r: shape.lora_r,
        lora_alpha: shape.lora_alpha,
        target_modules: LoraTargets::Named(LINEAR_MODULES.map(String::from).to_vec()),
        use_rslora: false,
        use_dora: false,
    };

    let mut plan = Plan::default();
    plan_base(&mut plan, cfg, options.quant, to)?;
    let mut decider = Vec::new();
    if !options.base_only {
        plan_lora(&mut plan, cfg, lora.r, &LINEAR_MODULES);
        decider = random_decider(&shape.tah.iter_decider_kwargs, seed)?;
        for (name, tensor) in &decider {
            let entry = TensorEntry {
                name: format!("{DECIDER_PREFIX}.{name}"),
                dtype: GgmlDType::F32,
                shape: tensor.dims().to_vec(),
            };
            plan.push(entry, Part::Decider, name.clone());
        }
    }

    let settings = TahSettings {
        tah: &shape.tah,
        lora: &lora,
        targets: &LINEAR_MODULES,
    };
    let kind = if options.base_only { "base" } else { "TaH" };
    let mut meta = metadata(
        format!("random {} {kind} (seed {seed})", shape.name),
        cfg,
        options.quant,
        (!options.base_only).then_some(&settings),
        options.tokenizer_json.clone(),
        options.chat_template.clone(),
    );
    if options.base_only {
        meta.extend(ggml_tokenizer_metadata(
            &options.tokenizer_json,
            cfg.vocab_size,
            "qwen2",
        )?);
    }

    let mut pools: Vec<BlockPool> = Vec::new();
    write_plan(
        to,
        &meta,
        &plan,
        |p| {
            let size = p.entry.byte_size()?;
            let mut rng = Rng::new(seed, &p.entry.name);
            Ok(match p.part {
                Part::Norms => f32_bytes(std::iter::repeat_n(1.0, size / 4)),
                Part::Lora => f32_bytes(rng.values(size / 4, WEIGHT_STD)),
                Part::Decider => {
                    let (_, tensor) = decider
                        .iter()
                        .find(|(name, _)| *name == p.source)
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!("no decider tensor {}", p.source))
                        })?;
                    tensor_bytes(tensor, GgmlDType::F32)?
                }
                Part::Embedding | Part::Projections | Part::Output => {
                    let dtype = p.entry.dtype;
                    let pool = match pools.iter().position(|pool| pool.dtype == dtype) {
                        Some(i) => &pools[i],
                        None => {
                            pools.push(BlockPool::new(dtype, seed)?);
                            &pools[pools.len() - 1]
                        }
                    };
                    pool.fill(size, &mut rng)
                }
            })
        },
        progress,
    )
}
