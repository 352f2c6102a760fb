//! Activations quantized to int8 for the AArch64 products: one f32 scale per
//! block of 32 (Q8_0 and Q4_0 weights) or 256 values (K-quants, like
//! ggml's Q8_K), and where a kernel asks for them sums of the int8 values:
//! `scale * Σ a` over every 32 (the activation side of Q4_K's minimum
//! term) or `Σ a` over every 16 (Q6_K's offset of 32).

use std::arch::aarch64::*;

/// Which sums of the int8 values [`QuantRows`] keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sums {
    None,
    /// `scale * Σ a` per 32 values, as f32.
    Scaled32,
    /// `Σ a` per 16 values, as i16.
    Int16,
}

/// Rows of activations as int8 blocks.
pub(super) struct QuantRows {
    /// Values per scale: 32 or 256.
    pub block: usize,
    pub cols: usize,
    pub rows: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    /// `scale * Σ a` per 32 values (empty unless asked for).
    sums32: Vec<f32>,
    /// `Σ a` per 16 values (empty unless asked for).
    sums16: Vec<i16>,
}

/// One row of [`QuantRows`].
#[derive(Clone, Copy)]
pub(super) struct Row<'a> {
    pub values: &'a [i8],
    pub scales: &'a [f32],
    pub sums32: &'a [f32],
    pub sums16: &'a [i16],
}

impl QuantRows {
    /// `x` as `rows` rows of `cols` (a multiple of `block`, itself 32 or
    /// 256). NaN becomes 0; a block with an infinite value becomes zeros
    /// (its scale 0), as on every 8-bit activation path.
    pub fn new(x: &[f32], rows: usize, cols: usize, block: usize, sums: Sums) -> Self {
        debug_assert!(cols.is_multiple_of(block) && x.len() == rows * cols);
        let mut values = vec![0i8; x.len()];
        let mut scales = Vec::with_capacity(x.len() / block);
        let mut sums32 = Vec::new();
        let mut sums16 = Vec::new();
        for (src, dst) in x.chunks_exact(block).zip(values.chunks_exact_mut(block)) {
            // SAFETY: NEON is the AArch64 baseline; `src` and `dst` hold
            // `block` values, a multiple of 32, and every load below reads
            // 16 of them.
            let scale = unsafe { quantize_block(src, dst) };
            scales.push(scale);
            let sum16 = |at: usize| unsafe { vaddlvq_s8(vld1q_s8(dst.as_ptr().add(at))) };
            match sums {
                Sums::None => {}
                Sums::Scaled32 => {
                    sums32.extend((0..block).step_by(32).map(|at| {
                        (i32::from(sum16(at)) + i32::from(sum16(at + 16))) as f32 * scale
                    }))
                }
                Sums::Int16 => sums16.extend((0..block).step_by(16).map(sum16)),
            }
        }
        QuantRows {
            block,
            cols,
            rows,
            values,
            scales,
            sums32,
            sums16,
        }
    }

    pub fn row(&self, r: usize) -> Row<'_> {
        let blocks = self.cols / self.block;
        let (groups32, groups16) = (self.cols / 32, self.cols / 16);
        Row {
            values: &self.values[r * self.cols..][..self.cols],
            scales: &self.scales[r * blocks..][..blocks],
            sums32: self
                .sums32
                .get(r * groups32..(r + 1) * groups32)
                .unwrap_or(&[]),
            sums16: self
                .sums16
                .get(r * groups16..(r + 1) * groups16)
                .unwrap_or(&[]),
        }
    }
}

/// Quantizes one block (a multiple of 16 values) to int8 with a shared
/// scale, returned. FMAXNM ignores NaN in the maximum; FCVTNS turns NaN into
/// 0 and rounds to nearest.
///
/// # Safety
/// `src` and `dst` must have the same length, a multiple of 16.
#[inline(always)]
unsafe fn quantize_block(src: &[f32], dst: &mut [i8]) -> f32 {
    let mut amax = vdupq_n_f32(0.0);
    for chunk in src.chunks_exact(4) {
        amax = vmaxnmq_f32(amax, vabsq_f32(vld1q_f32(chunk.as_ptr())));
    }
    let amax = vmaxnmvq_f32(amax);
    let scale = if amax > 0.0 && amax.is_finite() {
        amax / 127.0
    } else {
        0.0
    };
    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(16)) {
        let p = s.as_ptr();
        let q: [int32x4_t; 4] =
            std::array::from_fn(|i| vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(p.add(4 * i)), inverse)));
        let low = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
        let high = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
        vst1q_s8(
            d.as_mut_ptr(),
            vcombine_s8(vqmovn_s16(low), vqmovn_s16(high)),
        );
    }
    scale
}

/// [`QuantRows`] rearranged for SMMLA: rows in pairs (a zero row pads an odd
/// count), each 8-value step of the pair's two rows side by side, and the
/// per-block scales and 32-value sums as `[row 0, row 0, row 1, row 1]`
/// vectors, the layout of SMMLA's 2 x 2 results.
pub(super) struct PairRows {
    pub pairs: usize,
    pub cols: usize,
    pub block: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    sums32: Vec<f32>,
}

/// One pair of [`PairRows`].
#[derive(Clone, Copy)]
pub(super) struct Pair<'a> {
    /// `cols / 8` steps of 16 values.
    pub values: &'a [i8],
    /// Four per block.
    pub scales: &'a [f32],
    /// Four per 32 values (empty without sums).
    pub sums32: &'a [f32],
}

impl PairRows {
    pub fn new(q: &QuantRows) -> Self {
        let pairs = q.rows.div_ceil(2);
        let (cols, blocks, groups) = (q.cols, q.cols / q.block, q.cols / 32);
        let with_sums = !q.sums32.is_empty();
        let mut values = vec![0i8; pairs * 2 * cols];
        let mut scales = vec![0f32; pairs * blocks * 4];
        let mut sums32 = vec![0f32; if with_sums { pairs * groups * 4 } else { 0 }];
        for r in 0..q.rows {
            let (p, half) = (r / 2, r % 2);
            let row = q.row(r);
            let dst = &mut values[p * 2 * cols..][..2 * cols];
            for (step, eight) in row.values.chunks_exact(8).enumerate() {
                dst[16 * step + 8 * half..][..8].copy_from_slice(eight);
            }
            for (b, s) in row.scales.iter().enumerate() {
                scales[(p * blocks + b) * 4 + 2 * half..][..2].fill(*s);
            }
            for (g, s) in row.sums32.iter().enumerate() {
                sums32[(p * groups + g) * 4 + 2 * half..][..2].fill(*s);
            }
        }
        PairRows {
            pairs,
            cols,
            block: q.block,
            values,
            scales,
            sums32,
        }
    }

    pub fn pair(&self, p: usize) -> Pair<'_> {
        let (blocks, groups) = (self.cols / self.block, self.cols / 32);
        Pair {
            values: &self.values[p * 2 * self.cols..][..2 * self.cols],
            scales: &self.scales[p * blocks * 4..][..blocks * 4],
            sums32: self
                .sums32
                .get(p * groups * 4..(p + 1) * groups * 4)
                .unwrap_or(&[]),
        }
    }
}
