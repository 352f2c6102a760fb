//! One pass of the Qwen3 network on the GPU, recorded into a submission:
//! the GPU twin of `model.rs` (depth 1 runs the base weights, deeper passes
//! add the LoRA adapter; K/V join the cache at (position, depth) and
//! attention is duo-causal).

use super::chunk::Buffers;
use super::kv::GpuKv;
use super::weights::{Out, Rows};
use super::{GpuLayer, GpuLinear, GpuModel};
use crate::kernels::gpu::{grid, params, Kernel, Recorder};

/// Where the decider's hidden states go: capture slot s of a pass lands at
/// columns `s * hidden..` of `buffer`'s rows, `stride` floats apart.
pub(crate) struct Capture<'a> {
    pub indices: &'a [usize],
    pub buffer: &'a wgpu::Buffer,
    pub stride: usize,
}

/// The pass's place in the KV cache.
pub(crate) struct PassEntries<'a> {
    pub depth: usize,
    /// Index of the pass's first entry at its depth.
    pub first: usize,
    /// Entries at each depth 1..=depth, this pass's included.
    pub depth_lens: &'a [usize],
}

impl GpuLinear {
    /// `y (+)= x W^T`, plus the LoRA term at depth >= 2.
    #[allow(clippy::too_many_arguments)] // private; the pieces of one product
    fn forward(
        &self,
        model: &GpuModel,
        rec: &mut Recorder,
        b: &Buffers,
        x: Rows,
        y: Out,
        depth: usize,
        accumulate: bool,
    ) {
        self.weight
            .matmul(rec, x, y, 1.0, accumulate, &model.no_map);
        if let Some(lora) = self.lora.as_ref().filter(|_| depth >= 2) {
            let r = lora.a.rows();
            lora.a
                .matmul(rec, x, Out::packed(&b.lora, r), 1.0, false, &model.no_map);
            lora.b.matmul(
                rec,
                Rows::packed(&b.lora, r, x.count),
                y,
                lora.scaling,
                true,
                &model.no_map,
            );
        }
    }
}

impl GpuModel {
    /// RMSNorm of `n` packed rows of `x` into `y`.
    fn rms_norm(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
    ) {
        let h = self.cfg.hidden_size;
        rec.dispatch(
            Kernel::RmsNorm,
            params![n, h, 0usize, h, 0usize, h, self.cfg.rms_norm_eps as f32],
            &[x, weight, y],
            grid(n),
        );
    }

    /// Copies `n` rows of `x` into every capture slot asking for hidden state `index`.
    fn capture(
        &self,
        rec: &mut Recorder,
        capture: Option<&Capture>,
        index: usize,
        x: &wgpu::Buffer,
        n: usize,
    ) {
        let Some(capture) = capture else { return };
        let h = self.cfg.hidden_size;
        for (slot, _) in capture
            .indices
            .iter()
            .enumerate()
            .filter(|(_, &i)| i == index)
        {
            rec.dispatch(
                Kernel::CopyRows,
                params![n, h, 0usize, h, slot * h, capture.stride],
                &[x, capture.buffer],
                grid((n * h).div_ceil(64)),
            );
        }
    }

    fn attention(
        &self,
        rec: &mut Recorder,
        b: &Buffers,
        kv: &GpuKv,
        layer: (usize, &GpuLayer),
        n: usize,
        entries: &PassEntries,
    ) {
        let (index, layer) = layer;
        let cfg = &self.cfg;
        let (heads, kv_heads, head_dim) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let depth = entries.depth;
        let h = Rows::packed(&b.h, cfg.hidden_size, n);
        // 1. Project, per-head RMSNorm (Qwen3's q_norm / k_norm), RoPE at the
        //    token's position, the same at every depth.
        layer.q_proj.forward(
            self,
            rec,
            b,
            h,
            Out::packed(&b.q, heads * head_dim),
            depth,
            false,
        );
        layer.k_proj.forward(
            self,
            rec,
            b,
            h,
            Out::packed(&b.k, kv_heads * head_dim),
            depth,
            false,
        );
        layer.v_proj.forward(
            self,
            rec,
            b,
            h,
            Out::packed(&b.v, kv_heads * head_dim),
            depth,
            false,
        );
        let eps = cfg.rms_norm_eps as f32;
        for (x, norm, count) in [
            (&b.q, &layer.q_norm, heads),
            (&b.k, &layer.k_norm, kv_heads),
        ] {
            rec.dispatch(
                Kernel::QkNormRope,
                params![n * count, count, head_dim, eps],
                &[x, norm, &b.rope],
                grid(n * count),
            );
        }
        // 2. This pass's K/V join the cache first, so each query sees itself
        //    and the earlier tokens of its own chunk.
        kv.append(rec, index, depth, entries.first, n, &b.k, &b.v);
        // 3. Duo-causal attention: every depth <= this one, segment by
        //    segment, into one running softmax per (query, head).
        let mut first = true;
        for (slot, &len) in entries.depth_lens.iter().enumerate() {
            for segment in kv.segments(index, slot + 1, len) {
                rec.dispatch(
                    Kernel::Attend(self.precision),
                    params![
                        n,
                        heads,
                        kv_heads,
                        head_dim,
                        slot,
                        self.max_iter,
                        segment.base,
                        segment.len,
                        kv.vector_words(),
                        first,
                        1.0 / (head_dim as f32).sqrt(),
                    ],
                    &[&b.q, segment.buffer, &b.prefix, &b.state],
                    grid(n * heads),
                );
                first = false;
            }
        }
        rec.dispatch(
            Kernel::AttendFinish,
            params![n * heads, head_dim],
            &[&b.state, &b.attn],
            grid((n * heads * head_dim).div_ceil(64)),
        );
        // 4. The residual stream takes the output projection.
        layer.o_proj.forward(
            self,
            rec,
            b,
            Rows::packed(&b.attn, heads * head_dim, n),
            Out::packed(&b.x, cfg.hidden_size),
            depth,
            true,
        );
    }

    fn mlp(&self, rec: &mut Recorder, b: &Buffers, layer: &GpuLayer, n: usize, depth: usize) {
        let (hidden, inner) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let h = Rows::packed(&b.h, hidden, n);
        layer
            .gate_proj
            .forward(self, rec, b, h, Out::packed(&b.gate, inner), depth, false);
        layer
            .up_proj
            .forward(self, rec, b, h, Out::packed(&b.up, inner), depth, false);
        rec.dispatch(
            Kernel::SiluMul,
            params![n * inner],
            &[&b.gate, &b.up],
            grid((n * inner).div_ceil(64)),
        );
        layer.down_proj.forward(
            self,
            rec,
            b,
            Rows::packed(&b.gate, inner, n),
            Out::packed(&b.x, hidden),
            depth,
            true,
        );
    }

    /// One pass over the `n` rows of `b.x` (the pass's input), up to the
    /// final norm in `b.hn`, whose non-finite rows are flagged in slot
    /// depth - 1 of `b.flags`. Hidden state i (0 = input, i = after layer
    /// i, L = final norm) goes to the capture slots asking for it.
    pub(crate) fn record_pass(
        &self,
        rec: &mut Recorder,
        b: &Buffers,
        kv: &GpuKv,
        n: usize,
        entries: &PassEntries,
        capture: Option<&Capture>,
    ) {
        let num_layers = self.layers.len();
        self.capture(rec, capture, 0, &b.x, n);
        for (i, layer) in self.layers.iter().enumerate() {
            self.rms_norm(rec, &b.x, &layer.input_layernorm, &b.h, n);
            self.attention(rec, b, kv, (i, layer), n, entries);
            self.rms_norm(rec, &b.x, &layer.post_attention_layernorm, &b.h, n);
            self.mlp(rec, b, layer, n, entries.depth);
            if i + 1 < num_layers {
                self.capture(rec, capture, i + 1, &b.x, n);
            }
        }
        self.rms_norm(rec, &b.x, &self.norm, &b.hn, n);
        self.capture(rec, capture, num_layers, &b.hn, n);
        let h = self.cfg.hidden_size;
        rec.dispatch(
            Kernel::CheckFinite,
            params![n, h, 0usize, h, entries.depth - 1],
            &[&b.hn, &b.flags],
            grid((n * h).div_ceil(64)),
        );
    }

    /// (cos, sin) of every RoPE angle of `positions`, `[n][head_dim / 2][2]`,
    /// computed exactly as the CPU path does.
    pub(crate) fn rope_table(&self, positions: &[u32]) -> Vec<f32> {
        let mut table = Vec::with_capacity(positions.len() * self.inv_freq.len() * 2);
        for &p in positions {
            for &f in &self.inv_freq {
                let (sin, cos) = (p as f32 * f).sin_cos();
                table.extend([cos, sin]);
            }
        }
        table
    }
}
