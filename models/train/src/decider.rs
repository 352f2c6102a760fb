//! The trainable `MLPIterDecider`: same state-dict names and maths as the
//! runtime's `tah_core::decider` (which reads what this one writes).

use candle_core::{Device, Tensor, D};
use tah_core::config::DeciderConfig;
use tah_core::logits::top_k;

use crate::data_batch::{Batch, Example};
use crate::net::Net;
use crate::params::{Init, Params};
use crate::rng::Rng;
use crate::train::Oracle;

const LN_EPS: f64 = 1e-5;

pub struct TrainDecider {
    pub cfg: DeciderConfig,
    pub params: Params,
}

impl TrainDecider {
    pub fn new(cfg: DeciderConfig, seed: u64) -> anyhow::Result<Self> {
        let mut rng = Rng::new(seed);
        let mut params = Params::default();
        let h = cfg.hidden_states_size;
        let features = h * cfg.hidden_states_layer_nums.len();
        let mut linear =
            |p: &mut Params, name: &str, inp: usize, out: usize| -> anyhow::Result<()> {
                p.add(
                    &mut rng,
                    &format!("{name}.weight"),
                    &[out, inp],
                    Init::Normal(1.0 / (inp as f64).sqrt()),
                )?;
                p.add(&mut rng, &format!("{name}.bias"), &[out], Init::Const(0.0))?;
                Ok(())
            };
        let dims = cfg.hidden_dims.clone();
        let (first, last) = (dims[0], dims[dims.len() - 1]);
        linear(&mut params, "logits_projection", cfg.topk, h)?;
        linear(&mut params, "combined_projection", features + h, first)?;
        linear(&mut params, "backbone.input_projection", first, first)?;
        let mut block_dims = dims.clone();
        block_dims.push(last);
        for (j, w) in block_dims.windows(2).enumerate() {
            let p = format!("backbone.blocks.{j}");
            linear(
                &mut params,
                &format!("{p}.mlp.0"),
                w[0],
                w[0] * cfg.expansion_factor,
            )?;
            linear(
                &mut params,
                &format!("{p}.mlp.3"),
                w[0] * cfg.expansion_factor,
                w[1],
            )?;
            if w[0] != w[1] {
                linear(&mut params, &format!("{p}.dim_change"), w[0], w[1])?;
            }
        }
        linear(&mut params, "backbone.output_layer.1", last, 1)?;
        let mut norms = vec![("backbone.output_layer.0".to_string(), last)];
        if cfg.normalize_input {
            norms.push(("layer_norm_hidden_states".into(), features));
        }
        for (j, w) in block_dims.windows(2).enumerate() {
            norms.push((format!("backbone.blocks.{j}.layer_norm"), w[0]));
        }
        for (name, dim) in norms {
            params.add(
                &mut rng,
                &format!("{name}.weight"),
                &[dim],
                Init::Const(1.0),
            )?;
            params.add(&mut rng, &format!("{name}.bias"), &[dim], Init::Const(0.0))?;
        }
        Ok(TrainDecider { cfg, params })
    }

    fn linear(&self, x: &Tensor, name: &str) -> anyhow::Result<Tensor> {
        let w = self.params.get(&format!("{name}.weight"))?;
        let b = self.params.get(&format!("{name}.bias"))?;
        Ok(x.matmul(&w.t()?)?.broadcast_add(&b)?)
    }

    fn layer_norm(&self, x: &Tensor, name: &str) -> anyhow::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let x = centred.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        let w = self.params.get(&format!("{name}.weight"))?;
        let b = self.params.get(&format!("{name}.bias"))?;
        Ok(x.broadcast_mul(&w)?.broadcast_add(&b)?)
    }

    /// Logit of "take another pass" for `[n, features]` / `[n, topk]` inputs.
    pub fn forward(&self, hidden: &Tensor, top: &Tensor) -> anyhow::Result<Tensor> {
        let (mut hidden, mut top) = (hidden.clone(), top.clone());
        if self.cfg.normalize_input {
            hidden = self.layer_norm(&hidden, "layer_norm_hidden_states")?;
            top = candle_nn::ops::softmax(&top, D::Minus1)?;
        }
        let combined = Tensor::cat(&[hidden, self.linear(&top, "logits_projection")?], 1)?;
        let mut z = self.linear(
            &self.linear(&combined, "combined_projection")?,
            "backbone.input_projection",
        )?;
        let blocks = self.cfg.hidden_dims.len();
        for j in 0..blocks {
            let p = format!("backbone.blocks.{j}");
            let inner = self.linear(
                &self.layer_norm(&z, &format!("{p}.layer_norm"))?,
                &format!("{p}.mlp.0"),
            )?;
            let inner = self.linear(&inner.gelu_erf()?, &format!("{p}.mlp.3"))?;
            let dim_change = format!("{p}.dim_change");
            let residual = if self.params.get(&format!("{dim_change}.weight")).is_ok() {
                self.linear(&z, &dim_change)?
            } else {
                z.clone()
            };
            z = (residual + inner)?;
        }
        let z = self.layer_norm(&z, "backbone.output_layer.0")?;
        Ok(self.linear(&z, "backbone.output_layer.1")?.squeeze(1)?)
    }
}

/// Decider inputs of every real (non-pad) position: depth-1 hidden states,
/// top-k depth-1 logits, and the oracle's label.
pub struct Features {
    pub hidden: Tensor,
    pub top: Tensor,
    pub labels: Vec<bool>,
}

impl Features {
    /// The share of tokens the oracle calls hard.
    pub fn oracle_hard(&self) -> f64 {
        let hard = self.labels.iter().filter(|&&l| l).count();
        hard as f64 / self.labels.len().max(1) as f64
    }
}

pub fn features(
    net: &Net,
    cfg: &DeciderConfig,
    examples: &[Example],
    oracle: &Oracle,
    max_tokens: usize,
) -> anyhow::Result<Features> {
    let (mut hidden, mut top, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for group in Batch::packed(examples, max_tokens) {
        let b = Batch::new(&group)?;
        let d1 = net.depth1(&b.inputs, &cfg.hidden_states_layer_nums)?;
        let hard = oracle.label(&d1.logits, &b)?;
        let h = Tensor::cat(&d1.hidden, D::Minus1)?
            .detach()
            .to_vec3::<f32>()?;
        let logits = d1.logits.detach().to_vec3::<f32>()?;
        for (bi, ex) in group.iter().enumerate() {
            for p in 0..ex.len() {
                hidden.extend_from_slice(&h[bi][p]);
                top.extend(top_k(&logits[bi][p], cfg.topk).into_iter().map(|(_, v)| v));
                labels.push(hard[bi * b.t + p]);
            }
        }
    }
    let n = labels.len();
    Ok(Features {
        hidden: Tensor::from_vec(hidden, (n, ()), &Device::Cpu)?,
        top: Tensor::from_vec(top, (n, cfg.topk), &Device::Cpu)?,
        labels,
    })
}

/// Weighted BCE with logits: `pos_weight * y * softplus(-z) + (1 - y) * softplus(z)`.
pub fn bce(logits: &Tensor, labels: &Tensor, pos_weight: f64) -> anyhow::Result<Tensor> {
    let softplus = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
    };
    let pos = (labels * pos_weight)?.mul(&softplus(&logits.neg()?)?)?;
    let neg = (labels.neg()? + 1.0)?.mul(&softplus(logits)?)?;
    Ok((pos + neg)?.mean_all()?)
}
