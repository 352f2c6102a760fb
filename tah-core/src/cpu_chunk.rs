//! The CPU side of the TaH loop over a chunk ([`ChunkEngine`]): the passes
//! run through [`Model`], running logits and top-k stay in host memory, and
//! the decider runs on the CPU.

use candle_core::{Device, Tensor};

use crate::decider::Decider;
use crate::error::{Error, Result};
use crate::iteration::{ChunkEngine, KeepLogits, PassPlan, PassResult};
use crate::kv_cache::KvCache;
use crate::logits::{penalized_top_k, TopK, TopLogits};
use crate::model::Model;

pub(crate) struct CpuChunk<'a> {
    net: &'a Model,
    decider: Option<&'a Decider>,
    cache: &'a mut KvCache,
    /// Input rows of the next pass.
    input: Tensor,
    /// Cumulative logits by chunk index, held only while something needs them.
    cum: Vec<Option<Vec<f32>>>,
    /// The last pass's top entries of each active row's running sum.
    tops: Vec<Vec<(u32, f32)>>,
}

impl<'a> CpuChunk<'a> {
    pub fn new(
        net: &'a Model,
        decider: Option<&'a Decider>,
        cache: &'a mut KvCache,
        ids: &[u32],
    ) -> Result<Self> {
        Ok(CpuChunk {
            input: net.embedding().rows(ids)?,
            net,
            decider,
            cache,
            cum: vec![None; ids.len()],
            tops: Vec::new(),
        })
    }

    /// Applies the LM head to `hidden`'s rows `rows` (indices into `active`),
    /// adds the logits to each token's running sum, and returns every
    /// active row's `top_len` largest cumulative logits (empty for rows not
    /// computed). A row's full sum is stored back in `cum` only where
    /// `retain` says so; the LM head streams in panels, so a long chunk never
    /// holds a `[rows, vocab]` matrix.
    fn accumulate_logits(
        &mut self,
        hidden: &Tensor,
        active: &[usize],
        rows: &[usize],
        top_len: usize,
        retain: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        let mut tops = vec![Vec::new(); active.len()];
        if rows.is_empty() {
            return Ok(tops);
        }
        let vocab = self.net.config().vocab_size;
        let hidden = if rows.len() == active.len() {
            hidden.clone()
        } else {
            let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
            hidden.index_select(&Tensor::from_vec(index, rows.len(), hidden.device())?, 0)?
        };
        // Per computed row: its running sum (taken out of `cum`, or a zeroed
        // row where it must be retained) and its top entries so far.
        let cum = &mut self.cum;
        let mut sums: Vec<Option<Vec<f32>>> = rows
            .iter()
            .map(|&r| {
                let i = active[r];
                cum[i]
                    .take()
                    .or_else(|| retain(i).then(|| vec![0f32; vocab]))
            })
            .collect();
        let mut row_tops: Vec<TopK> = rows.iter().map(|_| TopK::new(top_len)).collect();
        self.net
            .lm_head()
            .forward_panels(&hidden, &mut |first, block| {
                let width = block.len() / rows.len();
                if width == 0 {
                    return Ok(());
                }
                for ((sum, top), values) in sums
                    .iter_mut()
                    .zip(&mut row_tops)
                    .zip(block.chunks_exact(width))
                {
                    match sum {
                        Some(sum) => {
                            // The LM head must have one row per vocabulary entry.
                            let sum = sum.get_mut(first..first + width).ok_or_else(|| {
                                Error::InvalidArgument(format!(
                                    "LM head rows {first}..{} exceed the vocabulary ({vocab})",
                                    first + width
                                ))
                            })?;
                            sum.iter_mut().zip(values).for_each(|(s, v)| *s += v);
                            top.extend(first, sum);
                        }
                        None => top.extend(first, values),
                    }
                }
                Ok(())
            })?;
        for ((&r, sum), top) in rows.iter().zip(sums).zip(row_tops) {
            let i = active[r];
            if retain(i) {
                cum[i] = sum;
            }
            tops[r] = top.into_sorted();
        }
        Ok(tops)
    }
}

impl ChunkEngine for CpuChunk<'_> {
    fn pass(&mut self, plan: &PassPlan) -> Result<PassResult> {
        let pass = self.net.forward(
            &self.input,
            plan.positions,
            plan.depth,
            self.cache,
            plan.capture,
        )?;
        if let Some(r) = first_non_finite_row(&pass.hidden)? {
            return Ok(PassResult {
                probs: None,
                non_finite_row: Some(r),
            });
        }
        // The LM head only for the rows whose logits something reads.
        let rows: Vec<usize> = (0..plan.active.len())
            .filter(|&r| plan.top_len > 0 || (plan.keep)(plan.active[r]))
            .collect();
        self.tops =
            self.accumulate_logits(&pass.hidden, plan.active, &rows, plan.top_len, plan.retain)?;
        let probs = match self.decider.filter(|_| plan.decider) {
            Some(decider) => {
                let mut top_values = Vec::with_capacity(plan.active.len() * plan.decider_k);
                for top in &self.tops {
                    top_values.extend(top.iter().take(plan.decider_k).map(|&(_, v)| v));
                }
                let top_values = Tensor::from_vec(
                    top_values,
                    (plan.active.len(), plan.decider_k),
                    &Device::Cpu,
                )?;
                Some(decider.probabilities(&pass.hidden_states, &top_values)?)
            }
            None => None,
        };
        Ok(PassResult {
            probs,
            non_finite_row: None,
        })
    }

    fn release(&mut self, i: usize) {
        self.cum[i] = None;
    }

    fn soft_embedding(&mut self, hard: &[usize], soft_k: usize) -> Result<()> {
        let mut soft_ids = Vec::with_capacity(hard.len() * soft_k);
        let mut soft_weights = Vec::with_capacity(hard.len() * soft_k);
        for &r in hard {
            let top = &self.tops[r][..soft_k.min(self.tops[r].len())];
            let max = top.first().map_or(0.0, |t| t.1);
            let exps: Vec<f32> = top.iter().map(|&(_, v)| (v - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            soft_ids.extend(top.iter().map(|&(id, _)| id));
            soft_weights.extend(exps.iter().map(|e| e / sum));
        }
        self.input = self
            .net
            .embedding()
            .soft_embedding(&soft_ids, &soft_weights, soft_k)?;
        Ok(())
    }

    fn finish(&mut self, keep: &KeepLogits) -> Result<(Vec<Vec<f32>>, TopLogits)> {
        let mut last = || self.cum.last_mut().and_then(Option::take);
        Ok(match keep {
            KeepLogits::All => (
                self.cum
                    .iter_mut()
                    .map(|c| c.take().unwrap_or_default())
                    .collect(),
                Vec::new(),
            ),
            KeepLogits::Last => (last().into_iter().collect(), Vec::new()),
            KeepLogits::LastTop(request) => {
                let mut row = last().unwrap_or_default();
                (Vec::new(), penalized_top_k(&mut row, request))
            }
        })
    }
}

/// The first row of a `[rows, hidden]` matrix holding NaN or infinity.
fn first_non_finite_row(hidden: &Tensor) -> Result<Option<usize>> {
    let width = hidden.dim(1)?.max(1);
    let values = hidden.flatten_all()?.to_vec1::<f32>()?;
    Ok(values
        .chunks(width)
        .position(|row| row.iter().any(|x| !x.is_finite())))
}
