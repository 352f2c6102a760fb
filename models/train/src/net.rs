//! A differentiable Qwen3 + TaH forward on candle autograd, for training.
//!
//! Only ops with a backward pass are used (RMSNorm, RoPE and softmax are
//! written with basic tensor ops). Duo-causal attention over a whole sequence:
//! depth 1 runs causally; depth 2 runs at every position with a mask so a
//! depth-2 query at p sees depth-1 keys <= p plus the depth-2 keys of hard
//! positions <= p (its own included); only hard positions' depth-2 logits are
//! added. This is what the runtime's two-depth KV cache computes token by token.

use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};
use tah_core::config::{LoraConfig, Qwen3Config, LINEAR_MODULES};
use tah_core::logits::top_k;

use crate::params::{Init, Params};
use crate::rng::Rng;

/// The runtime's own config types, so the checkpoint writes exactly what
/// the loader reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetConfig {
    /// `config.json`.
    pub qwen: Qwen3Config,
    /// `lora/adapter_config.json`.
    pub lora: LoraConfig,
    /// Top-k of the soft embedding (`input_updater_kwargs.topk`).
    pub soft_topk: usize,
}

const NEG_INF: f32 = -1e9;

/// Which tokens take the depth-2 pass.
pub enum Depth2<'a> {
    None,
    /// `[batch * seq]` flags.
    Hard(&'a [bool]),
}

pub struct Output {
    pub logits1: Tensor,
    /// `logits1 + hard * logits2`, `[batch, seq, vocab]`.
    pub logits: Tensor,
    /// Depth-1 hidden states at the requested indices, `[batch, seq, hidden]`.
    pub hidden: Vec<Tensor>,
}

pub struct Net {
    pub cfg: NetConfig,
    pub base: Params,
    pub lora: Params,
}

fn module_prefix(layer: usize, module: &str) -> String {
    let group = if ["gate_proj", "up_proj", "down_proj"].contains(&module) {
        "mlp"
    } else {
        "self_attn"
    };
    format!("model.layers.{layer}.{group}.{module}")
}

impl Net {
    pub fn new(cfg: NetConfig, seed: u64) -> anyhow::Result<Self> {
        let mut rng = Rng::new(seed);
        let q = &cfg.qwen;
        let (h, i, hd) = (q.hidden_size, q.intermediate_size, q.head_dim);
        let (nh, nkv) = (q.num_attention_heads, q.num_key_value_heads);
        let mut base = Params::default();
        let mut lora = Params::default();
        base.add(
            &mut rng,
            "model.embed_tokens.weight",
            &[q.vocab_size, h],
            Init::Normal(0.02),
        )?;
        base.add(&mut rng, "model.norm.weight", &[h], Init::Const(1.0))?;
        for l in 0..q.num_hidden_layers {
            for m in LINEAR_MODULES {
                let (out, inp) = match m {
                    "q_proj" => (nh * hd, h),
                    "k_proj" | "v_proj" => (nkv * hd, h),
                    "o_proj" => (h, nh * hd),
                    "gate_proj" | "up_proj" => (i, h),
                    _ => (h, i),
                };
                let p = module_prefix(l, m);
                base.add(
                    &mut rng,
                    &format!("{p}.weight"),
                    &[out, inp],
                    Init::Normal(0.02),
                )?;
                // PEFT init: A random, B zero, so the adapter starts as a no-op.
                let a_std = 1.0 / (inp as f64).sqrt();
                lora.add(
                    &mut rng,
                    &format!("{p}.lora_A.weight"),
                    &[cfg.lora.r, inp],
                    Init::Normal(a_std),
                )?;
                lora.add(
                    &mut rng,
                    &format!("{p}.lora_B.weight"),
                    &[out, cfg.lora.r],
                    Init::Const(0.0),
                )?;
            }
            let p = format!("model.layers.{l}");
            for n in ["input_layernorm", "post_attention_layernorm"] {
                base.add(&mut rng, &format!("{p}.{n}.weight"), &[h], Init::Const(1.0))?;
            }
            for n in ["q_norm", "k_norm"] {
                base.add(
                    &mut rng,
                    &format!("{p}.self_attn.{n}.weight"),
                    &[hd],
                    Init::Const(1.0),
                )?;
            }
        }
        Ok(Net { cfg, base, lora })
    }

    fn rms_norm(&self, x: &Tensor, weight: &str) -> anyhow::Result<Tensor> {
        let w = self.base.get(weight)?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let x = x.broadcast_div(&(var + self.cfg.qwen.rms_norm_eps)?.sqrt()?)?;
        Ok(x.broadcast_mul(&w)?)
    }

    fn linear(
        &self,
        x: &Tensor,
        layer: usize,
        module: &str,
        depth: usize,
    ) -> anyhow::Result<Tensor> {
        let p = module_prefix(layer, module);
        let y = x.broadcast_matmul(&self.base.get(&format!("{p}.weight"))?.t()?)?;
        if depth < 2 {
            return Ok(y);
        }
        let a = self.lora.get(&format!("{p}.lora_A.weight"))?;
        let b = self.lora.get(&format!("{p}.lora_B.weight"))?;
        let delta = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
        Ok((y + (delta * self.cfg.lora.scaling())?)?)
    }

    /// `cos`, `sin` of shape `[seq, head_dim]` (rotate-half layout), in f32
    /// exactly as the runtime computes them.
    fn rope_tables(&self, seq: usize) -> anyhow::Result<(Tensor, Tensor)> {
        let hd = self.cfg.qwen.head_dim;
        let half = hd / 2;
        let (mut cos, mut sin) = (vec![0f32; seq * hd], vec![0f32; seq * hd]);
        for p in 0..seq {
            for j in 0..half {
                let f = 1.0 / (self.cfg.qwen.rope_theta as f32).powf((2 * j) as f32 / hd as f32);
                let (s, c) = (p as f32 * f).sin_cos();
                for k in [j, j + half] {
                    cos[p * hd + k] = c;
                    sin[p * hd + k] = s;
                }
            }
        }
        Ok((
            Tensor::from_vec(cos, (seq, hd), &Device::Cpu)?,
            Tensor::from_vec(sin, (seq, hd), &Device::Cpu)?,
        ))
    }

    /// `x`: `[b, heads, seq, hd]`.
    fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> anyhow::Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
    }

    fn repeat_kv(&self, x: Tensor) -> anyhow::Result<Tensor> {
        let rep = self.cfg.qwen.num_attention_heads / self.cfg.qwen.num_key_value_heads;
        if rep == 1 {
            return Ok(x);
        }
        let (b, nkv, s, hd) = x.dims4()?;
        Ok(x.unsqueeze(2)?
            .expand((b, nkv, rep, s, hd))?
            .reshape((b, nkv * rep, s, hd))?)
    }

    /// One pass through the stack. `past` holds the depth-1 K/V per layer
    /// (for depth 2); returns logits, this pass's K/V and captured states.
    #[allow(clippy::type_complexity)]
    fn pass(
        &self,
        x: &Tensor,
        depth: usize,
        past: Option<&[(Tensor, Tensor)]>,
        mask: &Tensor,
        capture: &[usize],
    ) -> anyhow::Result<(Tensor, Vec<(Tensor, Tensor)>, Vec<Tensor>)> {
        let (b, t, _) = x.dims3()?;
        let cfg = &self.cfg.qwen;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let (cos, sin) = self.rope_tables(t)?;
        let layers = cfg.num_hidden_layers;
        let mut hidden = vec![None; capture.len()];
        let mut keep = |i: usize, h: &Tensor| {
            for (slot, &want) in hidden.iter_mut().zip(capture) {
                if want == i {
                    *slot = Some(h.clone());
                }
            }
        };
        let mut kvs = Vec::with_capacity(layers);
        let mut h = x.clone();
        keep(0, &h);
        for l in 0..layers {
            let p = format!("model.layers.{l}");
            let a = self.rms_norm(&h, &format!("{p}.input_layernorm.weight"))?;
            let heads = |y: Tensor, n: usize, norm: &str| -> anyhow::Result<Tensor> {
                let y = self.rms_norm(
                    &y.reshape((b, t, n, hd))?,
                    &format!("{p}.self_attn.{norm}.weight"),
                )?;
                Self::rope(&y.transpose(1, 2)?.contiguous()?, &cos, &sin)
            };
            let q = heads(self.linear(&a, l, "q_proj", depth)?, nh, "q_norm")?;
            let k = heads(self.linear(&a, l, "k_proj", depth)?, nkv, "k_norm")?;
            let v = self
                .linear(&a, l, "v_proj", depth)?
                .reshape((b, t, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let (k_all, v_all) = match past {
                Some(past) => (
                    Tensor::cat(&[&past[l].0, &k], 2)?,
                    Tensor::cat(&[&past[l].1, &v], 2)?,
                ),
                None => (k.clone(), v.clone()),
            };
            kvs.push((k, v));
            let k_all = self.repeat_kv(k_all)?;
            let v_all = self.repeat_kv(v_all)?;
            let scores = (q.matmul(&k_all.t()?.contiguous()?)? / (hd as f64).sqrt())?;
            let probs = candle_nn::ops::softmax(&scores.broadcast_add(mask)?, D::Minus1)?;
            let o = probs
                .matmul(&v_all)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, nh * hd))?;
            h = (h + self.linear(&o, l, "o_proj", depth)?)?;
            let m = self.rms_norm(&h, &format!("{p}.post_attention_layernorm.weight"))?;
            let gate = self.linear(&m, l, "gate_proj", depth)?.silu()?;
            let up = self.linear(&m, l, "up_proj", depth)?;
            h = (&h + self.linear(&(gate * up)?, l, "down_proj", depth)?)?;
            if l + 1 < layers {
                keep(l + 1, &h);
            }
        }
        let h = self.rms_norm(&h, "model.norm.weight")?;
        keep(layers, &h);
        // Tied LM head.
        let logits = h.broadcast_matmul(&self.base.get("model.embed_tokens.weight")?.t()?)?;
        let hidden = hidden.into_iter().map(|h| h.expect("captured")).collect();
        Ok((logits, kvs, hidden))
    }

    /// `ids`: `[batch, seq]` (u32). See [`Depth2`].
    pub fn forward(
        &self,
        ids: &Tensor,
        depth2: Depth2,
        capture: &[usize],
    ) -> anyhow::Result<Output> {
        let (b, t) = ids.dims2()?;
        let embed = self.base.get("model.embed_tokens.weight")?;
        let x = embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?;
        let causal: Vec<f32> = (0..t)
            .flat_map(|p| (0..t).map(move |j| if j <= p { 0.0 } else { NEG_INF }))
            .collect();
        let causal = Tensor::from_vec(causal, (t, t), &Device::Cpu)?;
        let (logits1, kv1, hidden) = self.pass(&x, 1, None, &causal, capture)?;
        let Depth2::Hard(hard) = depth2 else {
            return Ok(Output {
                logits: logits1.clone(),
                logits1,
                hidden,
            });
        };

        // Soft embedding: softmax over the top-k depth-1 logits (ids chosen
        // like the runtime's top_k; gradients flow through the values).
        let k = self.cfg.soft_topk;
        let rows = logits1
            .detach()
            .to_dtype(DType::F32)?
            .reshape((b * t, ()))?
            .to_vec2::<f32>()?;
        let top: Vec<u32> = rows
            .iter()
            .flat_map(|r| top_k(r, k).into_iter().map(|(id, _)| id))
            .collect();
        let top = Tensor::from_vec(top, (b, t, k), &Device::Cpu)?;
        let weights = candle_nn::ops::softmax(&logits1.gather(&top, D::Minus1)?, D::Minus1)?;
        let mixed = embed
            .index_select(&top.flatten_all()?, 0)?
            .reshape((b * t, k, ()))?;
        let x2 = weights
            .reshape((b * t, 1, k))?
            .matmul(&mixed)?
            .reshape((b, t, ()))?;

        // Duo-causal mask `[b, 1, t, 2t]`: depth-1 keys <= p, then depth-2
        // keys of hard positions <= p and the query's own.
        let mut mask = vec![NEG_INF; b * t * 2 * t];
        for bi in 0..b {
            for p in 0..t {
                let row = &mut mask[(bi * t + p) * 2 * t..][..2 * t];
                for j in 0..=p {
                    row[j] = 0.0;
                    if j == p || hard[bi * t + j] {
                        row[t + j] = 0.0;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, 2 * t), &Device::Cpu)?;
        let (logits2, _, _) = self.pass(&x2, 2, Some(&kv1), &mask, &[])?;
        let hard: Vec<f32> = hard.iter().map(|&h| if h { 1.0 } else { 0.0 }).collect();
        let hard = Tensor::from_vec(hard, (b, t, 1), &Device::Cpu)?;
        let logits = (&logits1 + logits2.broadcast_mul(&hard)?)?;
        Ok(Output {
            logits1,
            logits,
            hidden,
        })
    }
}

/// Next-token cross-entropy at every position, `[b, t]`.
pub fn token_ce(logits: &Tensor, targets: &Tensor) -> anyhow::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?;
    Ok((lse - picked)?.squeeze(D::Minus1)?)
}
