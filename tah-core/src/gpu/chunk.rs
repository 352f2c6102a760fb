//! The GPU side of the TaH loop over a chunk ([`ChunkEngine`]): activations,
//! running logits, top-k and the decider stay on the GPU. Each pass is one
//! submission; a pass that runs the decider reads back its probabilities
//! (and the pass's finite check), nothing else. The chunk's end reads back
//! what the caller keeps: a sampler's candidates, or whole rows for traces.

use super::forward::{Capture, PassEntries};
use super::kv::GpuKv;
use super::top_k::{self, TopKBuffers};
use super::weights::{Out, Rows};
use super::{GpuCacheState, GpuModel};
use crate::error::{Error, Result};
use crate::iteration::{ChunkEngine, KeepLogits, PassPlan, PassResult};
use crate::kernels::gpu::{grid, params, Kernel, Recorder, MAX_TOPK, TOPK_STATE_WORDS};
use crate::kv_cache::{wrong_device, KvCache};
use crate::logits::{penalized_top_k, TopLogits, TopRequest};

/// Larger sampler top-k cuts (or none) read the whole row back instead.
const MAX_GPU_TOPK: usize = MAX_TOPK;
/// No row: the finite check's "all finite" (and top-k's "none").
const NONE: u32 = u32::MAX;

/// A chunk's buffers, each sized for its `n` tokens.
pub(crate) struct Buffers {
    pub ids: wgpu::Buffer,
    pub x: wgpu::Buffer,
    pub h: wgpu::Buffer,
    pub hn: wgpu::Buffer,
    pub q: wgpu::Buffer,
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub attn: wgpu::Buffer,
    pub state: wgpu::Buffer,
    pub gate: wgpu::Buffer,
    pub up: wgpu::Buffer,
    pub lora: wgpu::Buffer,
    pub rope: wgpu::Buffer,
    pub prefix: wgpu::Buffer,
    /// Chunk index of each active row (the top-k's rows of `cum`).
    pub rows: wgpu::Buffer,
    /// Chunk index of each row the LM head computes.
    pub lm_rows: wgpu::Buffer,
    pub hard: wgpu::Buffer,
    /// Running logits, `[n][vocab]`.
    pub cum: wgpu::Buffer,
    /// Top-k ids `[rows][k]`, then values.
    pub top: wgpu::Buffer,
    /// Each row's radix-select state, then its k largest (unordered).
    pub topk_state: wgpu::Buffer,
    pub candidates: wgpu::Buffer,
    /// First non-finite row of each depth's final hidden state.
    pub flags: wgpu::Buffer,
    pub seen: wgpu::Buffer,
    pub features: wgpu::Buffer,
    pub decider_in: wgpu::Buffer,
    pub decider_top: wgpu::Buffer,
    pub decider_a: wgpu::Buffer,
    pub decider_b: wgpu::Buffer,
    pub decider_inner: wgpu::Buffer,
    pub decider_norm: wgpu::Buffer,
    pub decider_logit: wgpu::Buffer,
}

impl Buffers {
    /// `top_k`: the most top-k entries per row; `seen`: ids a repetition
    /// penalty reads.
    fn new(
        model: &GpuModel,
        state: &mut GpuCacheState,
        n: usize,
        top_k: usize,
        seen: usize,
    ) -> Result<Self> {
        let cfg = &model.cfg;
        let context = &model.context;
        let work = &mut state.work;
        let (hidden, inner, vocab) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let q_width = cfg.num_attention_heads * cfg.head_dim;
        let kv_width = cfg.num_key_value_heads * cfg.head_dim;
        let (decider_in, features, decider_top, widest) = match &model.decider {
            Some(d) => (
                d.input_width(),
                d.input_width() - hidden,
                d.topk(),
                d.widest(),
            ),
            None => (0, 0, 0, 0),
        };
        let mut get = |name: &'static str, words: usize| work.get(context, name, words);
        Ok(Buffers {
            ids: get("ids", n)?,
            x: get("x", n * hidden)?,
            h: get("h", n * hidden)?,
            hn: get("hn", n * hidden)?,
            q: get("q", n * q_width)?,
            k: get("k", n * kv_width)?,
            v: get("v", n * kv_width)?,
            attn: get("attn", n * q_width)?,
            state: get(
                "attention state",
                n * cfg.num_attention_heads * (cfg.head_dim + 2),
            )?,
            gate: get("gate", n * inner)?,
            up: get("up", n * inner)?,
            lora: get("lora", n * model.lora_rank)?,
            rope: get("rope", n * cfg.head_dim)?,
            prefix: get("prefix", n * model.max_iter)?,
            rows: get("rows", n)?,
            lm_rows: get("lm rows", n)?,
            hard: get("hard", n)?,
            cum: get("logits", n * vocab)?,
            top: get("top-k", 2 * n * top_k)?,
            topk_state: get("top-k state", n * TOPK_STATE_WORDS)?,
            candidates: get("top-k candidates", 2 * n * top_k)?,
            flags: get("flags", model.max_iter)?,
            seen: get("seen", seen)?,
            features: get("decider features", n * features)?,
            decider_in: get("decider input", n * decider_in)?,
            decider_top: get("decider top-k", n * decider_top)?,
            decider_a: get("decider a", n * widest)?,
            decider_b: get("decider b", n * widest)?,
            decider_inner: get("decider inner", n * widest)?,
            decider_norm: get("decider norm", n * widest)?,
            decider_logit: get("decider logit", n)?,
        })
    }
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn to_u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn to_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub(crate) struct GpuChunk<'a> {
    model: &'a GpuModel,
    cache: &'a mut KvCache,
    b: Buffers,
    ids: Vec<u32>,
    /// Position of chunk index 0.
    start: usize,
    /// Each pass's active chunk indices (for the finite check's positions).
    actives: Vec<Vec<usize>>,
    /// Top-k entries per row of the last pass.
    top_len: usize,
}

/// What [`KeepLogits::LastTop`] asks of the GPU (None: the row comes back
/// whole, for a cut larger than [`MAX_GPU_TOPK`] or none).
fn gpu_request<'k>(keep: &'k KeepLogits) -> Option<&'k TopRequest<'k>> {
    match keep {
        KeepLogits::LastTop(request) if request.k <= MAX_GPU_TOPK => Some(request),
        _ => None,
    }
}

impl<'a> GpuChunk<'a> {
    pub fn new(
        model: &'a GpuModel,
        cache: &'a mut KvCache,
        ids: &[u32],
        keep: &KeepLogits,
    ) -> Result<Self> {
        let vocab = model.cfg.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary (size {vocab})"
            )));
        }
        let start = cache.len();
        let shape = cache.shape();
        let precision = cache.precision();
        let state = match cache.gpu_state() {
            Some(state) if state.owner == model.id => state,
            _ => return Err(wrong_device()),
        };
        if state.kv.is_none() {
            state.kv = Some(GpuKv::new(
                &model.context,
                shape.num_layers,
                shape.max_depth,
                shape.num_kv_heads,
                shape.head_dim,
                precision,
                model.kv_segment_entries,
            )?);
        }
        let request = gpu_request(keep);
        let top_k = model.top_len().max(request.map_or(0, |r| r.k));
        let seen = request.map_or(0, |r| r.seen.len());
        let b = Buffers::new(model, state, ids.len(), top_k, seen)?;
        Ok(GpuChunk {
            model,
            cache,
            b,
            ids: ids.to_vec(),
            start,
            actives: Vec::new(),
            top_len: 0,
        })
    }

    fn write(&self, buffer: &wgpu::Buffer, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.model.context.queue.write_buffer(buffer, 0, bytes);
        }
    }

    /// Records the top-k (`k` per row, ids below `cols`) of the `rows`
    /// logits rows listed in `b.rows` into `b.top` (values from `rows * k`).
    fn record_top_k(&self, rec: &mut Recorder, rows: usize, k: usize, cols: usize) {
        let b = &self.b;
        let buffers = TopKBuffers {
            logits: &b.cum,
            rows: &b.rows,
            state: &b.topk_state,
            gathered: &b.candidates,
            top: &b.top,
        };
        top_k::record(rec, &buffers, rows, k, cols, self.model.cfg.vocab_size);
    }

    /// The first depth whose final hidden state was not finite, as an error.
    fn check_flags(&self, flags: &[u32]) -> Result<()> {
        for (active, &row) in self.actives.iter().zip(flags) {
            if row != NONE {
                let i = active.get(row as usize).copied().unwrap_or(0);
                return Err(Error::NonFiniteOutput {
                    position: self.start + i,
                });
            }
        }
        Ok(())
    }

    /// `request` on the GPU: the penalty and top-k of the last row. Returns
    /// the finite-check flags and the candidates.
    fn last_top(&mut self, request: &TopRequest) -> Result<(Vec<u32>, TopLogits)> {
        let model = self.model;
        let vocab = model.cfg.vocab_size;
        let last = self.ids.len() - 1;
        let cols = request.limit.min(vocab);
        let k = request.k.min(cols);
        let seen: Vec<u32> = request
            .seen
            .iter()
            .copied()
            .filter(|&id| (id as usize) < cols)
            .collect();
        let mut rec = Recorder::new(&model.context, &model.pipelines);
        if request.repetition_penalty != 1.0 && !seen.is_empty() {
            self.write(&self.b.seen, &words(&seen));
            rec.dispatch(
                Kernel::Penalize,
                params![seen.len(), last * vocab, request.repetition_penalty],
                &[&self.b.cum, &self.b.seen],
                grid(seen.len().div_ceil(64)),
            );
        }
        self.write(&self.b.rows, &words(&[last as u32]));
        self.record_top_k(&mut rec, 1, k, cols);
        let state = self.cache.gpu_state().ok_or_else(wrong_device)?;
        let read = rec.submit(
            &mut state.scratch,
            &[
                (&self.b.flags, 0, 4 * model.max_iter as u64),
                (&self.b.top, 0, 8 * k as u64),
            ],
        )?;
        let top = to_u32s(&read[1]);
        let candidates = top[..k]
            .iter()
            .zip(&top[k..])
            .filter(|(&id, _)| id != NONE)
            .map(|(&id, &bits)| (id, f32::from_bits(bits)))
            .collect();
        Ok((to_u32s(&read[0]), candidates))
    }
}

impl ChunkEngine for GpuChunk<'_> {
    fn pass(&mut self, plan: &PassPlan) -> Result<PassResult> {
        let model = self.model;
        let (n, depth) = (plan.active.len(), plan.depth);
        let hidden = model.cfg.hidden_size;
        let vocab = model.cfg.vocab_size;

        // 1. Bookkeeping on the CPU: the pass's cache entries, what each
        //    query sees at every depth, RoPE angles.
        self.cache.begin_pass(depth, plan.positions)?;
        let first = self.cache.depth_len(depth) - n;
        let depth_lens: Vec<usize> = (1..=depth).map(|d| self.cache.depth_len(d)).collect();
        let mut prefix = vec![0u32; n * model.max_iter];
        for (row, &p) in prefix.chunks_exact_mut(model.max_iter).zip(plan.positions) {
            for (slot, seen) in row.iter_mut().zip(self.cache.visible_prefix(depth, p)) {
                *slot = seen as u32;
            }
        }
        self.write(&self.b.prefix, &words(&prefix));
        self.write(&self.b.rope, &floats(&model.rope_table(plan.positions)));
        let active: Vec<u32> = plan.active.iter().map(|&i| i as u32).collect();
        self.write(&self.b.rows, &words(&active));
        // The LM head: every active row when top-k or the decider read
        // them, else only the rows the caller keeps (all, or the last).
        let lm_first = if plan.top_len > 0 {
            0
        } else {
            (0..n).find(|&r| (plan.keep)(plan.active[r])).unwrap_or(n)
        };
        self.write(&self.b.lm_rows, &words(&active[lm_first..]));

        let mut rec = Recorder::new(&model.context, &model.pipelines);
        if depth == 1 {
            rec.dispatch(
                Kernel::Fill,
                params![model.max_iter, 0usize, NONE],
                &[&self.b.flags],
                grid(1),
            );
            self.write(&self.b.ids, &words(&self.ids));
            model
                .embed_tokens
                .embed_rows(&mut rec, &self.b.ids, n, &self.b.x);
        }
        let state = self.cache.gpu_state().ok_or_else(wrong_device)?;
        let kv = state.kv.as_mut().ok_or_else(wrong_device)?;
        for layer in 0..model.layers.len() {
            kv.reserve(&model.context, &mut rec, layer, depth, first + n)?;
        }

        // 2. The network, capturing what the decider reads.
        let decider = model.decider.as_ref().filter(|_| plan.decider);
        let capture = decider.map(|d| {
            let (buffer, stride) = d.capture_target(&self.b);
            Capture {
                indices: d.capture_indices(),
                buffer,
                stride,
            }
        });
        let entries = PassEntries {
            depth,
            first,
            depth_lens: &depth_lens,
        };
        model.record_pass(&mut rec, &self.b, kv, n, &entries, capture.as_ref());

        // 3. The LM head into the running sums (written at depth 1, added
        //    to after), then each row's top entries.
        model.lm_head().matmul(
            &mut rec,
            Rows {
                buffer: &self.b.hn,
                offset: lm_first * hidden,
                stride: hidden,
                count: n - lm_first,
            },
            Out {
                buffer: &self.b.cum,
                offset: 0,
                stride: vocab,
                map: Some(&self.b.lm_rows),
            },
            1.0,
            depth > 1,
            &model.no_map,
        );
        self.top_len = plan.top_len;
        if plan.top_len > 0 {
            self.record_top_k(&mut rec, n, plan.top_len, vocab);
        }
        self.actives.push(plan.active.to_vec());
        let state = self.cache.gpu_state().ok_or_else(wrong_device)?;

        // 4. The decider; only its probabilities (and the finite check) come back.
        let Some(decider) = decider else {
            rec.submit(&mut state.scratch, &[])?;
            return Ok(PassResult {
                probs: None,
                non_finite_row: None,
            });
        };
        decider.record(
            &mut rec,
            &self.b,
            n,
            plan.top_len,
            n * plan.top_len,
            &model.no_map,
        );
        let read = rec.submit(
            &mut state.scratch,
            &[
                (&self.b.decider_logit, 0, 4 * n as u64),
                (&self.b.flags, 4 * (depth - 1) as u64, 4),
            ],
        )?;
        let flag = to_u32s(&read[1])[0];
        let probs = to_f32s(&read[0])
            .into_iter()
            .map(|x| 1.0 / (1.0 + (-x).exp()))
            .collect();
        Ok(PassResult {
            probs: Some(probs),
            non_finite_row: (flag != NONE).then_some(flag as usize),
        })
    }

    fn release(&mut self, _i: usize) {
        // Running sums stay in the chunk's GPU buffer until it ends.
    }

    fn soft_embedding(&mut self, hard: &[usize], soft_k: usize) -> Result<()> {
        let model = self.model;
        let rows = self.actives.last().map_or(0, Vec::len);
        let hard_rows: Vec<u32> = hard.iter().map(|&r| r as u32).collect();
        self.write(&self.b.hard, &words(&hard_rows));
        let state = self.cache.gpu_state().ok_or_else(wrong_device)?;
        let mut rec = Recorder::new(&model.context, &model.pipelines);
        model.embed_tokens.soft_embed(
            &mut rec,
            &self.b.top,
            &self.b.hard,
            hard.len(),
            soft_k.min(self.top_len),
            self.top_len,
            rows * self.top_len,
            &self.b.x,
        );
        rec.submit(&mut state.scratch, &[])?;
        Ok(())
    }

    fn finish(&mut self, keep: &KeepLogits) -> Result<(Vec<Vec<f32>>, TopLogits)> {
        let model = self.model;
        let (n, vocab, max_iter) = (self.ids.len(), model.cfg.vocab_size, model.max_iter);
        if n == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let row_bytes = 4 * vocab as u64;
        let flags = (&self.b.flags, 0, 4 * max_iter as u64);
        match gpu_request(keep) {
            Some(request) => {
                let (flags, top) = self.last_top(request)?;
                self.check_flags(&flags)?;
                Ok((Vec::new(), top))
            }
            None => {
                // Whole rows: traces, or a sampler without a top-k cut.
                let (first, count) = match keep {
                    KeepLogits::All => (0, n),
                    _ => (n - 1, 1),
                };
                let state = self.cache.gpu_state().ok_or_else(wrong_device)?;
                let rec = Recorder::new(&model.context, &model.pipelines);
                let read = rec.submit(
                    &mut state.scratch,
                    &[
                        flags,
                        (
                            &self.b.cum,
                            first as u64 * row_bytes,
                            count as u64 * row_bytes,
                        ),
                    ],
                )?;
                self.check_flags(&to_u32s(&read[0]))?;
                let mut rows: Vec<Vec<f32>> = to_f32s(&read[1])
                    .chunks_exact(vocab)
                    .map(<[f32]>::to_vec)
                    .collect();
                match keep {
                    KeepLogits::LastTop(request) => {
                        let top = penalized_top_k(&mut rows[0], request);
                        Ok((Vec::new(), top))
                    }
                    _ => Ok((rows, Vec::new())),
                }
            }
        }
    }
}
