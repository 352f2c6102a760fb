//! A differentiable Qwen3 + TaH forward on candle autograd, for training.
//!
//! Only ops with a backward pass are used (RMSNorm, RoPE, the attention
//! softmax and the cross-entropy are fused ops of `ops`). Duo-causal
//! attention over a whole sequence: depth 1 runs causally; depth 2 runs at
//! the positions that take it only (gathered per row), a depth-2 query at
//! position p seeing the depth-1 keys <= p and the depth-2 keys of the
//! iterated positions <= p (its own included); their depth-2 logits are
//! added to their depth-1 logits. This is what the runtime's two-depth KV
//! cache computes token by token.

use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};
use tah_core::config::{LoraConfig, Qwen3Config, LINEAR_MODULES};
use tah_core::logits::top_k;

use crate::ops;
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

/// The positions that take depth 2, gathered per row into `[b, slots]`
/// (rows padded with unused slots).
pub struct Depth2Out {
    /// `[b, slots, vocab]`: depth-1 + depth-2 logits of the gathered positions.
    pub logits: Tensor,
    /// Per slot (row-major), the flat position `row * seq + p` it holds.
    pub positions: Vec<Option<usize>>,
}

impl Depth2Out {
    /// `values[position]` of each slot (`pad` for unused slots).
    pub fn gather<T: Copy>(&self, values: &[T], pad: T) -> Vec<T> {
        self.positions
            .iter()
            .map(|p| p.map_or(pad, |p| values[p]))
            .collect()
    }
}

/// What the depth-1 pass leaves for depth 2.
pub struct Depth1 {
    /// `[batch, seq, vocab]`.
    pub logits: Tensor,
    /// Per layer, the K/V `[batch, kv_heads, seq, head_dim]`.
    pub kv: Vec<(Tensor, Tensor)>,
    pub hidden: Vec<Tensor>,
    embed: Tensor,
}

pub struct Output {
    /// `[batch, seq, vocab]`.
    pub logits1: Tensor,
    pub depth2: Option<Depth2Out>,
    /// Depth-1 hidden states at the requested indices, `[batch, seq, hidden]`.
    pub hidden: Vec<Tensor>,
}

impl Output {
    /// The final logits at every position, `[batch, seq, vocab]` (no
    /// gradient: for checks and labels).
    pub fn logits(&self) -> anyhow::Result<Tensor> {
        let (b, t, v) = self.logits1.dims3()?;
        let mut all = self.logits1.detach().flatten_all()?.to_vec1::<f32>()?;
        if let Some(d2) = &self.depth2 {
            let rows = d2.logits.detach().flatten_all()?.to_vec1::<f32>()?;
            for (slot, p) in d2.positions.iter().enumerate() {
                if let Some(p) = p {
                    all[p * v..][..v].copy_from_slice(&rows[slot * v..][..v]);
                }
            }
        }
        Ok(Tensor::from_vec(all, (b, t, v), &Device::Cpu)?)
    }
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
    /// A net with `self`'s backbone (the same variables) and a fresh adapter.
    pub fn with_shared_backbone(&self, seed: u64) -> anyhow::Result<Self> {
        let fresh = Net::new(self.cfg.clone(), seed)?;
        Ok(Net {
            cfg: self.cfg.clone(),
            base: self.base.share(),
            lora: fresh.lora,
        })
    }

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

    /// A backbone weight; `frozen` cuts it off from the gradient.
    fn weight(&self, name: &str, frozen: bool) -> anyhow::Result<Tensor> {
        let w = self.base.get(name)?;
        Ok(if frozen { w.detach() } else { w })
    }

    fn rms_norm(&self, x: &Tensor, weight: &str, frozen: bool) -> anyhow::Result<Tensor> {
        let w = self.weight(weight, frozen)?;
        Ok(ops::rms_norm(x, &w, self.cfg.qwen.rms_norm_eps)?)
    }

    fn linear(
        &self,
        x: &Tensor,
        layer: usize,
        module: &str,
        depth: usize,
        frozen: bool,
    ) -> anyhow::Result<Tensor> {
        let p = module_prefix(layer, module);
        // One 2-D product over all rows (a broadcast batched product costs
        // more, forward and backward).
        let (b, t, n) = x.dims3()?;
        let x = x.reshape((b * t, n))?;
        let w = self.weight(&format!("{p}.weight"), frozen)?;
        let y = if frozen {
            ops::const_linear(&x, &w)?
        } else {
            x.matmul(&w.t()?)?
        };
        let y = if depth < 2 {
            y
        } else {
            let a = self.lora.get(&format!("{p}.lora_A.weight"))?;
            let lb = self.lora.get(&format!("{p}.lora_B.weight"))?;
            let delta = x.matmul(&a.t()?)?.matmul(&lb.t()?)?;
            (y + (delta * self.cfg.lora.scaling())?)?
        };
        Ok(y.reshape((b, t, ()))?)
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

    /// One pass through the stack over `x` (`[b, n, hidden]`). `past` holds
    /// the depth-1 K/V per layer (for depth 2), `mask` is additive
    /// (`[1 or b, 1, n, keys]`). Returns logits, this pass's K/V and the
    /// captured hidden states.
    #[allow(clippy::type_complexity)]
    fn pass(
        &self,
        x: &Tensor,
        depth: usize,
        past: Option<&[(Tensor, Tensor)]>,
        rope: &ops::Rope,
        mask: &Tensor,
        capture: &[usize],
    ) -> anyhow::Result<(Tensor, Vec<(Tensor, Tensor)>, Vec<Tensor>)> {
        // Depth 2 leaves the backbone to the depth-1 loss (see `depth2`).
        let frozen = depth > 1;
        let (b, t, _) = x.dims3()?;
        let cfg = &self.cfg.qwen;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
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
            let a = self.rms_norm(&h, &format!("{p}.input_layernorm.weight"), frozen)?;
            let heads = |y: Tensor, n: usize, norm: &str| -> anyhow::Result<Tensor> {
                let y = self.rms_norm(
                    &y.reshape((b, t, n, hd))?,
                    &format!("{p}.self_attn.{norm}.weight"),
                    frozen,
                )?;
                Ok(ops::rope(&y.transpose(1, 2)?, rope)?)
            };
            let q = heads(self.linear(&a, l, "q_proj", depth, frozen)?, nh, "q_norm")?;
            let k = heads(self.linear(&a, l, "k_proj", depth, frozen)?, nkv, "k_norm")?;
            let v = self
                .linear(&a, l, "v_proj", depth, frozen)?
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
            let scores = q.matmul(&k_all.t()?)?;
            let probs = ops::attention_softmax(&scores, mask, 1.0 / (hd as f64).sqrt())?;
            let o = probs
                .matmul(&v_all)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, nh * hd))?;
            h = (h + self.linear(&o, l, "o_proj", depth, frozen)?)?;
            let m = self.rms_norm(&h, &format!("{p}.post_attention_layernorm.weight"), frozen)?;
            let gate = self.linear(&m, l, "gate_proj", depth, frozen)?.silu()?;
            let up = self.linear(&m, l, "up_proj", depth, frozen)?;
            h = (&h + self.linear(&(gate * up)?, l, "down_proj", depth, frozen)?)?;
            if l + 1 < layers {
                keep(l + 1, &h);
            }
        }
        let h = self.rms_norm(&h, "model.norm.weight", frozen)?;
        keep(layers, &h);
        // Tied LM head.
        let embed = self.weight("model.embed_tokens.weight", frozen)?;
        let h = h.reshape((b * t, ()))?;
        let logits = if frozen {
            ops::const_linear(&h, &embed)?
        } else {
            h.matmul(&embed.t()?)?
        }
        .reshape((b, t, ()))?;
        let hidden = hidden.into_iter().map(|h| h.expect("captured")).collect();
        Ok((logits, kvs, hidden))
    }

    /// The depth-1 pass over `ids` (`[batch, seq]`, u32), capturing the
    /// hidden states at `capture` (0 = embeddings, `layers` = final norm).
    pub fn depth1(&self, ids: &Tensor, capture: &[usize]) -> anyhow::Result<Depth1> {
        let (b, t) = ids.dims2()?;
        let (hd, theta) = (self.cfg.qwen.head_dim, self.cfg.qwen.rope_theta);
        let embed = self.base.get("model.embed_tokens.weight")?;
        let x = embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?;
        let causal: Vec<f32> = (0..t)
            .flat_map(|p| (0..t).map(move |j| if j <= p { 0.0 } else { ops::MASKED }))
            .collect();
        let causal = Tensor::from_vec(causal, (1, 1, t, t), &Device::Cpu)?;
        let rope = ops::Rope::new(&(0..t).collect::<Vec<_>>(), 1, hd, theta);
        let (logits, kv, hidden) = self.pass(&x, 1, None, &rope, &causal, capture)?;
        Ok(Depth1 {
            logits,
            kv,
            hidden,
            embed,
        })
    }

    /// The depth-2 pass at the positions `iterate` (`[batch * seq]`) marks
    /// (none: `None`). Depth 1 is tied to the base model: what depth 2 takes
    /// from it (the backbone's weights, the depth-1 K/V, logits and soft
    /// embedding) is constant to the depth-2 loss, which trains only the
    /// LoRA adapter.
    pub fn depth2(&self, d1: &Depth1, iterate: &[bool]) -> anyhow::Result<Option<Depth2Out>> {
        let (b, t, _) = d1.logits.dims3()?;
        let (hd, theta) = (self.cfg.qwen.head_dim, self.cfg.qwen.rope_theta);
        // The iterated positions of each row, in slots `[b, n]`; an unused
        // slot stands at position 0, sees key 0 of depth 1 and is nobody's key.
        let rows: Vec<Vec<usize>> = (0..b)
            .map(|r| (0..t).filter(|&p| iterate[r * t + p]).collect())
            .collect();
        let n = rows.iter().map(Vec::len).max().unwrap_or(0);
        if n == 0 {
            return Ok(None);
        }
        let positions: Vec<Option<usize>> = rows
            .iter()
            .enumerate()
            .flat_map(|(r, ps)| (0..n).map(move |i| ps.get(i).map(|p| r * t + p)))
            .collect();
        let flat: Vec<u32> = positions.iter().map(|p| p.unwrap_or(0) as u32).collect();
        let flat = Tensor::from_vec(flat, b * n, &Device::Cpu)?;
        let pos: Vec<usize> = positions.iter().map(|p| p.map_or(0, |p| p % t)).collect();

        let embed = d1.embed.detach();
        let logits1_at = d1
            .logits
            .reshape((b * t, ()))?
            .index_select(&flat, 0)?
            .detach();
        let kv1: Vec<(Tensor, Tensor)> = d1
            .kv
            .iter()
            .map(|(k, v)| (k.detach(), v.detach()))
            .collect();

        // Soft embedding: softmax over the top-k depth-1 logits (ids chosen
        // like the runtime's top_k; gradients flow through the values).
        let k = self.cfg.soft_topk;
        let top: Vec<u32> = logits1_at
            .detach()
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?
            .iter()
            .flat_map(|r| top_k(r, k).into_iter().map(|(id, _)| id))
            .collect();
        let top = Tensor::from_vec(top, (b * n, k), &Device::Cpu)?;
        let weights = candle_nn::ops::softmax(&logits1_at.gather(&top, D::Minus1)?, D::Minus1)?;
        let mixed = embed
            .index_select(&top.flatten_all()?, 0)?
            .reshape((b * n, k, ()))?;
        let x2 = weights
            .reshape((b * n, 1, k))?
            .matmul(&mixed)?
            .reshape((b, n, ()))?;

        // Duo-causal mask `[b, 1, n, t + n]`: depth-1 keys <= p, then the
        // depth-2 keys of the row's iterated positions <= p.
        let mut mask = vec![ops::MASKED; b * n * (t + n)];
        for (r, ps) in rows.iter().enumerate() {
            for i in 0..n {
                let row = &mut mask[(r * n + i) * (t + n)..][..t + n];
                let p = ps.get(i).copied().unwrap_or(0);
                row[..=p].fill(0.0);
                if i < ps.len() {
                    for (j, &q) in ps.iter().enumerate() {
                        if q <= p {
                            row[t + j] = 0.0;
                        }
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, n, t + n), &Device::Cpu)?;
        let rope = ops::Rope::new(&pos, b, hd, theta);
        let (logits2, _, _) = self.pass(&x2, 2, Some(&kv1), &rope, &mask, &[])?;
        let logits = (logits1_at.reshape((b, n, ()))? + logits2)?;
        Ok(Some(Depth2Out { logits, positions }))
    }

    /// Both passes; depth 2 where `iterate` says.
    pub fn forward(
        &self,
        ids: &Tensor,
        iterate: Option<&[bool]>,
        capture: &[usize],
    ) -> anyhow::Result<Output> {
        let d1 = self.depth1(ids, capture)?;
        let depth2 = match iterate {
            Some(iterate) => self.depth2(&d1, iterate)?,
            None => None,
        };
        Ok(Output {
            logits1: d1.logits,
            depth2,
            hidden: d1.hidden,
        })
    }
}

/// Next-token cross-entropy at every position, `[b, t]`.
pub fn token_ce(logits: &Tensor, targets: &Tensor) -> anyhow::Result<Tensor> {
    Ok(ops::cross_entropy(logits, targets)?)
}
