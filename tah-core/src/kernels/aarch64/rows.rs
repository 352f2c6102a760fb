//! Weight rows dotted with up to four int8 activation rows at a time,
//! straight from the GGUF blocks: the decode products (and prefill below
//! the i8mm tier, four rows at a time). Each block's weights are unpacked
//! into registers once for all the activation rows of a tile.
//!
//! Per block type, with `a` the int8 activations and `da` their scale:
//! - Q4_K: `d * da * Σ_j sc_j Σ q a  -  dmin * Σ_j m_j (da Σ_j a)`, the
//!   second sum from the activations' 32-value sums;
//! - Q6_K: `d * da * Σ_g sc_g Σ (q - 32) a` over 16-value groups;
//! - Q8_0: `d * da * Σ q a`; Q4_0: `d * da * Σ (q - 8) a` (32-value blocks).

use std::arch::aarch64::*;

use super::int8::{f16x4_to_f32, Int8Dot};
use super::quantize::Row;
use crate::kernels::dequant::{
    q4k_scales_mins, Q4K_BYTES, Q4_0_BYTES, Q6K_BYTES, Q8_0_BYTES, QK_K,
};

/// A weight block type with a row kernel.
pub(super) trait RowKernel {
    /// Bytes of one block.
    const BLOCK_BYTES: usize;
    /// Weight row `w` dotted with each of `rows`.
    ///
    /// # Safety
    /// The CPU must run `D`; `w` must hold whole blocks and every row as
    /// many values (and scales, and for Q4_K 32-value sums) as `w` has
    /// weights.
    unsafe fn dot<D: Int8Dot, const R: usize>(w: &[u8], rows: &[Row; R]) -> [f32; R];
}

pub(super) struct Q4K;
pub(super) struct Q6K;
pub(super) struct Q8_0;
pub(super) struct Q4_0;

/// The i32 lanes of four u8 values.
#[inline(always)]
unsafe fn widen_u8x4(bytes: uint8x8_t) -> [int32x4_t; 2] {
    let wide = vmovl_u8(bytes);
    [
        vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(wide))),
        vreinterpretq_s32_u32(vmovl_high_u16(wide)),
    ]
}

impl RowKernel for Q4K {
    const BLOCK_BYTES: usize = Q4K_BYTES;

    #[inline(always)]
    unsafe fn dot<D: Int8Dot, const R: usize>(w: &[u8], rows: &[Row; R]) -> [f32; R] {
        let mut acc = [vdupq_n_f32(0.0); R];
        let mut min_acc = [vdupq_n_f32(0.0); R];
        for (b, block) in w.chunks_exact(Q4K_BYTES).enumerate() {
            let p = block.as_ptr();
            // d and dmin widened together.
            let d_dmin = f16x4_to_f32(u64::from(u32::from_le_bytes([
                block[0], block[1], block[2], block[3],
            ])));
            let (scales, mins) = q4k_scales_mins(&*(p.add(4) as *const [u8; 12]));
            let scales = widen_u8x4(vcreate_u8(scales));
            let mins = widen_u8x4(vcreate_u8(mins));
            let dmin = vgetq_lane_f32::<1>(d_dmin);
            let weighted_mins = mins.map(|m| vmulq_n_f32(vcvtq_f32_s32(m), dmin));
            let mut isum = [vdupq_n_s32(0); R];
            let start = b * QK_K;
            // Four chunks of 64 weights: 32 bytes of nibbles, the low ones
            // group 2c, the high ones group 2c + 1.
            q4k_chunk::<D, R, 0, 1>(p.add(16), rows, start, scales[0], &mut isum);
            q4k_chunk::<D, R, 2, 3>(p.add(48), rows, start + 64, scales[0], &mut isum);
            q4k_chunk::<D, R, 0, 1>(p.add(80), rows, start + 128, scales[1], &mut isum);
            q4k_chunk::<D, R, 2, 3>(p.add(112), rows, start + 192, scales[1], &mut isum);
            let d = vgetq_lane_f32::<0>(d_dmin);
            for r in 0..R {
                let da = *rows[r].scales.get_unchecked(b);
                acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(isum[r]), d * da);
                let sums = rows[r].sums32.as_ptr().add(8 * b);
                min_acc[r] = vfmaq_f32(min_acc[r], weighted_mins[0], vld1q_f32(sums));
                min_acc[r] = vfmaq_f32(min_acc[r], weighted_mins[1], vld1q_f32(sums.add(4)));
            }
        }
        std::array::from_fn(|r| vaddvq_f32(acc[r]) - vaddvq_f32(min_acc[r]))
    }
}

/// 64 weights of a Q4_K block (32 bytes of nibbles at `q`) against values
/// `at..at + 64` of every row: the low nibbles scaled by lane `LO` of
/// `scales`, the high ones by lane `HI`.
#[inline(always)]
unsafe fn q4k_chunk<D: Int8Dot, const R: usize, const LO: i32, const HI: i32>(
    q: *const u8,
    rows: &[Row; R],
    at: usize,
    scales: int32x4_t,
    isum: &mut [int32x4_t; R],
) {
    let mask = vdupq_n_u8(0x0F);
    let (q0, q1) = (vld1q_u8(q), vld1q_u8(q.add(16)));
    let low = [vandq_u8(q0, mask), vandq_u8(q1, mask)].map(|q| vreinterpretq_s8_u8(q));
    let high = [vshrq_n_u8::<4>(q0), vshrq_n_u8::<4>(q1)].map(|q| vreinterpretq_s8_u8(q));
    for r in 0..R {
        let a = rows[r].values.as_ptr().add(at);
        let zero = vdupq_n_s32(0);
        let sum_low = D::dot(
            D::dot(zero, low[0], vld1q_s8(a)),
            low[1],
            vld1q_s8(a.add(16)),
        );
        let sum_high = D::dot(
            D::dot(zero, high[0], vld1q_s8(a.add(32))),
            high[1],
            vld1q_s8(a.add(48)),
        );
        isum[r] = vmlaq_laneq_s32::<LO>(isum[r], sum_low, scales);
        isum[r] = vmlaq_laneq_s32::<HI>(isum[r], sum_high, scales);
    }
}

impl RowKernel for Q6K {
    const BLOCK_BYTES: usize = Q6K_BYTES;

    #[inline(always)]
    unsafe fn dot<D: Int8Dot, const R: usize>(w: &[u8], rows: &[Row; R]) -> [f32; R] {
        let mut acc = [vdupq_n_f32(0.0); R];
        for (b, block) in w.chunks_exact(Q6K_BYTES).enumerate() {
            let p = block.as_ptr();
            // The sixteen int8 scales as four vectors of i32 lanes.
            let sc = vld1q_s8(p.add(192) as *const i8);
            let (sc_low, sc_high) = (vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc));
            let scales = [
                vmovl_s16(vget_low_s16(sc_low)),
                vmovl_high_s16(sc_low),
                vmovl_s16(vget_low_s16(sc_high)),
                vmovl_high_s16(sc_high),
            ];
            let mut isum = [vdupq_n_s32(0); R];
            for h in 0..2 {
                let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
                let at = b * QK_K + 128 * h;
                let (s0, s1) = (scales[2 * h], scales[2 * h + 1]);
                q6k_sixteen::<D, R, 0, 2>(ql, qh, rows, at, (s0, s1), &mut isum);
                q6k_sixteen::<D, R, 1, 3>(
                    ql.add(16),
                    qh.add(16),
                    rows,
                    at + 16,
                    (s0, s1),
                    &mut isum,
                );
            }
            let d = f16x4_to_f32(u64::from(u16::from_le_bytes([block[208], block[209]])));
            let d = vgetq_lane_f32::<0>(d);
            for r in 0..R {
                let da = *rows[r].scales.get_unchecked(b);
                acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(isum[r]), d * da);
            }
        }
        std::array::from_fn(|r| vaddvq_f32(acc[r]))
    }
}

/// Sixteen weights `l..l + 16` of each quarter of a Q6_K half block (`ql`
/// at the half's low bits + l, `qh` at its high bits + l), against values
/// `at + 32i..` of every row: quarter 0 and 1 scaled by lanes `A` and `B` of
/// `scales.0`, quarters 2 and 3 by lanes `A` and `B` of `scales.1`.
#[inline(always)]
unsafe fn q6k_sixteen<D: Int8Dot, const R: usize, const A: i32, const B: i32>(
    ql: *const u8,
    qh: *const u8,
    rows: &[Row; R],
    at: usize,
    scales: (int32x4_t, int32x4_t),
    isum: &mut [int32x4_t; R],
) {
    let (low_mask, top_mask) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30));
    let (ql_a, ql_b, high) = (vld1q_u8(ql), vld1q_u8(ql.add(32)), vld1q_u8(qh));
    // Low four bits from `ql`, bits 4-5 from the matching two bits of `qh`.
    let q = [
        vorrq_u8(
            vandq_u8(ql_a, low_mask),
            vandq_u8(vshlq_n_u8::<4>(high), top_mask),
        ),
        vorrq_u8(
            vandq_u8(ql_b, low_mask),
            vandq_u8(vshlq_n_u8::<2>(high), top_mask),
        ),
        vsriq_n_u8::<4>(vandq_u8(high, top_mask), ql_a),
        vsriq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(high), top_mask), ql_b),
    ]
    .map(|q| vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32)));
    for r in 0..R {
        let a = rows[r].values.as_ptr().add(at);
        let zero = vdupq_n_s32(0);
        let s = [0, 1, 2, 3].map(|i| D::dot(zero, q[i], vld1q_s8(a.add(32 * i))));
        isum[r] = vmlaq_laneq_s32::<A>(isum[r], s[0], scales.0);
        isum[r] = vmlaq_laneq_s32::<B>(isum[r], s[1], scales.0);
        isum[r] = vmlaq_laneq_s32::<A>(isum[r], s[2], scales.1);
        isum[r] = vmlaq_laneq_s32::<B>(isum[r], s[3], scales.1);
    }
}

impl RowKernel for Q8_0 {
    const BLOCK_BYTES: usize = Q8_0_BYTES;

    #[inline(always)]
    unsafe fn dot<D: Int8Dot, const R: usize>(w: &[u8], rows: &[Row; R]) -> [f32; R] {
        let mut acc = [vdupq_n_f32(0.0); R];
        for (b, block) in w.chunks_exact(Q8_0_BYTES).enumerate() {
            let p = block.as_ptr();
            let q = [
                vld1q_s8(p.add(2) as *const i8),
                vld1q_s8(p.add(18) as *const i8),
            ];
            let d = vgetq_lane_f32::<0>(f16x4_to_f32(u64::from(u16::from_le_bytes([
                block[0], block[1],
            ]))));
            block32::<D, R>(q, d, b, rows, &mut acc);
        }
        std::array::from_fn(|r| vaddvq_f32(acc[r]))
    }
}

impl RowKernel for Q4_0 {
    const BLOCK_BYTES: usize = Q4_0_BYTES;

    #[inline(always)]
    unsafe fn dot<D: Int8Dot, const R: usize>(w: &[u8], rows: &[Row; R]) -> [f32; R] {
        let mut acc = [vdupq_n_f32(0.0); R];
        let (mask, eight) = (vdupq_n_u8(0x0F), vdupq_n_s8(8));
        for (b, block) in w.chunks_exact(Q4_0_BYTES).enumerate() {
            let p = block.as_ptr();
            let nibbles = vld1q_u8(p.add(2));
            let q = [vandq_u8(nibbles, mask), vshrq_n_u8::<4>(nibbles)]
                .map(|q| vsubq_s8(vreinterpretq_s8_u8(q), eight));
            let d = vgetq_lane_f32::<0>(f16x4_to_f32(u64::from(u16::from_le_bytes([
                block[0], block[1],
            ]))));
            block32::<D, R>(q, d, b, rows, &mut acc);
        }
        std::array::from_fn(|r| vaddvq_f32(acc[r]))
    }
}

/// A 32-weight block (`q`, scale `d`) dotted with block `b` of every row.
#[inline(always)]
unsafe fn block32<D: Int8Dot, const R: usize>(
    q: [int8x16_t; 2],
    d: f32,
    b: usize,
    rows: &[Row; R],
    acc: &mut [float32x4_t; R],
) {
    for r in 0..R {
        let a = rows[r].values.as_ptr().add(32 * b);
        let sum = D::dot(
            D::dot(vdupq_n_s32(0), q[0], vld1q_s8(a)),
            q[1],
            vld1q_s8(a.add(16)),
        );
        let da = *rows[r].scales.get_unchecked(b);
        acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(sum), d * da);
    }
}
