//! The decider (`MLPIterDecider`): after pass d of a token, reads that pass's
//! hidden states and the top-k values of the cumulative logits and gives the
//! probability that the token is hard (should take pass d + 1).

use std::path::{Path, PathBuf};

use candle_core::{Module, Tensor};
use candle_nn::LayerNorm;

use crate::config::DeciderConfig;
use crate::error::{Error, Result};
use crate::kernels::dense::dense_matmul_t;
use crate::torch_pickle::{TorchCheckpoint, TorchTensor};
use crate::weights::{SafetensorsSource, WeightBuilder, WeightSource};

/// Where a checkpoint directory keeps its decider weights.
#[derive(Clone, Debug, PartialEq)]
pub enum DeciderFile {
    /// The reference's `iter_decider.bin` (a `torch.save` archive).
    Torch(PathBuf),
    /// `iter_decider.safetensors`: the same state-dict names (what
    /// `tah-train` writes; a PyTorch pickle is impractical to write from Rust).
    Safetensors(PathBuf),
}

impl DeciderFile {
    /// `iter_decider.bin` when present, else `iter_decider.safetensors` when
    /// present; with neither, the `.bin` (whose read error names the file the
    /// reference ships).
    pub fn find(dir: &Path) -> Self {
        let torch = dir.join("iter_decider.bin");
        let safetensors = dir.join("iter_decider.safetensors");
        if torch.exists() || !safetensors.exists() {
            DeciderFile::Torch(torch)
        } else {
            DeciderFile::Safetensors(safetensors)
        }
    }

    /// Every tensor, as f32, in the file's order (safetensors: by name).
    pub fn state_dict(&self) -> Result<Vec<(String, TorchTensor)>> {
        match self {
            DeciderFile::Torch(path) => Ok(TorchCheckpoint::read(path)?.state_dict),
            DeciderFile::Safetensors(path) => {
                let source = SafetensorsSource::open(path)?;
                let mut names = source.names();
                names.sort();
                names
                    .into_iter()
                    .map(|name| {
                        let shape = source.shape(&name).unwrap_or_default();
                        let data = source.tensor(&name, &shape)?.flatten_all()?.to_vec1()?;
                        Ok((name, TorchTensor { shape, data }))
                    })
                    .collect()
            }
        }
    }
}

/// PyTorch's LayerNorm default, used by every LayerNorm of the decider.
const LAYER_NORM_EPS: f64 = 1e-5;

/// The reference stores the threshold as a bf16 parameter, so the effective
/// threshold is the configured value rounded to bf16.
pub fn bf16_threshold(threshold: f32) -> f32 {
    half::bf16::from_f32(threshold).to_f32()
}

/// `x W^T + b`. Through [`dense_matmul_t`], a decode step's single row reads
/// each weight row once; a GEMM would first pack the whole matrix (the
/// decider's ~19 MB at Qwen3-0.6B size, every token).
#[derive(Clone, Debug)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(dense_matmul_t(x, &self.weight)?.broadcast_add(&self.bias)?)
    }
}

fn linear(vb: &WeightBuilder, name: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
    let vb = vb.pp(name);
    Ok(Linear {
        weight: vb.tensor("weight", &[out_dim, in_dim])?,
        bias: vb.tensor("bias", &[out_dim])?,
    })
}

fn layer_norm(vb: &WeightBuilder, name: &str, dim: usize) -> Result<LayerNorm> {
    let vb = vb.pp(name);
    Ok(LayerNorm::new(
        vb.tensor("weight", &[dim])?,
        vb.tensor("bias", &[dim])?,
        LAYER_NORM_EPS,
    ))
}

/// `ClassifierBlock`: `dim_change(z) + mlp.3(GELU(mlp.0(layer_norm(z))))`.
#[derive(Clone, Debug)]
struct ClassifierBlock {
    layer_norm: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
    dim_change: Option<Linear>,
}

impl ClassifierBlock {
    fn new(vb: &WeightBuilder, in_dim: usize, out_dim: usize, expansion: usize) -> Result<Self> {
        Ok(ClassifierBlock {
            layer_norm: layer_norm(vb, "layer_norm", in_dim)?,
            mlp_in: linear(vb, "mlp.0", in_dim, in_dim * expansion)?,
            mlp_out: linear(vb, "mlp.3", in_dim * expansion, out_dim)?,
            dim_change: if in_dim != out_dim {
                Some(linear(vb, "dim_change", in_dim, out_dim)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let inner = self
            .mlp_in
            .forward(&self.layer_norm.forward(z)?)?
            .gelu_erf()?;
        let inner = self.mlp_out.forward(&inner)?;
        let residual = match &self.dim_change {
            Some(l) => l.forward(z)?,
            None => z.clone(),
        };
        Ok((residual + inner)?)
    }
}

#[derive(Clone, Debug)]
pub struct Decider {
    cfg: DeciderConfig,
    threshold: f32,
    layer_norm_hidden_states: Option<LayerNorm>,
    logits_projection: Linear,
    combined_projection: Linear,
    input_projection: Linear,
    blocks: Vec<ClassifierBlock>,
    output_norm: LayerNorm,
    output_layer: Linear,
}

impl Decider {
    /// `vb` is at the state-dict root (`logits_projection.weight`, ...).
    pub fn new(cfg: &DeciderConfig, vb: &WeightBuilder) -> Result<Self> {
        let h = cfg.hidden_states_size;
        let hidden_features = h * cfg.hidden_states_layer_nums.len();
        let dims = &cfg.hidden_dims;
        let first = dims[0];
        let last = dims[dims.len() - 1];
        let backbone = vb.pp("backbone");
        // Blocks go dims[0] -> dims[1] -> ... -> dims[last] -> dims[last].
        let mut block_dims = dims.clone();
        block_dims.push(last);
        let blocks = block_dims
            .windows(2)
            .enumerate()
            .map(|(j, w)| {
                ClassifierBlock::new(
                    &backbone.pp(format!("blocks.{j}")),
                    w[0],
                    w[1],
                    cfg.expansion_factor,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let layer_norm_hidden_states = if cfg.normalize_input {
            Some(layer_norm(vb, "layer_norm_hidden_states", hidden_features)?)
        } else {
            None
        };
        Ok(Decider {
            cfg: cfg.clone(),
            threshold: bf16_threshold(cfg.threshold),
            layer_norm_hidden_states,
            logits_projection: linear(vb, "logits_projection", cfg.topk, h)?,
            combined_projection: linear(vb, "combined_projection", hidden_features + h, first)?,
            input_projection: linear(&backbone, "input_projection", first, first)?,
            blocks,
            output_norm: layer_norm(&backbone, "output_layer.0", last)?,
            output_layer: linear(&backbone, "output_layer.1", last, 1)?,
        })
    }

    /// Reads the decider of a checkpoint directory (see [`DeciderFile`]).
    pub fn load(cfg: &DeciderConfig, file: &DeciderFile) -> Result<Self> {
        match file {
            DeciderFile::Torch(path) => Self::from_torch_file(cfg, path),
            DeciderFile::Safetensors(path) => {
                Decider::new(cfg, &WeightBuilder::root(&SafetensorsSource::open(path)?))
            }
        }
    }

    /// Reads `iter_decider.bin` (a `torch.save` archive).
    pub fn from_torch_file(cfg: &DeciderConfig, path: &Path) -> Result<Self> {
        let checkpoint = TorchCheckpoint::read(path)?;
        if checkpoint.class != "MLPIterDecider" {
            return Err(Error::config(
                path,
                format!("decider class `{}` is not MLPIterDecider", checkpoint.class),
            ));
        }
        let source = StateDictSource {
            path: path.to_path_buf(),
            checkpoint,
        };
        Decider::new(cfg, &WeightBuilder::root(&source))
    }

    pub fn config(&self) -> &DeciderConfig {
        &self.cfg
    }

    /// The configured threshold, rounded to bf16 like the reference.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Hidden-state indices the decider reads (0 = pass input ... L = final norm).
    pub fn hidden_state_indices(&self) -> &[usize] {
        &self.cfg.hidden_states_layer_nums
    }

    /// Number of top logits it reads.
    pub fn topk(&self) -> usize {
        self.cfg.topk
    }

    /// Probability of continuing for each of n tokens. `hidden_states` are the
    /// `[n, hidden]` states at [`hidden_state_indices`](Self::hidden_state_indices),
    /// `topk_values` the `[n, topk]` largest cumulative logits, descending.
    pub fn probabilities(
        &self,
        hidden_states: &[Tensor],
        topk_values: &Tensor,
    ) -> Result<Vec<f32>> {
        // 1. Inputs: concatenated hidden states and the top-k logit values.
        let mut hidden = Tensor::cat(hidden_states, 1)?;
        let mut topk = topk_values.clone();
        // 2. Optional normalisation: LayerNorm on the hidden features, softmax on the logits.
        if let Some(norm) = &self.layer_norm_hidden_states {
            hidden = norm.forward(&hidden)?;
            topk = candle_nn::ops::softmax_last_dim(&topk)?;
        }
        // 3. Project the logits, combine, run the backbone.
        let logits_features = self.logits_projection.forward(&topk)?;
        let combined = Tensor::cat(&[hidden, logits_features], 1)?;
        let mut z = self
            .input_projection
            .forward(&self.combined_projection.forward(&combined)?)?;
        for block in &self.blocks {
            z = block.forward(&z)?;
        }
        let logit = self.output_layer.forward(&self.output_norm.forward(&z)?)?;
        // 4. sigmoid(logit) is the probability of taking the next pass.
        let logit = logit.flatten_all()?.to_vec1::<f32>()?;
        Ok(logit
            .into_iter()
            .map(|x| 1.0 / (1.0 + (-x).exp()))
            .collect())
    }
}

/// A `torch.save` state dict as a [`WeightSource`].
struct StateDictSource {
    path: std::path::PathBuf,
    checkpoint: TorchCheckpoint,
}

impl WeightSource for StateDictSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn contains(&self, name: &str) -> bool {
        self.checkpoint.get(name).is_some()
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .checkpoint
            .get(name)
            .ok_or_else(|| Error::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: t.shape.clone(),
            });
        }
        if t.data.iter().any(|x| !x.is_finite()) {
            return Err(Error::malformed(
                &self.path,
                format!("tensor `{name}` holds NaN or infinite values"),
            ));
        }
        Ok(Tensor::from_slice(
            &t.data,
            shape,
            &candle_core::Device::Cpu,
        )?)
    }
}
