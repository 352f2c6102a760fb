//! Named trainable tensors, initialised from our own seeded PRNG and saved
//! under their checkpoint names (Hugging Face / PEFT / PyTorch state dict).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::rng::Rng;

#[derive(Default)]
pub struct Params {
    vars: BTreeMap<String, Var>,
}

pub enum Init {
    Normal(f64),
    Const(f32),
}

impl Params {
    pub fn add(
        &mut self,
        rng: &mut Rng,
        name: &str,
        shape: &[usize],
        init: Init,
    ) -> anyhow::Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match init {
            Init::Normal(std) => (0..n).map(|_| (rng.normal() * std) as f32).collect(),
            Init::Const(c) => vec![c; n],
        };
        let var = Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu)?)?;
        let t = var.as_tensor().clone();
        self.vars.insert(name.to_string(), var);
        Ok(t)
    }

    pub fn get(&self, name: &str) -> anyhow::Result<Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| anyhow::anyhow!("no parameter `{name}`"))
    }

    pub fn vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Saves every tensor as f32 safetensors under `rename(name)`.
    pub fn save(&self, path: &Path, rename: impl Fn(&str) -> String) -> anyhow::Result<()> {
        let map: HashMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(k, v)| (rename(k), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    /// The same variables (updates to one are updates to the other).
    pub fn share(&self) -> Params {
        Params {
            vars: self.vars.clone(),
        }
    }

    /// Copies values from `other` for every name both hold.
    pub fn load_from(&self, other: &Params) -> anyhow::Result<()> {
        for (name, var) in &self.vars {
            if let Some(src) = other.vars.get(name) {
                var.set(&src.as_tensor().copy()?)?;
            }
        }
        Ok(())
    }
}
