//! The TaH iteration loop over one chunk of tokens (a prefill chunk or a
//! single decode token: the same code path).
//!
//! Pass 1 runs every token of the chunk in one batch. The decider then marks
//! the hard tokens, which take pass 2 together — input: a soft embedding of
//! their top-k cumulative logits; weights: base + LoRA; output logits added to
//! the running sum — and so on up to `max_iter`.
//!
//! The loop and its decisions live here, once; a [`ChunkEngine`] runs the
//! passes where the model lives (the CPU, `crate::cpu_chunk`, or the GPU,
//! `crate::gpu`) and keeps activations and running logits there.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::decider::bf16_threshold;
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::logits::{TopLogits, TopRequest};
use crate::tah_model::{Engine, TahModel};

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
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeepLogits<'a> {
    /// Every position's (traces, tests).
    All,
    /// The last position's.
    Last,
    /// Only what a sampler reads of the last position's logits (see
    /// [`TopRequest`]): generation. On the GPU only these come back.
    LastTop(TopRequest<'a>),
}

/// Options of one chunk forward.
#[derive(Clone, Copy, Debug)]
pub struct ChunkOptions<'a> {
    pub policy: IterationPolicy,
    pub keep: KeepLogits<'a>,
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
    /// Final (cumulative) logits, for the positions [`KeepLogits::All`] or
    /// [`KeepLogits::Last`] asked for, in chunk order.
    pub logits: Vec<Vec<f32>>,
    /// [`KeepLogits::LastTop`]'s candidates.
    pub top: TopLogits,
}

/// What one pass over the active tokens must produce.
pub(crate) struct PassPlan<'a> {
    pub depth: usize,
    /// Chunk indices of the tokens taking this pass (ascending), and their
    /// positions.
    pub active: &'a [usize],
    pub positions: &'a [u32],
    /// Hidden-state indices the decider reads (empty: no decider).
    pub capture: &'a [usize],
    /// Run the decider over `decider_k` top logits; its probabilities come back.
    pub decider: bool,
    pub decider_k: usize,
    /// Entries of each row's running top-k needed (decider, soft embedding);
    /// 0: only the rows the caller keeps need logits at all.
    pub top_len: usize,
    /// Whether the caller keeps chunk index `i`'s final logits.
    pub keep: &'a dyn Fn(usize) -> bool,
    /// Whether chunk index `i`'s running sum must outlive this pass.
    pub retain: &'a dyn Fn(usize) -> bool,
}

pub(crate) struct PassResult {
    /// Decider probability of each active row (when the plan ran it).
    pub probs: Option<Vec<f32>>,
    /// An active row whose final hidden state is not finite.
    pub non_finite_row: Option<usize>,
}

/// One device's side of the loop over a chunk: runs the passes and keeps
/// their activations, running logits and top-k where the model lives.
pub(crate) trait ChunkEngine {
    /// One pass; the running sums of its rows grow by this pass's logits.
    fn pass(&mut self, plan: &PassPlan) -> Result<PassResult>;
    /// Chunk index `i` takes no further pass and its logits are not kept.
    fn release(&mut self, i: usize);
    /// The next pass's input: soft embeddings of the top `soft_k` running
    /// logits of the rows `hard` (indices into the last pass's active list).
    fn soft_embedding(&mut self, hard: &[usize], soft_k: usize) -> Result<()>;
    /// The final logits [`KeepLogits`] asks for: rows (in chunk order) and
    /// [`KeepLogits::LastTop`]'s candidates.
    fn finish(&mut self, keep: &KeepLogits) -> Result<(Vec<Vec<f32>>, TopLogits)>;
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
                .or(self.decider_config().map(|d| bf16_threshold(d.threshold)))
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
        if matches!(self.engine, Engine::Cpu { .. }) && rayon::current_thread_index().is_none() {
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
        let result = opts
            .policy
            .validate()
            .and_then(|()| self.run_chunk(ids, start, cache, opts));
        if result.is_err() {
            cache.truncate(start);
        }
        result
    }

    fn run_chunk(
        &self,
        ids: &[u32],
        start: usize,
        cache: &mut KvCache,
        opts: &ChunkOptions,
    ) -> Result<ChunkOutput> {
        match &self.engine {
            Engine::Cpu { net, decider } => {
                let mut engine =
                    crate::cpu_chunk::CpuChunk::new(net, decider.as_ref(), cache, ids)?;
                self.run_passes(&mut engine, ids.len(), start, opts)
            }
            #[cfg(feature = "gpu")]
            Engine::Gpu(gpu) => {
                // A chunk's running logits live on the GPU, so a long chunk
                // runs as several (the results are the same; a hard-token
                // budget is spent first come, first served).
                let mut out = ChunkOutput {
                    tokens: Vec::new(),
                    logits: Vec::new(),
                    top: Vec::new(),
                };
                let mut max_hard = opts.max_hard;
                for part in ids.chunks(gpu.max_chunk_rows()) {
                    let part_opts = ChunkOptions { max_hard, ..*opts };
                    let first = cache.len();
                    let mut engine = crate::gpu::GpuChunk::new(gpu, cache, part, &opts.keep)?;
                    let part_out = self.run_passes(&mut engine, part.len(), first, &part_opts)?;
                    let hard = part_out.tokens.iter().filter(|t| t.iter_count > 1).count();
                    max_hard = max_hard.map(|m| m.saturating_sub(hard));
                    out.tokens.extend(part_out.tokens);
                    if opts.keep == KeepLogits::All {
                        out.logits.extend(part_out.logits);
                    } else {
                        (out.logits, out.top) = (part_out.logits, part_out.top);
                    }
                }
                Ok(out)
            }
        }
    }

    /// The loop over depths for `n` tokens at positions `start..`, the
    /// passes run by `engine`.
    fn run_passes(
        &self,
        engine: &mut impl ChunkEngine,
        n: usize,
        start: usize,
        opts: &ChunkOptions,
    ) -> Result<ChunkOutput> {
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
        // Tokens taking the current pass (chunk indices, ascending).
        let mut active: Vec<usize> = (0..n).collect();

        for depth in 1..=max_iter {
            if opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(Error::Cancelled);
            }
            let positions: Vec<u32> = active.iter().map(|&i| (start + i) as u32).collect();
            // Tokens can go deeper only with a decider (the TaH model), and the
            // decider runs where it picks them, or to record its probabilities.
            let deeper_possible =
                depth < max_iter && mode != IterationMode::Never && self.decider_config().is_some();
            let decider = self.decider_config().filter(|_| {
                depth < max_iter && (mode == IterationMode::Decider || opts.probe_decider)
            });
            let decider_k = decider.map_or(0, |d| d.topk);
            let soft_k = if deeper_possible { self.soft_topk() } else { 0 };
            // Full cumulative rows: for the caller, and for a pass after the
            // next one, whose decider and soft embedding read the running sum.
            let retain = |i: usize| keep(i) || (deeper_possible && depth + 1 < max_iter);

            // 1. One pass over the active tokens: the network, the LM head
            //    (logits accumulate; each row keeps its top entries), the decider.
            let pass = engine.pass(&PassPlan {
                depth,
                active: &active,
                positions: &positions,
                capture: decider.map_or(&[][..], |d| &d.hidden_states_layer_nums),
                decider: decider.is_some(),
                decider_k,
                top_len: decider_k.max(soft_k),
                keep: &keep,
                retain: &retain,
            })?;
            for &i in &active {
                tokens[i].iter_count = depth;
            }
            // Quantizing activations maps NaN to 0 before each quantized
            // matmul, so a corrupt block scale inside the network can leave
            // finite but meaningless logits; the final hidden state still
            // carries the NaN through the residual stream.
            if let Some(r) = pass.non_finite_row {
                return Err(Error::NonFiniteOutput {
                    position: start + active[r],
                });
            }
            let probs = match pass.probs {
                Some(probs) => {
                    for (&i, &p) in active.iter().zip(&probs) {
                        tokens[i].decider_probs.push(p);
                    }
                    probs
                }
                None => vec![f32::INFINITY; active.len()],
            };
            if !deeper_possible {
                break;
            }

            // 2. The decider's choice (or the mode's), then the budget.
            let mut hard: Vec<(usize, usize, f32)> = Vec::new();
            for (r, (&i, &pos)) in active.iter().zip(&positions).enumerate() {
                let forced = opts.policy.forced_hard_rate.is_some_and(|f| f.is_hard(pos));
                if mode == IterationMode::Always || probs[r] > threshold || forced {
                    hard.push((r, i, probs[r]));
                }
            }
            // Over budget, drop the least confident hard tokens first.
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
                    engine.release(i);
                }
            }
            if next.is_empty() {
                break;
            }

            // 3. Soft embedding of the hard tokens' top-k cumulative logits.
            let hard_rows: Vec<usize> = hard.iter().map(|&(r, _, _)| r).collect();
            engine.soft_embedding(&hard_rows, soft_k)?;
            active = next;
        }

        let (logits, top) = engine.finish(&opts.keep)?;
        Ok(ChunkOutput {
            tokens,
            logits,
            top,
        })
    }
}
