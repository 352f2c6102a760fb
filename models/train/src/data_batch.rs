//! Tokenized training transcripts and padded batches.

use candle_core::{Device, Tensor};

use crate::data::{Item, Kind};
use crate::vocab::{Codec, Transcript};

/// One chat transcript as the runtime renders it: every question, every
/// worked answer and its `<|im_end|>`.
#[derive(Clone, Debug)]
pub struct Example {
    pub kind: Kind,
    pub ids: Vec<u32>,
    /// Per input position p (predicting `ids[p + 1]`): is that an answer
    /// token (trained on)?
    pub answer: Vec<bool>,
}

impl Example {
    /// `enable_thinking = false` renders the last generation prompt with
    /// Qwen3's empty think block (the apps' thinking switch).
    pub fn new(codec: &Codec, item: &Item, enable_thinking: bool) -> anyhow::Result<Self> {
        let turns: Vec<(&str, &str)> = item
            .turns
            .iter()
            .map(|t| (t.question.as_str(), t.solution.as_str()))
            .collect();
        let Transcript { ids, answers } = codec.chat(&turns, enable_thinking)?;
        let mut answer = vec![false; ids.len() - 1];
        for span in answers {
            answer[span.start - 1..span.end - 1].fill(true);
        }
        Ok(Example {
            kind: item.kind,
            ids,
            answer,
        })
    }

    /// Positions (inputs) of the transcript.
    pub fn len(&self) -> usize {
        self.ids.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Inputs / targets of a batch, right-padded with id 0 (masked out).
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    /// `[b, t]` 1.0 on answer positions.
    pub mask: Tensor,
    /// `[b * t]` answer positions.
    pub answer: Vec<bool>,
    /// `[b * t]` target ids.
    pub target_ids: Vec<u32>,
    pub b: usize,
    pub t: usize,
}

impl Batch {
    pub fn new(examples: &[&Example]) -> anyhow::Result<Self> {
        let b = examples.len();
        let t = examples.iter().map(|e| e.len()).max().unwrap_or(1);
        let mut inputs = vec![0u32; b * t];
        let mut targets = vec![0u32; b * t];
        let mut answer = vec![false; b * t];
        for (i, e) in examples.iter().enumerate() {
            for p in 0..e.len() {
                inputs[i * t + p] = e.ids[p];
                targets[i * t + p] = e.ids[p + 1];
                answer[i * t + p] = e.answer[p];
            }
        }
        let mask: Vec<f32> = answer.iter().map(|&a| f32::from(u8::from(a))).collect();
        Ok(Batch {
            inputs: Tensor::from_vec(inputs, (b, t), &Device::Cpu)?,
            targets: Tensor::from_vec(targets.clone(), (b, t), &Device::Cpu)?,
            mask: Tensor::from_vec(mask, (b, t), &Device::Cpu)?,
            answer,
            target_ids: targets,
            b,
            t,
        })
    }

    /// Examples grouped into batches of similar length, each at most
    /// `max_tokens` padded positions (a longer example goes alone), so
    /// little is spent on padding.
    pub fn packed(examples: &[Example], max_tokens: usize) -> Vec<Vec<&Example>> {
        let mut sorted: Vec<&Example> = examples.iter().collect();
        sorted.sort_by_key(|e| e.len());
        let mut groups: Vec<Vec<&Example>> = Vec::new();
        for e in sorted {
            match groups.last_mut() {
                // Sorted ascending: the newest example is the longest.
                Some(g) if (g.len() + 1) * e.len() <= max_tokens => g.push(e),
                _ => groups.push(vec![e]),
            }
        }
        groups
    }
}
