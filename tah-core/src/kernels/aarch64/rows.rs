//! Weight rows dotted with up to four int8 activation rows at a time,
//! straight from the GGUF blocks: the decode products (and prefill below
//! the i8mm tier, four rows at a time). Each block's weights are unpacked
//! into registers once for all the activation rows of a tile. The groups'
//! integer sums are reduced pairwise (`addp`) into vectors of four groups,
//! so their scales are applied four at a time.
//!
//! Per block type, with `a` the int8 activations and `da` their scale:
//! - Q4_K: `d * da * Σ_j sc_j Σ q a  -  dmin * Σ_j m_j (da Σ_j a)`, the
//!   second sum from the activations' 32-value sums;
//! - Q6_K: `d * da * Σ_g sc_g (Σ q a - 32 Σ a)` over 16-value groups, the
//!   second sum from the activations' 16-value sums;
//! - Q8_0: `d * da * Σ q a`; Q4_0: `d * da * Σ (q - 8) a` (32-value blocks).

use std::arch::aarch64::*;

use super::int8::{f16x4_to_f32, Int8Dot};
use super::quantize::Row;
use crate::kernels::dequant::{Q4K_BYTES, Q4_0_BYTES, Q6K_BYTES, Q8_0_BYTES, QK_K};

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

/// Eight u8 values as two vectors of i32 lanes.
#[inline(always)]
unsafe fn widen_u8x8(bytes: uint8x8_t) -> [int32x4_t; 2] {
    let wide = vmovl_u8(bytes);
    [
        vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(wide))),
        vreinterpretq_s32_u32(vmovl_high_u16(wide)),
    ]
}

/// The eight 6-bit (scale, min) pairs of a Q4_K block (its 12 bytes at
/// `s`, see [`crate::kernels::dequant::q4k_scales_mins`]) as bytes: scales
/// 0-7, then mins 0-7. Groups 0-3 are the low 6 bits of bytes 0-3 (scales)
/// and 4-7 (mins); groups 4-7 take the nibbles of bytes 8-11 as their low
/// bits and the top two bits of bytes 0-7 as their high ones.
///
/// # Safety
/// `s` must be readable for 16 bytes (the 12, then the block's first
/// quants).
#[inline(always)]
pub(super) unsafe fn q4k_scales_and_mins(s: *const u8) -> uint8x16_t {
    let v = vld1q_u8(s);
    // Lanes 0-3: scales 0-3; 4-7: mins 0-3.
    let first = vandq_u8(v, vdupq_n_u8(0x3F));
    // Lanes 0-3: bytes 8-11's low nibbles; 4-7: their high nibbles; then
    // the top two bits of bytes 0-7 above them: scales 4-7, mins 4-7.
    let upper = vextq_u8::<8>(v, v);
    let nibbles = vreinterpretq_u8_u32(vzip1q_u32(
        vreinterpretq_u32_u8(vandq_u8(upper, vdupq_n_u8(0x0F))),
        vreinterpretq_u32_u8(vshrq_n_u8::<4>(upper)),
    ));
    let second = vsliq_n_u8::<4>(nibbles, vshrq_n_u8::<6>(v));
    vreinterpretq_u8_u32(vzip1q_u32(
        vreinterpretq_u32_u8(first),
        vreinterpretq_u32_u8(second),
    ))
}

/// Two dot products' four lanes each reduced to two lanes: `[a0 + a1,
/// a2 + a3, b0 + b1, b2 + b3]`. Two rounds of this turn four groups'
/// products into one vector of the four groups' sums, which one `mla`
/// weights by the groups' scales (instead of a scale broadcast per group).
#[inline(always)]
unsafe fn pair_sums(a: int32x4_t, b: int32x4_t) -> int32x4_t {
    vpaddq_s32(a, b)
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
            let scales_mins = q4k_scales_and_mins(p.add(4));
            let scales = widen_u8x8(vget_low_u8(scales_mins));
            let mins = widen_u8x8(vget_high_u8(scales_mins));
            let dmin = vgetq_lane_f32::<1>(d_dmin);
            let weighted_mins = mins.map(|m| vmulq_n_f32(vcvtq_f32_s32(m), dmin));
            // Four chunks of 64 weights (32 bytes of nibbles: the low ones
            // group 2c, the high ones group 2c + 1), each giving the two
            // groups' sums in pairs of lanes; two chunks together give
            // groups 0-3 (then 4-7) in the lanes of one vector.
            let start = b * QK_K;
            let chunk = |c: usize| q4k_chunk::<D, R>(p.add(16 + 32 * c), rows, start + 64 * c);
            let (c0, c1, c2, c3) = (chunk(0), chunk(1), chunk(2), chunk(3));
            let d = vgetq_lane_f32::<0>(d_dmin);
            for r in 0..R {
                let groups_low = pair_sums(c0[r], c1[r]);
                let groups_high = pair_sums(c2[r], c3[r]);
                let isum = vmlaq_s32(vmulq_s32(groups_low, scales[0]), groups_high, scales[1]);
                let da = *rows[r].scales.get_unchecked(b);
                acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(isum), d * da);
                let sums = rows[r].sums32.as_ptr().add(8 * b);
                min_acc[r] = vfmaq_f32(min_acc[r], weighted_mins[0], vld1q_f32(sums));
                min_acc[r] = vfmaq_f32(min_acc[r], weighted_mins[1], vld1q_f32(sums.add(4)));
            }
        }
        std::array::from_fn(|r| vaddvq_f32(acc[r]) - vaddvq_f32(min_acc[r]))
    }
}

/// 64 weights of a Q4_K block (32 bytes of nibbles at `q`) against values
/// `at..at + 64` of every row: per row `[low, low, high, high]` partial sums
/// of the chunk's two groups.
#[inline(always)]
unsafe fn q4k_chunk<D: Int8Dot, const R: usize>(
    q: *const u8,
    rows: &[Row; R],
    at: usize,
) -> [int32x4_t; R] {
    let mask = vdupq_n_u8(0x0F);
    let (q0, q1) = (vld1q_u8(q), vld1q_u8(q.add(16)));
    let low = [vandq_u8(q0, mask), vandq_u8(q1, mask)].map(|q| vreinterpretq_s8_u8(q));
    let high = [vshrq_n_u8::<4>(q0), vshrq_n_u8::<4>(q1)].map(|q| vreinterpretq_s8_u8(q));
    std::array::from_fn(|r| {
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
        pair_sums(sum_low, sum_high)
    })
}

impl RowKernel for Q6K {
    const BLOCK_BYTES: usize = Q6K_BYTES;

    #[inline(always)]
    unsafe fn dot<D: Int8Dot, const R: usize>(w: &[u8], rows: &[Row; R]) -> [f32; R] {
        let mut acc = [vdupq_n_f32(0.0); R];
        let thirty_two = vdupq_n_s32(32);
        for (b, block) in w.chunks_exact(Q6K_BYTES).enumerate() {
            let p = block.as_ptr();
            // The sixteen int8 scales: in natural order as i16 (for the
            // offset), and as i32 vectors of the even groups (0, 2, 4, 6,
            // then 8, ..., 14) and odd groups, the order the sums come in.
            let sc = vld1q_s8(p.add(192) as *const i8);
            let natural = [vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc)];
            let (even, odd) = (
                vmovl_s8(vget_low_s8(vuzp1q_s8(sc, sc))),
                vmovl_s8(vget_low_s8(vuzp2q_s8(sc, sc))),
            );
            let scales = [
                [vmovl_s16(vget_low_s16(even)), vmovl_s16(vget_low_s16(odd))],
                [vmovl_high_s16(even), vmovl_high_s16(odd)],
            ];
            let mut isum = [vdupq_n_s32(0); R];
            for (h, scales) in scales.iter().enumerate() {
                let (ql, qh) = (p.add(64 * h), p.add(128 + 32 * h));
                let at = b * QK_K + 128 * h;
                // Weights 0..16 of each quarter: groups 8h + 0, 2, 4, 6;
                // weights 16..32: groups 8h + 1, 3, 5, 7.
                let even_groups = q6k_sixteen::<D, R>(ql, qh, rows, at);
                let odd_groups = q6k_sixteen::<D, R>(ql.add(16), qh.add(16), rows, at + 16);
                for r in 0..R {
                    isum[r] = vmlaq_s32(isum[r], even_groups[r], scales[0]);
                    isum[r] = vmlaq_s32(isum[r], odd_groups[r], scales[1]);
                }
            }
            let d = f16x4_to_f32(u64::from(u16::from_le_bytes([block[208], block[209]])));
            let d = vgetq_lane_f32::<0>(d);
            for r in 0..R {
                // The weights were used without their offset of 32:
                // subtract 32 * Σ_g sc_g Σ a over the block's groups.
                let sums = rows[r].sums16.as_ptr().add(16 * b);
                let (s0, s1) = (vld1q_s16(sums), vld1q_s16(sums.add(8)));
                let mut offset = vmull_s16(vget_low_s16(natural[0]), vget_low_s16(s0));
                offset = vmlal_high_s16(offset, natural[0], s0);
                offset = vmlal_s16(offset, vget_low_s16(natural[1]), vget_low_s16(s1));
                offset = vmlal_high_s16(offset, natural[1], s1);
                let isum = vmlsq_s32(isum[r], offset, thirty_two);
                let da = *rows[r].scales.get_unchecked(b);
                acc[r] = vfmaq_n_f32(acc[r], vcvtq_f32_s32(isum), d * da);
            }
        }
        std::array::from_fn(|r| vaddvq_f32(acc[r]))
    }
}

/// Sixteen 6-bit weights `l..l + 16` of each quarter of a Q6_K half block
/// (32 weights apart), from `ql` (the half's low bits + l; quarters 0 and 2
/// in the low and high nibbles of its first 32 bytes, 1 and 3 of the next)
/// and `qh` (its high bits + l, two bits per quarter), without their
/// offset of 32. Shift-and-insert puts each high pair beside its nibble.
#[inline(always)]
pub(super) unsafe fn q6k_quarters(ql: *const u8, qh: *const u8) -> [uint8x16_t; 4] {
    let (ql_a, ql_b, high) = (vld1q_u8(ql), vld1q_u8(ql.add(32)), vld1q_u8(qh));
    let (two_bits, top_pair) = (vdupq_n_u8(0x03), vdupq_n_u8(0x30));
    let shifted = vshrq_n_u8::<2>(high);
    [
        vsliq_n_u8::<4>(ql_a, vandq_u8(high, two_bits)),
        vsliq_n_u8::<4>(ql_b, vandq_u8(shifted, two_bits)),
        vsriq_n_u8::<4>(vandq_u8(high, top_pair), ql_a),
        vsriq_n_u8::<4>(vandq_u8(shifted, top_pair), ql_b),
    ]
}

/// Sixteen weights `l..l + 16` of each quarter of a Q6_K half block (`ql`
/// at the half's low bits + l, `qh` at its high bits + l), as 6-bit values
/// without their offset, against values `at + 32i..` of every row: per row
/// the four quarters' sums (groups 32 weights apart) in its four lanes.
#[inline(always)]
unsafe fn q6k_sixteen<D: Int8Dot, const R: usize>(
    ql: *const u8,
    qh: *const u8,
    rows: &[Row; R],
    at: usize,
) -> [int32x4_t; R] {
    let q = q6k_quarters(ql, qh).map(|q| vreinterpretq_s8_u8(q));
    std::array::from_fn(|r| {
        let a = rows[r].values.as_ptr().add(at);
        let zero = vdupq_n_s32(0);
        let s = [0, 1, 2, 3].map(|i| D::dot(zero, q[i], vld1q_s8(a.add(32 * i))));
        pair_sums(pair_sums(s[0], s[1]), pair_sums(s[2], s[3]))
    })
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
