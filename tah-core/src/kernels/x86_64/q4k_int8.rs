//! `x @ W^T` for Q4_K weights with 8-bit activations on AVX-512 (BW + VNNI).
//!
//! Each activation row is quantized once per product to int8 with one scale
//! per 256 values (like ggml's Q8_K). A Q4_K block's dot product with it is
//! then integer arithmetic on the mapped bytes:
//!
//! ```text
//! w·a = da * (d * Σ_j sc_j * Σ_i q_ji * a_ji  -  dmin * Σ_j m_j * Σ_i a_ji)
//! ```
//!
//! `vpdpbusd` multiplies the unsigned 4-bit weights by the signed 8-bit
//! activations four at a time, `vpackssdw` packs two such results to i16
//! (they fit: |sum| <= 4 * 15 * 127) and `vpdpwssd` weights each 32-value
//! group's sums by its 6-bit scale, so 256 weights cost 4 + 2 multiplies
//! and 2 packs per activation row (measured ~2% faster than
//! `vpmaddubsw` + `vpdpwssd`, 4 + 4), and the weight nibbles and scales are
//! unpacked once for a tile of rows.
//! The minimum term is one f32 FMA of 8 lanes per block and row: the
//! activation side (`da * Σ_i a_ji`) is computed with the quantization, the
//! weight side (`dmin * m_j`) once per block for the tile.
//! Decode reads each weight byte once at close to memory bandwidth; prefill
//! runs ~an order of magnitude fewer instructions than dequantizing to f32.

use rayon::prelude::*;

use crate::kernels::dense::OutColumns;
use crate::kernels::dequant::{q4k_scales_mins, Q4K_BYTES, QK_K};
use crate::kernels::{tier, Tier};

/// Activation rows computed together against one weight row (8 measured
/// ~10-15% faster than 4 at 16 and 64 rows: the nibbles and scales are
/// unpacked once for more rows).
const TILE_ROWS: usize = 8;
/// Weight rows per parallel task (and per cache block).
const WEIGHT_ROWS_PER_TASK: usize = 64;

/// Whether this process runs [`matmul_t`] (its kernel tier has AVX-512 VNNI).
fn available() -> bool {
    tier() >= Tier::Avx512Vnni
}

/// Whether rows of `cols` values suit the kernel (whole 256-value blocks).
pub fn fits(cols: usize) -> bool {
    cols > 0 && cols.is_multiple_of(QK_K)
}

/// Activation rows quantized to int8, one scale per 256 values.
///
/// Within each 256-value block the eight 32-value groups are stored in the
/// order the kernel reads a Q4_K block's nibbles: low nibbles of bytes
/// 0..64 are groups 0 and 2, high nibbles groups 1 and 3 (then 4..7).
pub struct QuantizedRows {
    cols: usize,
    values: Vec<i8>,
    /// `da` per 256-value block.
    scales: Vec<f32>,
    /// `da * Σ a` over each 32-value group, in the natural group order: the
    /// activation side of the Q4_K minimum term.
    group_sums: Vec<f32>,
}

/// Stored position of natural group `j` inside a 256-value block.
const STORED_GROUP: [usize; 8] = [0, 2, 1, 3, 4, 6, 5, 7];

impl QuantizedRows {
    /// Quantizes `rows` rows of `cols` values (`cols` a multiple of 256).
    /// NaN becomes 0, as in every 8-bit activation path.
    pub fn new(x: &[f32], cols: usize) -> Self {
        let blocks = x.len() / QK_K;
        let mut values = vec![0i8; x.len()];
        let mut scales = Vec::with_capacity(blocks);
        let mut group_sums = Vec::with_capacity(blocks * 8);
        for (src, dst) in x.chunks_exact(QK_K).zip(values.chunks_exact_mut(QK_K)) {
            // Sixteen lanes so the maximum vectorizes (a single running
            // maximum is a serial chain).
            let mut lanes = [0f32; 16];
            for chunk in src.chunks_exact(16) {
                for (lane, v) in lanes.iter_mut().zip(chunk) {
                    *lane = lane.max(v.abs());
                }
            }
            let amax = lanes.iter().fold(0f32, |m, &v| m.max(v));
            let scale = if amax > 0.0 && amax.is_finite() {
                amax / 127.0
            } else {
                0.0
            };
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            scales.push(scale);
            for (j, group) in src.chunks_exact(32).enumerate() {
                let out = &mut dst[32 * STORED_GROUP[j]..32 * STORED_GROUP[j] + 32];
                let mut sum = 0i16;
                for (o, v) in out.iter_mut().zip(group) {
                    // Adding and removing 1.5 * 2^23 rounds |x| <= 127 to the
                    // nearest integer without a libm call; NaN becomes 0.
                    // A saturating `as` compiles to a scalar compare-and-move
                    // per value, so the range is made explicit instead.
                    const ROUND: f32 = 12_582_912.0;
                    let r = (v * inverse + ROUND) - ROUND;
                    let r = if r.is_nan() {
                        0.0
                    } else {
                        r.clamp(-127.0, 127.0)
                    };
                    // SAFETY: `r` is finite and within i32's range.
                    *o = unsafe { r.to_int_unchecked::<i32>() } as i8;
                    sum += *o as i16;
                }
                group_sums.push(sum as f32 * scale);
            }
        }
        QuantizedRows {
            cols,
            values,
            scales,
            group_sums,
        }
    }

    fn rows(&self) -> usize {
        self.values.len() / self.cols.max(1)
    }

    fn row(&self, r: usize) -> ActivationRow<'_> {
        let blocks = self.cols / QK_K;
        ActivationRow {
            values: &self.values[r * self.cols..(r + 1) * self.cols],
            scales: &self.scales[r * blocks..(r + 1) * blocks],
            group_sums: &self.group_sums[r * blocks * 8..(r + 1) * blocks * 8],
        }
    }
}

#[derive(Clone, Copy)]
struct ActivationRow<'a> {
    values: &'a [i8],
    scales: &'a [f32],
    group_sums: &'a [f32],
}

/// `x @ W^T` into `out` (`[x.rows(), n]`), `weights` being `n` Q4_K rows of
/// `x.cols` values. Returns false (writing nothing) if the CPU lacks the
/// instructions or the sizes disagree.
pub fn matmul_t(x: &QuantizedRows, weights: &[u8], n: usize, out: &mut [f32]) -> bool {
    let m = x.rows();
    let row_bytes = x.cols / QK_K * Q4K_BYTES;
    if !available()
        || row_bytes == 0
        || !x.cols.is_multiple_of(QK_K)
        || weights.len() != n * row_bytes
        || out.len() != m * n
        || m == 0
    {
        return false;
    }
    // Tasks own column blocks of the output (`WEIGHT_ROWS_PER_TASK` weight
    // rows each) and write them in place.
    let out = OutColumns::new(out);
    weights
        .par_chunks(WEIGHT_ROWS_PER_TASK * row_bytes)
        .enumerate()
        .for_each(|(task, panel)| {
            let first_col = task * WEIGHT_ROWS_PER_TASK;
            for first in (0..m).step_by(TILE_ROWS) {
                let tile = TILE_ROWS.min(m - first);
                // SAFETY: the panel's columns `first_col..first_col + panel
                // rows` are within `n` and written by this task alone; the
                // tile's rows are within `m`; `out` holds `m * n` values.
                unsafe {
                    let at = out.at(first * n + first_col);
                    dot_panel(x, first, tile, panel, row_bytes, at, n);
                }
            }
        });
    true
}

/// Rows `first..first + tile` of `x` dotted with every Q4_K weight row of
/// `panel`, into `out` (row `r`, weight row `c` at `out + r * stride + c`).
///
/// # Safety
/// `out` must be valid for those writes, and no one else may access them.
unsafe fn dot_panel(
    x: &QuantizedRows,
    first: usize,
    tile: usize,
    panel: &[u8],
    row_bytes: usize,
    out: *mut f32,
    stride: usize,
) {
    let rows: [ActivationRow; TILE_ROWS] = std::array::from_fn(|r| x.row(first + r.min(tile - 1)));
    {
        // SAFETY: `matmul_t` checked `available()`; the slices hold whole
        // blocks (checked sizes), which is all the kernel reads; the
        // caller vouches for `out`.
        unsafe {
            let out = (out, stride);
            match tile {
                1 => avx512::dot_panel::<1>(panel, row_bytes, &rows, out),
                2 => avx512::dot_panel::<2>(panel, row_bytes, &rows, out),
                3 => avx512::dot_panel::<3>(panel, row_bytes, &rows, out),
                4 => avx512::dot_panel::<4>(panel, row_bytes, &rows, out),
                5 => avx512::dot_panel::<5>(panel, row_bytes, &rows, out),
                6 => avx512::dot_panel::<6>(panel, row_bytes, &rows, out),
                7 => avx512::dot_panel::<7>(panel, row_bytes, &rows, out),
                _ => avx512::dot_panel::<8>(panel, row_bytes, &rows, out),
            }
        }
    }
}

mod avx512 {
    use std::arch::x86_64::*;

    use super::{q4k_scales_mins, ActivationRow, Q4K_BYTES, QK_K, TILE_ROWS};

    /// How far ahead of the block being read the weight bytes are
    /// prefetched (1, 2, 4 and 8 KiB measured for decode here: 1 KiB clearly
    /// slower, the others within run-to-run noise, 8 KiB the best median).
    const PREFETCH_AHEAD: usize = 8192;

    /// `vpermw` indices matching the i16 lanes of `vpackssdw(x, y)`, where
    /// `x`'s i32 lanes 0-7 hold sums of group `xa` and 8-15 of `xb` (the
    /// same for `y`): per 128-bit chunk `c`, four lanes of `x` then four of
    /// `y`, from the first groups in chunks 0-1 and the second in 2-3.
    const fn packed_index(xa: i16, xb: i16, ya: i16, yb: i16) -> [i16; 32] {
        let mut idx = [0; 32];
        let mut lane = 0;
        while lane < 32 {
            let (chunk, within) = (lane / 8, lane % 8);
            idx[lane] = match (within < 4, chunk < 2) {
                (true, true) => xa,
                (true, false) => xb,
                (false, true) => ya,
                (false, false) => yb,
            };
            lane += 1;
        }
        idx
    }
    /// Per 64 bytes of nibbles (low nibbles: groups (0, 2) or (4, 6); high:
    /// (1, 3) or (5, 7)), the scale index of the packed pair.
    const PACKED: [[i16; 32]; 2] = [packed_index(0, 2, 1, 3), packed_index(4, 6, 5, 7)];

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
    pub(super) unsafe fn dot_panel<const R: usize>(
        panel: &[u8],
        row_bytes: usize,
        rows: &[ActivationRow<'_>; TILE_ROWS],
        (out, stride): (*mut f32, usize),
    ) {
        let low_mask = _mm512_set1_epi8(0x0F);
        let load = |idx: &[i16; 32]| _mm512_loadu_si512(idx.as_ptr() as *const _);
        let packed_index = [load(&PACKED[0]), load(&PACKED[1])];
        for (c, w) in panel.chunks_exact(row_bytes).enumerate() {
            let dots = dot_row::<R>(w, rows, low_mask, &packed_index);
            for (r, dot) in dots.iter().enumerate() {
                *out.add(r * stride + c) = *dot;
            }
        }
    }

    #[inline(always)]
    unsafe fn dot_row<const R: usize>(
        w: &[u8],
        rows: &[ActivationRow<'_>; TILE_ROWS],
        low_mask: __m512i,
        packed_index: &[__m512i; 2],
    ) -> [f32; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        let mut min_acc = [_mm256_setzero_ps(); R];
        for (b, block) in w.chunks_exact(Q4K_BYTES).enumerate() {
            // A hint, never a fault, so it may point past the mapping.
            for line in [0, 64, 128] {
                let ahead = block.as_ptr().wrapping_add(PREFETCH_AHEAD + line);
                _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            }
            // d and dmin, widened together.
            let d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes(
                block[..4].try_into().expect("4 bytes"),
            )));
            let d = _mm_cvtss_f32(d_dmin);
            let (scales, mins) = q4k_scales_mins(block[4..16].try_into().expect("12 bytes"));
            let packed = _mm_set_epi64x(mins as i64, scales as i64);
            let scales16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(packed));
            // The weight side of the minimum term: dmin * m_j, as f32.
            let mins32 = _mm256_cvtepu8_epi32(_mm_srli_si128(packed, 8));
            let weighted_mins = _mm256_mul_ps(
                _mm256_cvtepi32_ps(mins32),
                _mm256_set1_ps(_mm_cvtss_f32(_mm_movehdup_ps(d_dmin))),
            );
            // Nibbles and their groups' scales, shared by the tile's rows.
            let mut nibbles = [[_mm512_setzero_si512(); 2]; 2];
            let mut group_scales = [_mm512_setzero_si512(); 2];
            for p in 0..2 {
                let q = _mm512_loadu_si512(block.as_ptr().add(16 + 64 * p) as *const _);
                nibbles[p][0] = _mm512_and_si512(q, low_mask);
                nibbles[p][1] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low_mask);
                group_scales[p] = _mm512_permutexvar_epi16(packed_index[p], scales16);
            }
            for r in 0..R {
                let a = rows[r].values.as_ptr().add(b * QK_K);
                let mut sum = _mm512_setzero_si512();
                for p in 0..2 {
                    // Sums of 4 products per i32 lane (|sum| <= 4 * 15 * 127,
                    // so packing to i16 never saturates), then each group's
                    // scale applied to pairs of lanes.
                    let [low, high] = [0, 1].map(|h| {
                        let av = _mm512_loadu_si512(a.add(128 * p + 64 * h) as *const _);
                        dpbusd(_mm512_setzero_si512(), nibbles[p][h], av)
                    });
                    let packed = _mm512_packs_epi32(low, high);
                    sum = dpwssd(sum, packed, group_scales[p]);
                }
                let scale = _mm512_set1_ps(d * *rows[r].scales.get_unchecked(b));
                acc[r] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sum), acc[r]);
                let group_sums = _mm256_loadu_ps(rows[r].group_sums.as_ptr().add(8 * b));
                min_acc[r] = _mm256_fmadd_ps(weighted_mins, group_sums, min_acc[r]);
            }
        }
        let mut dots = [0f32; R];
        for r in 0..R {
            let m = min_acc[r];
            let m = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
            dots[r] = _mm512_reduce_add_ps(acc[r]) - _mm_cvtss_f32(m);
        }
        dots
    }

    /// `vpdpbusd` itself (unsigned bytes of `a` times signed bytes of `b`,
    /// four per i32 lane), kept as one instruction like [`dpwssd`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dpbusd(sum: __m512i, a: __m512i, b: __m512i) -> __m512i {
        let mut sum = sum;
        std::arch::asm!(
            "vpdpbusd {sum}, {a}, {b}",
            sum = inout(zmm_reg) sum,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack),
        );
        sum
    }

    /// `vpdpwssd` itself: LLVM's generic tuning splits the intrinsic into
    /// `vpmaddwd` + `vpaddd`, one more vector instruction per 32 weights.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dpwssd(sum: __m512i, a: __m512i, b: __m512i) -> __m512i {
        let mut sum = sum;
        std::arch::asm!(
            "vpdpwssd {sum}, {a}, {b}",
            sum = inout(zmm_reg) sum,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack),
        );
        sum
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{k_quants::BlockQ4K, GgmlType};

    use super::*;
    use crate::kernels::test_values as values;

    /// Q4_K bytes of `w` (`n` rows of `k`).
    fn q4k_bytes(w: &[f32]) -> Vec<u8> {
        let mut blocks = vec![BlockQ4K::zeros(); w.len() / QK_K];
        BlockQ4K::from_float(w, &mut blocks);
        let ptr = blocks.as_ptr() as *const u8;
        // SAFETY: BlockQ4K is plain old data of Q4K_BYTES bytes.
        unsafe { std::slice::from_raw_parts(ptr, blocks.len() * Q4K_BYTES) }.to_vec()
    }

    #[test]
    fn matches_dequantized_weights_times_quantized_activations() {
        if !available() {
            eprintln!("skipped: no AVX-512 VNNI on this CPU");
            return;
        }
        let (k, n) = (512, 70);
        let w = q4k_bytes(&values(n * k, 1));
        for m in [1, 3, 4, 9] {
            let x = values(m * k, 2 + m as u32);
            let q = QuantizedRows::new(&x, k);
            let mut out = vec![0f32; m * n];
            assert!(matmul_t(&q, &w, n, &mut out));
            // Reference: dequantized weights times the dequantized int8 rows.
            let mut wf = vec![0f32; n * k];
            for (src, dst) in w
                .chunks_exact(k / QK_K * Q4K_BYTES)
                .zip(wf.chunks_exact_mut(k))
            {
                assert!(crate::kernels::dequant::dequantize_row(
                    candle_core::quantized::GgmlDType::Q4K,
                    src,
                    dst
                ));
            }
            for r in 0..m {
                let row = q.row(r);
                let mut a = vec![0f32; k];
                for (b, block) in a.chunks_exact_mut(QK_K).enumerate() {
                    for (j, group) in block.chunks_exact_mut(32).enumerate() {
                        let stored = &row.values[b * QK_K + 32 * STORED_GROUP[j]..][..32];
                        for (o, v) in group.iter_mut().zip(stored) {
                            *o = *v as f32 * row.scales[b];
                        }
                    }
                }
                // The int8 rows are the activations to within half a step.
                for (b, (a, x)) in a
                    .chunks_exact(QK_K)
                    .zip(x[r * k..].chunks_exact(QK_K))
                    .enumerate()
                {
                    for (a, x) in a.iter().zip(x) {
                        assert!((a - x).abs() <= row.scales[b] * 0.5 + 1e-6, "{a} vs {x}");
                    }
                }
                for c in 0..n {
                    let expect: f32 = a
                        .iter()
                        .zip(&wf[c * k..(c + 1) * k])
                        .map(|(a, w)| a * w)
                        .sum();
                    let got = out[r * n + c];
                    assert!(
                        (got - expect).abs() <= 1e-4 * (1.0 + expect.abs()),
                        "m {m} row {r} col {c}: {got} vs {expect}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_mismatched_sizes() {
        let q = QuantizedRows::new(&values(256, 3), 256);
        let w = q4k_bytes(&values(2 * 256, 4));
        let mut out = vec![0f32; 3];
        assert!(!matmul_t(&q, &w, 3, &mut out));
        assert!(!matmul_t(&q, &w[..100], 2, &mut out[..2]));
    }
}
