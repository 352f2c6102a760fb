//! Tokenized training examples and padded batches.

use candle_core::{Device, Tensor};

use crate::data::Problem;
use crate::vocab::Codec;

/// One chat transcript: prompt + worked solution + `<|im_end|>`.
#[derive(Clone, Debug)]
pub struct Example {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
    /// Per input position p (predicting `ids[p + 1]`): does the oracle call it hard?
    pub hard: Vec<bool>,
}

impl Example {
    pub fn new(codec: &Codec, p: &Problem) -> anyhow::Result<Self> {
        let (ids, prompt_len) = codec.example(&p.question, &p.solution)?;
        let hard = vec![false; ids.len() - 1];
        Ok(Example {
            ids,
            prompt_len,
            hard,
        })
    }

    /// Positions whose next token is part of the answer (trained on).
    pub fn in_answer(&self, p: usize) -> bool {
        p + 1 >= self.prompt_len && p + 1 < self.ids.len()
    }
}

/// Inputs / targets of a batch, right-padded with id 0 (masked out).
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub mask: Tensor,
    /// `[b * t]` oracle flags (padding is never hard).
    pub hard: Vec<bool>,
    pub b: usize,
    pub t: usize,
}

impl Batch {
    pub fn new(examples: &[Example]) -> anyhow::Result<Self> {
        let b = examples.len();
        let t = examples.iter().map(|e| e.ids.len() - 1).max().unwrap_or(1);
        let mut inputs = vec![0u32; b * t];
        let mut targets = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        let mut hard = vec![false; b * t];
        for (i, e) in examples.iter().enumerate() {
            for p in 0..e.ids.len() - 1 {
                inputs[i * t + p] = e.ids[p];
                targets[i * t + p] = e.ids[p + 1];
                mask[i * t + p] = if e.in_answer(p) { 1.0 } else { 0.0 };
                hard[i * t + p] = e.hard[p];
            }
        }
        Ok(Batch {
            inputs: Tensor::from_vec(inputs, (b, t), &Device::Cpu)?,
            targets: Tensor::from_vec(targets, (b, t), &Device::Cpu)?,
            mask: Tensor::from_vec(mask, (b, t), &Device::Cpu)?,
            hard,
            b,
            t,
        })
    }
}
