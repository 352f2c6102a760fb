//! Many-row products (prefill) on SMMLA (i8mm): each instruction multiplies
//! two activation rows by two weight rows, 8 values deep (32 products).
//!
//! Per parallel task, each pair of weight rows is unpacked once from its
//! GGUF blocks into int8 values in SMMLA's layout (the two rows' 8-value
//! steps side by side) with its scales as 2 x 2 vectors, then multiplied by
//! every pair of activation rows ([`PairRows`]), four pairs at a time. The
//! integer sums of a scale group are weighted by the group's integer scale
//! (`mla`), the block's sum by `d * da` in f32, and Q4_K's minimum term
//! subtracted per block, as in [`super::rows`].

use std::arch::aarch64::*;

use rayon::prelude::*;

use super::int8::{f16x4_to_f32, smmla};
use super::quantize::{Pair, PairRows};
use super::rows::{self, RowKernel};
use crate::kernels::dense::OutColumns;
use crate::kernels::dequant::{q4k_scales_mins, QK_K};

/// Weight rows per parallel task.
const TASK_ROWS: usize = 16;
/// Activation pairs per micro-kernel call (8 rows).
const TILE_PAIRS: usize = 4;

/// A weight block type that unpacks for SMMLA.
pub(super) trait MmlaKernel: RowKernel {
    /// Weights per block (one f32 scale `d`).
    const BLOCK: usize;
    /// Weights per integer scale (`BLOCK` when the type has none).
    const GROUP: usize;
    /// Whether the type has a minimum term (Q4_K).
    const MINS: bool = false;

    /// One block as `BLOCK` int8 values in natural order, its integer group
    /// scales (`BLOCK / GROUP`) and, for Q4_K, `dmin * m_j` per 32 values;
    /// returns `d`.
    ///
    /// # Safety
    /// `block` must hold `BLOCK_BYTES` bytes and the outputs their lengths.
    unsafe fn unpack(block: &[u8], values: &mut [i8], scales: &mut [i32], mins: &mut [f32]) -> f32;
}

impl MmlaKernel for rows::Q4K {
    const BLOCK: usize = QK_K;
    const GROUP: usize = 32;
    const MINS: bool = true;

    #[inline(always)]
    unsafe fn unpack(block: &[u8], values: &mut [i8], scales: &mut [i32], mins: &mut [f32]) -> f32 {
        let d_dmin = f16x4_to_f32(u64::from(u32::from_le_bytes([
            block[0], block[1], block[2], block[3],
        ])));
        let (sc, mn) = q4k_scales_mins(&*(block.as_ptr().add(4) as *const [u8; 12]));
        let dmin = vgetq_lane_f32::<1>(d_dmin);
        for j in 0..8 {
            scales[j] = (sc >> (8 * j) & 0xFF) as i32;
            mins[j] = dmin * (mn >> (8 * j) & 0xFF) as f32;
        }
        let mask = vdupq_n_u8(0x0F);
        for c in 0..4 {
            let q = block.as_ptr().add(16 + 32 * c);
            let out = values.as_mut_ptr().add(64 * c);
            for h in 0..2 {
                let bytes = vld1q_u8(q.add(16 * h));
                vst1q_u8(out.add(16 * h) as *mut u8, vandq_u8(bytes, mask));
                vst1q_u8(out.add(32 + 16 * h) as *mut u8, vshrq_n_u8::<4>(bytes));
            }
        }
        vgetq_lane_f32::<0>(d_dmin)
    }
}

impl MmlaKernel for rows::Q6K {
    const BLOCK: usize = QK_K;
    const GROUP: usize = 16;

    #[inline(always)]
    unsafe fn unpack(block: &[u8], values: &mut [i8], scales: &mut [i32], _: &mut [f32]) -> f32 {
        for (s, b) in scales.iter_mut().zip(&block[192..208]) {
            *s = *b as i8 as i32;
        }
        let bias = vdupq_n_s8(32);
        let p = block.as_ptr();
        for h in 0..2 {
            for v in 0..2 {
                let (ql, qh) = (p.add(64 * h + 16 * v), p.add(128 + 32 * h + 16 * v));
                for (i, q) in rows::q6k_quarters(ql, qh).into_iter().enumerate() {
                    let at = values.as_mut_ptr().add(128 * h + 32 * i + 16 * v);
                    vst1q_s8(at, vsubq_s8(vreinterpretq_s8_u8(q), bias));
                }
            }
        }
        vgetq_lane_f32::<0>(f16x4_to_f32(u64::from(u16::from_le_bytes([
            block[208], block[209],
        ]))))
    }
}

impl MmlaKernel for rows::Q8_0 {
    const BLOCK: usize = 32;
    const GROUP: usize = 32;

    #[inline(always)]
    unsafe fn unpack(block: &[u8], values: &mut [i8], _: &mut [i32], _: &mut [f32]) -> f32 {
        let p = block.as_ptr().add(2) as *const i8;
        vst1q_s8(values.as_mut_ptr(), vld1q_s8(p));
        vst1q_s8(values.as_mut_ptr().add(16), vld1q_s8(p.add(16)));
        vgetq_lane_f32::<0>(f16x4_to_f32(u64::from(u16::from_le_bytes([
            block[0], block[1],
        ]))))
    }
}

impl MmlaKernel for rows::Q4_0 {
    const BLOCK: usize = 32;
    const GROUP: usize = 32;

    #[inline(always)]
    unsafe fn unpack(block: &[u8], values: &mut [i8], _: &mut [i32], _: &mut [f32]) -> f32 {
        let nibbles = vld1q_u8(block.as_ptr().add(2));
        let eight = vdupq_n_s8(8);
        let low = vsubq_s8(
            vreinterpretq_s8_u8(vandq_u8(nibbles, vdupq_n_u8(0x0F))),
            eight,
        );
        let high = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(nibbles)), eight);
        vst1q_s8(values.as_mut_ptr(), low);
        vst1q_s8(values.as_mut_ptr().add(16), high);
        vgetq_lane_f32::<0>(f16x4_to_f32(u64::from(u16::from_le_bytes([
            block[0], block[1],
        ]))))
    }
}

/// Two weight rows unpacked for SMMLA (a task's buffers, reused).
struct WeightPair {
    /// `k / 8` steps of 16 values: 8 of row a, then 8 of row b.
    values: Vec<i8>,
    /// `[s_a, s_b, s_a, s_b]` per scale group.
    scales: Vec<i32>,
    /// `[d_a, d_b, d_a, d_b]` per block.
    d: Vec<f32>,
    /// `[dmin_a m_a, dmin_b m_b, dmin_a m_a, dmin_b m_b]` per 32 values (Q4_K).
    mins: Vec<f32>,
    /// One row's unpacked values, scales, mins and block scales (scratch).
    row: (Vec<i8>, Vec<i32>, Vec<f32>, Vec<f32>),
}

impl WeightPair {
    fn new<K: MmlaKernel>(k: usize) -> Self {
        WeightPair {
            values: vec![0; 2 * k],
            scales: vec![0; 4 * k / K::GROUP],
            d: vec![0.0; 4 * k / K::BLOCK],
            mins: vec![0.0; if K::MINS { 4 * k / 32 } else { 0 }],
            row: (
                vec![0; k],
                vec![0; k / K::GROUP],
                vec![0.0; if K::MINS { k / 32 } else { 0 }],
                vec![0.0; k / K::BLOCK],
            ),
        }
    }

    /// Unpacks weight rows `a` and `b` (None: a zero row pads an odd count).
    #[inline(always)]
    unsafe fn fill<K: MmlaKernel>(&mut self, a: &[u8], b: Option<&[u8]>, k: usize) {
        for (half, bytes) in [(0, Some(a)), (1, b)] {
            let (values, scales, mins, d) = &mut self.row;
            match bytes {
                Some(bytes) => {
                    for (i, block) in bytes.chunks_exact(K::BLOCK_BYTES).enumerate() {
                        let groups = K::BLOCK / K::GROUP;
                        let m_at = i * K::BLOCK / 32;
                        let block_mins = if K::MINS {
                            &mut mins[m_at..m_at + 8]
                        } else {
                            &mut [][..]
                        };
                        d[i] = K::unpack(
                            block,
                            &mut values[i * K::BLOCK..][..K::BLOCK],
                            &mut scales[i * groups..][..groups],
                            block_mins,
                        );
                    }
                }
                None => {
                    values.fill(0);
                    scales.fill(0);
                    mins.fill(0.0);
                    d.fill(0.0);
                }
            }
            // Interleave: step t holds values 8t..8t + 8 of each row.
            for t in 0..k / 8 {
                let src = values.as_ptr().add(8 * t);
                let dst = self.values.as_mut_ptr().add(16 * t + 8 * half);
                std::ptr::copy_nonoverlapping(src, dst, 8);
            }
            for (g, s) in scales.iter().enumerate() {
                self.scales[4 * g + half] = *s;
                self.scales[4 * g + 2 + half] = *s;
            }
            for (blk, v) in d.iter().enumerate() {
                self.d[4 * blk + half] = *v;
                self.d[4 * blk + 2 + half] = *v;
            }
            for (g, m) in mins.iter().enumerate() {
                self.mins[4 * g + half] = *m;
                self.mins[4 * g + 2 + half] = *m;
            }
        }
    }
}

/// `x @ W^T` into `out` (`[m, n]`) for `n` weight rows of `K` in `weights`.
pub(super) fn matmul_t<K: MmlaKernel>(
    x: &PairRows,
    m: usize,
    weights: &[u8],
    n: usize,
    out: &mut [f32],
) {
    let k = x.cols;
    let row_bytes = k / K::BLOCK * K::BLOCK_BYTES;
    let out = OutColumns::new(out);
    weights
        .par_chunks(TASK_ROWS * row_bytes)
        .enumerate()
        .for_each_init(
            || WeightPair::new::<K>(k),
            |pair, (task, chunk)| {
                // SAFETY: the tier is I8mm (checked by the caller); the
                // chunk holds whole rows of `k`; the task writes only
                // columns `task * TASK_ROWS..` of its own rows, inside `out`.
                unsafe { task_i8mm::<K>(x, m, chunk, row_bytes, task * TASK_ROWS, pair, out, n) }
            },
        );
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod,i8mm")]
unsafe fn task_i8mm<K: MmlaKernel>(
    x: &PairRows,
    m: usize,
    chunk: &[u8],
    row_bytes: usize,
    first: usize,
    pair: &mut WeightPair,
    out: OutColumns,
    n: usize,
) {
    let k = x.cols;
    let rows: Vec<&[u8]> = chunk.chunks_exact(row_bytes).collect();
    let pairs: Vec<Pair> = (0..x.pairs).map(|p| x.pair(p)).collect();
    for (c, two) in rows.chunks(2).enumerate() {
        pair.fill::<K>(two[0], two.get(1).copied(), k);
        let col = first + 2 * c;
        let cols = two.len();
        for p0 in (0..x.pairs).step_by(TILE_PAIRS) {
            let at = (out, m, n, col, cols);
            match x.pairs - p0 {
                1 => tile::<K, 1>(pair, &pairs, p0, k, at),
                2 => tile::<K, 2>(pair, &pairs, p0, k, at),
                3 => tile::<K, 3>(pair, &pairs, p0, k, at),
                _ => tile::<K, TILE_PAIRS>(pair, &pairs, p0, k, at),
            }
        }
    }
}

/// Activation pairs `p0..p0 + P` times the weight pair, stored at column
/// `col` (`cols` of 1 or 2 valid) of rows `2 p0..` (those below `m`).
#[inline(always)]
unsafe fn tile<K: MmlaKernel, const P: usize>(
    w: &WeightPair,
    pairs: &[Pair],
    p0: usize,
    k: usize,
    (out, m, n, col, cols): (OutColumns, usize, usize, usize, usize),
) {
    let pairs: [Pair; P] = std::array::from_fn(|i| pairs[p0 + i]);
    let steps_per_group = K::GROUP / 8;
    let groups = K::BLOCK / K::GROUP;
    let scaled = groups > 1;
    let mut acc = [vdupq_n_f32(0.0); P];
    for b in 0..k / K::BLOCK {
        let mut block_sum = [vdupq_n_s32(0); P];
        for g in 0..groups {
            let first_step = (b * groups + g) * steps_per_group;
            let mut sum = [vdupq_n_s32(0); P];
            for s in first_step..first_step + steps_per_group {
                let weights = vld1q_s8(w.values.as_ptr().add(16 * s));
                for p in 0..P {
                    let a = vld1q_s8(pairs[p].values.as_ptr().add(16 * s));
                    sum[p] = smmla(sum[p], a, weights);
                }
            }
            if scaled {
                let scale = vld1q_s32(w.scales.as_ptr().add(4 * (b * groups + g)));
                for p in 0..P {
                    block_sum[p] = vmlaq_s32(block_sum[p], sum[p], scale);
                }
            } else {
                block_sum = sum;
            }
        }
        let d = vld1q_f32(w.d.as_ptr().add(4 * b));
        for p in 0..P {
            let da = vld1q_f32(pairs[p].scales.as_ptr().add(4 * b));
            acc[p] = vfmaq_f32(acc[p], vcvtq_f32_s32(block_sum[p]), vmulq_f32(d, da));
        }
        if K::MINS {
            for j in 8 * b..8 * b + 8 {
                let mins = vld1q_f32(w.mins.as_ptr().add(4 * j));
                for p in 0..P {
                    let sums = vld1q_f32(pairs[p].sums32.as_ptr().add(4 * j));
                    acc[p] = vfmsq_f32(acc[p], mins, sums);
                }
            }
        }
    }
    // Lane (i, j) is row 2p + i, weight column col + j.
    for (p, acc) in acc.iter().enumerate() {
        for (i, half) in [vget_low_f32(*acc), vget_high_f32(*acc)]
            .into_iter()
            .enumerate()
        {
            let row = 2 * (p0 + p) + i;
            if row < m {
                let at = out.at(row * n + col);
                if cols == 2 {
                    vst1_f32(at, half);
                } else {
                    *at = vget_lane_f32::<0>(half);
                }
            }
        }
    }
}
