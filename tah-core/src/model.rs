//! The Qwen3 network of a TaH model, run once per pass.
//!
//! Reads top to bottom like the math: rotary embedding, LoRA-capable linear
//! layers, `Mlp`, `Attention`, `DecoderLayer`, `Model`. Depth 1 runs the base
//! weights; every depth >= 2 adds the LoRA adapter. K/V go into the shared
//! [`KvCache`] at (position, depth) and attention is duo-causal.

use candle_core::Tensor;

use crate::config::{LoraConfig, Qwen3Config};
use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::kernels::dense::with_f32_values;
use crate::kernels::elementwise;
use crate::kv_cache::{KvCache, KvShape};
use crate::weights::{Matrix, WeightBuilder};

/// RoPE, "rotate-half" (NeoX) style, as Hugging Face computes it in f32.
#[derive(Clone, Debug)]
pub struct RotaryEmbedding {
    inv_freq: Vec<f32>,
}

impl RotaryEmbedding {
    pub fn new(cfg: &Qwen3Config) -> Self {
        let dim = cfg.head_dim;
        let inv_freq = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf(i as f32 / dim as f32))
            .collect();
        RotaryEmbedding { inv_freq }
    }

    /// Rotates `rows` (`[n][heads][head_dim]`), row `i` being at `positions[i]`.
    pub fn apply(&self, rows: &mut [f32], positions: &[u32], heads: usize) {
        let half = self.inv_freq.len();
        let head_dim = 2 * half;
        let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
        for (token, &p) in rows.chunks_mut(heads * head_dim).zip(positions) {
            // The token's angles once; then every head rotates its two
            // halves in one loop over j (which vectorizes).
            for ((c, s), &f) in cos.iter_mut().zip(&mut sin).zip(&self.inv_freq) {
                (*s, *c) = (p as f32 * f).sin_cos();
            }
            for head in token.chunks_exact_mut(head_dim) {
                let (x1, x2) = head.split_at_mut(half);
                for (((a, b), c), s) in x1.iter_mut().zip(x2).zip(&cos).zip(&sin) {
                    (*a, *b) = (*a * c - *b * s, *b * c + *a * s);
                }
            }
        }
    }
}

/// PEFT LoRA pair: `scaling * B (A x)`.
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    a: Matrix,
    b: Matrix,
    scaling: f64,
}

/// A bias-free linear layer that adds its LoRA adapter at depth >= 2.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Matrix,
    lora: Option<LoraAdapter>,
}

impl Linear {
    /// `name` is the module (e.g. `q_proj`) under both builders.
    pub fn new(
        vb: &WeightBuilder,
        lora: Option<&LoraWeights>,
        name: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Self> {
        let weight = vb.matrix(&format!("{name}.weight"), out_dim, in_dim)?;
        let lora = match lora {
            Some(l) if l.targets.contains(&name) => {
                let lvb = l.vb.pp(name);
                let r = l.config.r;
                Some(LoraAdapter {
                    a: lvb.matrix("lora_A.weight", r, in_dim)?,
                    b: lvb.matrix("lora_B.weight", out_dim, r)?,
                    scaling: l.config.scaling(),
                })
            }
            _ => None,
        };
        Ok(Linear { weight, lora })
    }

    pub fn forward(&self, x: &Tensor, depth: usize) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        match &self.lora {
            Some(l) if depth >= 2 => {
                let delta = l.b.forward(&l.a.forward(x)?)?;
                Ok((y + (delta * l.scaling)?)?)
            }
            _ => Ok(y),
        }
    }
}

/// The adapter's weights (a builder at the PEFT root `base_model.model`, or
/// below it) and which modules it targets.
#[derive(Clone)]
pub struct LoraWeights<'a> {
    pub vb: WeightBuilder<'a>,
    pub config: &'a LoraConfig,
    pub targets: &'a [&'static str],
}

impl<'a> LoraWeights<'a> {
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        LoraWeights {
            vb: self.vb.pp(name),
            ..self.clone()
        }
    }
}

#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    pub fn new(vb: &WeightBuilder, name: &str, size: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            weight: vb.tensor(&format!("{name}.weight"), &[size])?.to_vec1()?,
            eps: eps as f32,
        })
    }

    /// Each row of `x` (its last dimension) normalized.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dims().last() != Some(&self.weight.len()) {
            return Err(Error::InvalidArgument(format!(
                "RMSNorm of width {} on a {:?} tensor",
                self.weight.len(),
                x.dims()
            )));
        }
        let mut out = vec![0f32; x.elem_count()];
        with_f32_values(x, |values| {
            elementwise::rms_norm(values, &self.weight, self.eps, &mut out);
            Ok(())
        })?;
        Ok(Tensor::from_vec(out, x.shape(), x.device())?)
    }
}

#[derive(Clone, Debug)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    pub fn new(cfg: &Qwen3Config, vb: &WeightBuilder, lora: Option<&LoraWeights>) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate_proj: Linear::new(vb, lora, "gate_proj", h, i)?,
            up_proj: Linear::new(vb, lora, "up_proj", h, i)?,
            down_proj: Linear::new(vb, lora, "down_proj", i, h)?,
        })
    }

    pub fn forward(&self, x: &Tensor, depth: usize) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x, depth)?;
        let up = self.up_proj.forward(x, depth)?;
        // SwiGLU: silu(gate) * up.
        let mut hidden = gate.flatten_all()?.to_vec1::<f32>()?;
        with_f32_values(&up, |up| {
            elementwise::silu_mul(&mut hidden, up);
            Ok(())
        })?;
        let hidden = Tensor::from_vec(hidden, gate.shape(), x.device())?;
        self.down_proj.forward(&hidden, depth)
    }
}

#[derive(Clone, Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    layer_idx: usize,
}

impl Attention {
    pub fn new(
        cfg: &Qwen3Config,
        vb: &WeightBuilder,
        lora: Option<&LoraWeights>,
        layer_idx: usize,
    ) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Ok(Attention {
            q_proj: Linear::new(vb, lora, "q_proj", h, nh * hd)?,
            k_proj: Linear::new(vb, lora, "k_proj", h, nkv * hd)?,
            v_proj: Linear::new(vb, lora, "v_proj", h, nkv * hd)?,
            o_proj: Linear::new(vb, lora, "o_proj", nh * hd, h)?,
            q_norm: RmsNorm::new(vb, "q_norm", hd, cfg.rms_norm_eps)?,
            k_norm: RmsNorm::new(vb, "k_norm", hd, cfg.rms_norm_eps)?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
            layer_idx,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        positions: &[u32],
        depth: usize,
        rotary: &RotaryEmbedding,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let n = positions.len();
        // 1. Project, split into heads, per-head RMSNorm (Qwen3's q_norm / k_norm).
        let heads = |t: Tensor, count: usize| t.reshape((n, count, self.head_dim));
        let q = self
            .q_norm
            .forward(&heads(self.q_proj.forward(x, depth)?, self.num_heads)?)?;
        let k = self
            .k_norm
            .forward(&heads(self.k_proj.forward(x, depth)?, self.num_kv_heads)?)?;
        let v = self.v_proj.forward(x, depth)?;
        let mut q = q.flatten_all()?.to_vec1::<f32>()?;
        let mut k = k.flatten_all()?.to_vec1::<f32>()?;
        let v = v.flatten_all()?.to_vec1::<f32>()?;
        // 2. RoPE at the token's position, the same at every depth.
        rotary.apply(&mut q, positions, self.num_heads);
        rotary.apply(&mut k, positions, self.num_kv_heads);
        // 3. This pass's K/V join the cache at (position, depth) first, so each
        //    query sees itself and the earlier tokens of its own chunk.
        cache.append(self.layer_idx, depth, &k, &v);
        // 4. Duo-causal attention over every depth <= this one.
        let mut out = vec![0f32; q.len()];
        cache.attend(
            self.layer_idx,
            depth,
            positions,
            self.num_heads,
            &q,
            &mut out,
        );
        let out = Tensor::from_vec(out, (n, self.num_heads * self.head_dim), x.device())?;
        self.o_proj.forward(&out, depth)
    }
}

#[derive(Clone, Debug)]
pub struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    pub fn new(
        cfg: &Qwen3Config,
        vb: &WeightBuilder,
        lora: Option<&LoraWeights>,
        layer_idx: usize,
    ) -> Result<Self> {
        let attn_lora = lora.map(|l| l.pp("self_attn"));
        let mlp_lora = lora.map(|l| l.pp("mlp"));
        let h = cfg.hidden_size;
        Ok(DecoderLayer {
            self_attn: Attention::new(cfg, &vb.pp("self_attn"), attn_lora.as_ref(), layer_idx)?,
            mlp: Mlp::new(cfg, &vb.pp("mlp"), mlp_lora.as_ref())?,
            input_layernorm: RmsNorm::new(vb, "input_layernorm", h, cfg.rms_norm_eps)?,
            post_attention_layernorm: RmsNorm::new(
                vb,
                "post_attention_layernorm",
                h,
                cfg.rms_norm_eps,
            )?,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        positions: &[u32],
        depth: usize,
        rotary: &RotaryEmbedding,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x)?;
        let x = (x + self
            .self_attn
            .forward(&h, positions, depth, rotary, cache)?)?;
        let h = self.post_attention_layernorm.forward(&x)?;
        Ok((&x + self.mlp.forward(&h, depth)?)?)
    }
}

/// What one pass returns: the final (normed) hidden state of every input row,
/// ready for the LM head, and the hidden states the decider asked for
/// (Hugging Face `output_hidden_states` numbering).
pub struct PassOutput {
    pub hidden: Tensor,
    pub hidden_states: Vec<Tensor>,
}

#[derive(Clone, Debug)]
pub struct Model {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Matrix,
    rotary: RotaryEmbedding,
    cfg: Qwen3Config,
}

impl Model {
    /// `vb` is at the checkpoint root (`model.*`, `lm_head.*`); `lora` at the
    /// adapter's `base_model.model` root.
    pub fn new(
        cfg: &Qwen3Config,
        embed_tokens: Embedding,
        vb: &WeightBuilder,
        lora: Option<&LoraWeights>,
    ) -> Result<Self> {
        let model_vb = vb.pp("model");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let lora = lora.map(|l| l.pp(format!("model.layers.{i}")));
                DecoderLayer::new(cfg, &model_vb.pp(format!("layers.{i}")), lora.as_ref(), i)
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(&model_vb, "norm", cfg.hidden_size, cfg.rms_norm_eps)?;
        let lm_head = if cfg.tie_word_embeddings {
            embed_tokens.as_lm_head()
        } else {
            vb.matrix("lm_head.weight", cfg.vocab_size, cfg.hidden_size)?
        };
        Ok(Model {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: RotaryEmbedding::new(cfg),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    pub fn embedding(&self) -> &Embedding {
        &self.embed_tokens
    }

    /// Shape of the KV cache this model needs for `max_depth` depths.
    pub fn kv_shape(&self, max_depth: usize) -> KvShape {
        KvShape {
            num_layers: self.cfg.num_hidden_layers,
            num_kv_heads: self.cfg.num_key_value_heads,
            head_dim: self.cfg.head_dim,
            max_depth,
        }
    }

    /// The LM head (`[vocab, hidden]`). The caller applies it to the rows
    /// whose logits it needs: a long prefill chunk usually needs few.
    pub fn lm_head(&self) -> &Matrix {
        &self.lm_head
    }

    /// One pass at `depth` over input rows `x` (`[n, hidden]`) at `positions`,
    /// up to the final norm. `capture` lists the hidden-state indices to return (0 = input,
    /// i = after layer i, num_layers = final-normed output).
    pub fn forward(
        &self,
        x: &Tensor,
        positions: &[u32],
        depth: usize,
        cache: &mut KvCache,
        capture: &[usize],
    ) -> Result<PassOutput> {
        let num_layers = self.layers.len();
        if let Some(&bad) = capture.iter().find(|&&i| i > num_layers) {
            return Err(Error::InvalidArgument(format!(
                "hidden-state index {bad} > {num_layers}"
            )));
        }
        let mut captured: Vec<Option<Tensor>> = vec![None; capture.len()];
        let mut keep = |index: usize, t: &Tensor| {
            for (slot, &want) in captured.iter_mut().zip(capture) {
                if want == index {
                    *slot = Some(t.clone());
                }
            }
        };
        // 1. The pass's K/V entries are registered at (position, depth).
        cache.begin_pass(depth, positions)?;
        // 2. The decoder stack; hidden state i is the residual after layer i.
        let mut h = x.clone();
        keep(0, &h);
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, positions, depth, &self.rotary, cache)?;
            if i + 1 < num_layers {
                keep(i + 1, &h);
            }
        }
        // 3. Final norm (hidden state L); the LM head is the caller's.
        let h = self.norm.forward(&h)?;
        keep(num_layers, &h);
        let hidden_states = captured
            .into_iter()
            .map(|t| t.ok_or_else(|| Error::InvalidArgument("hidden state not captured".into())))
            .collect::<Result<Vec<_>>>()?;
        Ok(PassOutput {
            hidden: h,
            hidden_states,
        })
    }
}
