//! The TaH iteration loop over one chunk of tokens (a prefill chunk or a
//! single decode token: the same code path).
//!
//! Pass 1 runs every token of the chunk in one batch. The decider then marks
//! the hard tokens, which take pass 2 together — input: a soft embedding of
//! their top-k cumulative logits; weights: base + LoRA; output logits added to
//! the running sum — and so on up to `max_iter`.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};

use crate::decider::{bf16_threshold, Decider};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::logits::TopK;
use crate::tah_model::TahModel;

/// How tokens are chosen for further passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IterationMode {
    /// The decider picks the hard tokens (the TaH model as trained).
    #[default]
    Decider,
    /// One pass per token: the plain Qwen3 model.
    Never,
    /// Every token takes `max_iter` passes.
    Always,
}

impl std::str::FromStr for IterationMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "decider" => Ok(IterationMode::Decider),
            "never" => Ok(IterationMode::Never),
            "always" => Ok(IterationMode::Always),
            other => Err(Error::InvalidArgument(format!(
                "unknown iteration mode `{other}` (decider, never, always)"
            ))),
        }
    }
}

/// Run-time iteration settings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IterationPolicy {
    pub mode: IterationMode,
    /// Overrides the model's decider threshold (rounded to bf16 like the
    /// reference). `None` keeps the checkpoint's value.
    pub threshold: Option<f32>,
    /// Benchmarks only: force this fraction of positions (chosen by a seeded
    /// hash of the position) to be hard, while the decider still runs.
    pub forced_hard_rate: Option<ForcedHardRate>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForcedHardRate {
    pub rate: f64,
    pub seed: u64,
}

impl ForcedHardRate {
    /// Whether `position` is hard under this rate (SplitMix64 of seed ^ position).
    pub fn is_hard(&self, position: u32) -> bool {
        let mut z = self.seed ^ (position as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < self.rate
    }
}

impl IterationPolicy {
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.threshold {
            if !t.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "threshold {t} is not finite"
                )));
            }
        }
        if let Some(f) = self.forced_hard_rate {
            if !(0.0..=1.0).contains(&f.rate) {
                return Err(Error::InvalidArgument(format!(
                    "hard rate {} is outside 0..=1",
                    f.rate
                )));
            }
        }
        Ok(())
    }
}

/// Which final logits a chunk returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepLogits {
    /// Every position's (traces, tests).
    All,
    /// The last position's (generation needs only these).
    Last,
}

/// Options of one chunk forward.
#[derive(Clone, Copy, Debug)]
pub struct ChunkOptions<'a> {
    pub policy: IterationPolicy,
    pub keep: KeepLogits,
    /// At most this many tokens of the chunk may take pass 2; over it, the
    /// least confident hard tokens are skipped first.
    pub max_hard: Option<usize>,
    /// Checked before every pass; set means stop with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Run the decider (and record its probabilities) in `never` and
    /// `always` mode too, where it decides nothing: traces compare it with
    /// the reference. Generation leaves it off and skips that work.
    pub probe_decider: bool,
}

/// What happened to one token of the chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenPasses {
    /// Depth reached: the number of passes the token took.
    pub iter_count: usize,
    /// Decider probability after each pass at which it ran.
    pub decider_probs: Vec<f32>,
}

pub struct ChunkOutput {
    pub tokens: Vec<TokenPasses>,
    /// Final (cumulative) logits, for the positions [`KeepLogits`] asked for,
    /// in chunk order.
    pub logits: Vec<Vec<f32>>,
}

impl TahModel {
    /// The threshold `policy` amounts to: `never` is 1.0 and `always` -1.0,
    /// exactly as the reference implements them.
    pub fn effective_threshold(&self, policy: &IterationPolicy) -> f32 {
        match policy.mode {
            IterationMode::Never => 1.0,
            IterationMode::Always => -1.0,
            IterationMode::Decider => policy
                .threshold
                .map(bf16_threshold)
                .or(self.decider.as_ref().map(Decider::threshold))
                .unwrap_or(1.0),
        }
    }

    /// Runs `ids` (at the positions following the cache) through the TaH loop.
    /// On error (including cancellation) the cache is rolled back to where it was.
    pub fn forward_chunk(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        opts: &ChunkOptions,
    ) -> Result<ChunkOutput> {
        if rayon::current_thread_index().is_none() {
            // Run the chunk on a worker of the current pool: its parallel
            // loops then start there instead of each handing off to the
            // pool and back (a futex round trip per loop, ~5% of a decode
            // step called from a plain thread).
            return rayon::scope(|_| self.forward_chunk(ids, cache, opts));
        }
        let start = cache.len();
        if start + ids.len() > cache.capacity() {
            return Err(Error::ContextOverflow {
                needed: start + ids.len(),
                capacity: cache.capacity(),
            });
        }
        let result = self.run_passes(ids, start, cache, opts);
        if result.is_err() {
            cache.truncate(start);
        }
        result
    }

    fn run_passes(
        &self,
        ids: &[u32],
        start: usize,
        cache: &mut KvCache,
        opts: &ChunkOptions,
    ) -> Result<ChunkOutput> {
        opts.policy.validate()?;
        let n = ids.len();
        let max_iter = self.max_iter();
        let mode = opts.policy.mode;
        let threshold = self.effective_threshold(&opts.policy);
        let keep = |i: usize| opts.keep == KeepLogits::All || i + 1 == n;

        let mut tokens = vec![
            TokenPasses {
                iter_count: 0,
                decider_probs: Vec::new(),
            };
            n
        ];
        // Cumulative logits by chunk index, held only while something needs them.
        let mut cum: Vec<Option<Vec<f32>>> = vec![None; n];
        // Tokens taking the current pass (chunk indices, ascending) and their input rows.
        let mut active: Vec<usize> = (0..n).collect();
        let mut input = self.net.embedding().rows(ids)?;

        for depth in 1..=max_iter {
            if opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let positions: Vec<u32> = active.iter().map(|&i| (start + i) as u32).collect();
            // Tokens can go deeper only with a decider (the TaH model), and the
            // decider runs where it picks them, or to record its probabilities.
            let deeper_possible =
                depth < max_iter && mode != IterationMode::Never && self.decider.is_some();
            let decider = self.decider.as_ref().filter(|_| {
                depth < max_iter && (mode == IterationMode::Decider || opts.probe_decider)
            });
            let capture = decider.map_or(&[][..], |d| d.hidden_state_indices());
            let decider_k = decider.map_or(0, |d| d.topk());
            let soft_k = if deeper_possible { self.soft_topk() } else { 0 };
            // Full cumulative rows: for the caller, and for a pass after the
            // next one, whose decider and soft embedding read the running sum.
            let retain = |i: usize| keep(i) || (deeper_possible && depth + 1 < max_iter);

            // 1. One pass over the active tokens.
            let pass = self
                .net
                .forward(&input, &positions, depth, cache, capture)?;
            for &i in &active {
                tokens[i].iter_count = depth;
            }
            // Quantizing activations maps NaN to 0 before each quantized
            // matmul, so a corrupt block scale inside the network can leave
            // finite but meaningless logits; the final hidden state still
            // carries the NaN through the residual stream.
            if let Some(r) = first_non_finite_row(&pass.hidden)? {
                return Err(Error::NonFiniteOutput {
                    position: start + active[r],
                });
            }

            // 2. The LM head, only for the rows whose logits something reads;
            //    logits accumulate and each row keeps its top entries.
            let top_len = decider_k.max(soft_k);
            let rows: Vec<usize> = (0..active.len())
                .filter(|&r| top_len > 0 || keep(active[r]))
                .collect();
            let tops =
                self.accumulate_logits(&pass.hidden, &active, &rows, &mut cum, top_len, &retain)?;

            // 3. The decider reads this pass's hidden states and top-k logits.
            let mut probs = vec![f32::INFINITY; active.len()];
            if let Some(decider) = decider {
                let mut top_values = Vec::with_capacity(active.len() * decider_k);
                for top in &tops {
                    top_values.extend(top.iter().take(decider_k).map(|&(_, v)| v));
                }
                let top_values =
                    Tensor::from_vec(top_values, (active.len(), decider_k), &Device::Cpu)?;
                probs = decider.probabilities(&pass.hidden_states, &top_values)?;
                for (&i, &p) in active.iter().zip(&probs) {
                    tokens[i].decider_probs.push(p);
                }
            }
            if !deeper_possible {
                break;
            }
            let mut hard: Vec<(usize, usize, f32)> = Vec::new();
            for (r, (&i, &pos)) in active.iter().zip(&positions).enumerate() {
                let forced = opts.policy.forced_hard_rate.is_some_and(|f| f.is_hard(pos));
                if mode == IterationMode::Always || probs[r] > threshold || forced {
                    hard.push((r, i, probs[r]));
                }
            }
            // 4. Over budget, drop the least confident hard tokens first.
            if depth == 1 {
                if let Some(max) = opts.max_hard {
                    if hard.len() > max {
                        hard.sort_by(|a, b| b.2.total_cmp(&a.2));
                        hard.truncate(max);
                        hard.sort_by_key(|&(r, _, _)| r);
                    }
                }
            }
            // Tokens that stopped keep their logits only if the caller wants them.
            let next: Vec<usize> = hard.iter().map(|&(_, i, _)| i).collect();
            for &i in &active {
                if next.binary_search(&i).is_err() && !keep(i) {
                    cum[i] = None;
                }
            }
            if next.is_empty() {
                break;
            }

            // 5. Soft embedding of the hard tokens' top-k cumulative logits.
            let mut soft_ids = Vec::with_capacity(next.len() * soft_k);
            let mut soft_weights = Vec::with_capacity(next.len() * soft_k);
            for &(r, _, _) in &hard {
                let top = &tops[r][..soft_k.min(tops[r].len())];
                let max = top.first().map_or(0.0, |t| t.1);
                let exps: Vec<f32> = top.iter().map(|&(_, v)| (v - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                soft_ids.extend(top.iter().map(|&(id, _)| id));
                soft_weights.extend(exps.iter().map(|e| e / sum));
            }
            input = self
                .net
                .embedding()
                .soft_embedding(&soft_ids, &soft_weights, soft_k)?;
            active = next;
        }

        let logits = (0..n)
            .filter(|&i| keep(i))
            .map(|i| cum[i].take().unwrap_or_default())
            .collect();
        Ok(ChunkOutput { tokens, logits })
    }

    /// Applies the LM head to `hidden`'s rows `rows` (indices into `active`),
    /// adds the logits to each token's running sum, and returns every
    /// active row's `top_len` largest cumulative logits (empty for rows not
    /// computed). A row's full sum is stored back in `cum` only where
    /// `retain` says so; the LM head streams in panels, so a long chunk never
    /// holds a `[rows, vocab]` matrix.
    fn accumulate_logits(
        &self,
        hidden: &Tensor,
        active: &[usize],
        rows: &[usize],
        cum: &mut [Option<Vec<f32>>],
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

/// The first row of a `[rows, hidden]` matrix holding NaN or infinity.
fn first_non_finite_row(hidden: &Tensor) -> Result<Option<usize>> {
    let width = hidden.dim(1)?.max(1);
    let values = hidden.flatten_all()?.to_vec1::<f32>()?;
    Ok(values
        .chunks(width)
        .position(|row| row.iter().any(|x| !x.is_finite())))
}
