//! AArch64 kernels (phones): int8 products straight from the mapped GGUF
//! blocks for Q4_K, Q6_K, Q8_0 and Q4_0, on three tiers picked at run time
//! by [`super::tier`]:
//! - [`Tier::Neon`] (ARMv8.0, e.g. Cortex-A53): widening multiplies;
//! - [`Tier::Dotprod`] (ARMv8.2+): SDOT, four activation rows at a time
//!   ([`rows`]);
//! - [`Tier::I8mm`] (ARMv8.6+): SDOT for up to four rows (decode), SMMLA
//!   for more (prefill, [`mmla`]).
//!
//! The library is built for the ARMv8.0 baseline; the dotprod and i8mm code
//! is compiled per function (`#[target_feature]`) and only called on CPUs
//! that report the feature. The f32 dot product and the f16 widening are
//! plain NEON.

mod int8;
mod mmla;
mod quantize;
mod rows;

use std::arch::aarch64::*;

use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use self::int8::{Int8Dot, Sdot, Widening};
use self::quantize::{PairRows, QuantRows, Row, Sums};
use self::rows::RowKernel;
use super::dense::{OutColumns, FEW_ROWS};
use super::Tier;
use crate::error::{Error, Result};

/// Weight rows per parallel task of the row kernels.
const TASK_ROWS: usize = 64;
/// Activation rows per row-kernel tile.
const TILE_ROWS: usize = 4;

/// [`super::dot`] on NEON: four 4-lane accumulators.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let body = n - n % 16;
    // SAFETY: NEON is the AArch64 baseline; every load is below `body` <= n.
    let mut sum = unsafe {
        let mut acc = [vdupq_n_f32(0.0); 4];
        for i in (0..body).step_by(16) {
            for (j, acc) in acc.iter_mut().enumerate() {
                let (x, y) = (
                    vld1q_f32(a.as_ptr().add(i + 4 * j)),
                    vld1q_f32(b.as_ptr().add(i + 4 * j)),
                );
                *acc = vfmaq_f32(*acc, x, y);
            }
        }
        vaddvq_f32(vaddq_f32(
            vaddq_f32(acc[0], acc[1]),
            vaddq_f32(acc[2], acc[3]),
        ))
    };
    for i in body..n {
        sum += a[i] * b[i];
    }
    sum
}

/// [`super::dot4`] on NEON: sixteen values of `x` per step (fewer
/// pointer updates per multiply), two accumulators per row.
pub fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    const STEP: usize = 16;
    let n = x.len();
    let w = w.map(|row| &row[..n]);
    let body = n - n % STEP;
    // SAFETY: NEON is the AArch64 baseline; every load is below `body` <= n,
    // and every row holds `n` values.
    let mut sums = unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
        for i in (0..body).step_by(STEP) {
            let xs: [float32x4_t; 4] =
                std::array::from_fn(|q| vld1q_f32(x.as_ptr().add(i + 4 * q)));
            for (acc, row) in acc.iter_mut().zip(w) {
                for (q, x) in xs.iter().enumerate() {
                    let v = vld1q_f32(row.as_ptr().add(i + 4 * q));
                    acc[q % 2] = vfmaq_f32(acc[q % 2], *x, v);
                }
            }
        }
        acc.map(|a| vaddvq_f32(vaddq_f32(a[0], a[1])))
    };
    for (sum, row) in sums.iter_mut().zip(w) {
        *sum += (body..n).map(|i| x[i] * row[i]).sum::<f32>();
    }
    sums
}

/// Longest row [`narrow_matvec`] keeps in registers (eight vectors).
const NARROW_MAX: usize = 32;

/// [`super::narrow_matvec`] on NEON for rows of a multiple of 4 values up
/// to [`NARROW_MAX`]: `x` stays in registers, four rows are reduced into one
/// vector with pairwise adds and stored at once. Returns false (writing
/// nothing) for other widths.
pub fn narrow_matvec(x: &[f32], w: &[f32], out: &mut [f32]) -> bool {
    let k = x.len();
    if k == 0 || !k.is_multiple_of(4) || k > NARROW_MAX || w.len() < out.len() * k {
        return false;
    }
    let quads = k / 4;
    // SAFETY: NEON is the AArch64 baseline; `x` holds `quads` vectors, `w`
    // holds `out.len()` rows of `k` values (checked above), and each store
    // writes four values below `out.len()`.
    unsafe {
        let mut xs = [vdupq_n_f32(0.0); NARROW_MAX / 4];
        for (q, v) in xs.iter_mut().enumerate().take(quads) {
            *v = vld1q_f32(x.as_ptr().add(4 * q));
        }
        let row_sum = |row: *const f32| {
            let mut acc = vmulq_f32(xs[0], vld1q_f32(row));
            for (q, v) in xs.iter().enumerate().take(quads).skip(1) {
                acc = vfmaq_f32(acc, *v, vld1q_f32(row.add(4 * q)));
            }
            acc
        };
        let body = out.len() - out.len() % 4;
        for j in (0..body).step_by(4) {
            let row = w.as_ptr().add(j * k);
            let [a, b, c, d] = [0, 1, 2, 3].map(|r| row_sum(row.add(r * k)));
            let sums = vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d));
            vst1q_f32(out.as_mut_ptr().add(j), sums);
        }
        for (j, o) in out.iter_mut().enumerate().skip(body) {
            *o = vaddvq_f32(row_sum(w.as_ptr().add(j * k)));
        }
    }
    true
}

/// [`super::widen_f16_rows`] for `head_dim` a multiple of 4: `fcvtl`.
pub fn widen_f16_rows(
    src: &[half::f16],
    head: usize,
    heads: usize,
    head_dim: usize,
    dst: &mut [f32],
) {
    for (t, row) in dst.chunks_exact_mut(head_dim).enumerate() {
        let start = (t * heads + head) * head_dim;
        let vector = &src[start..start + head_dim];
        let mut i = 0;
        while i + 8 <= head_dim {
            // SAFETY: 8 values at `i` in both (checked by the loop bound).
            unsafe {
                int8::widen8(
                    vector.as_ptr().add(i) as *const u16,
                    row.as_mut_ptr().add(i),
                )
            };
            i += 8;
        }
        if i < head_dim {
            // Four left (`head_dim` is a multiple of 4).
            let bits = u64::from(vector[i].to_bits())
                | u64::from(vector[i + 1].to_bits()) << 16
                | u64::from(vector[i + 2].to_bits()) << 32
                | u64::from(vector[i + 3].to_bits()) << 48;
            // SAFETY: NEON; 4 floats at `i`.
            unsafe { vst1q_f32(row.as_mut_ptr().add(i), int8::f16x4_to_f32(bits)) };
        }
    }
}

/// The weight types with kernels here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Q4K,
    Q6K,
    Q8_0,
    Q4_0,
}

impl Kind {
    fn of(dtype: GgmlDType) -> Option<Kind> {
        Some(match dtype {
            GgmlDType::Q4K => Kind::Q4K,
            GgmlDType::Q6K => Kind::Q6K,
            GgmlDType::Q8_0 => Kind::Q8_0,
            GgmlDType::Q4_0 => Kind::Q4_0,
            _ => return None,
        })
    }

    /// Activation values per scale.
    fn block(self) -> usize {
        match self {
            Kind::Q4K | Kind::Q6K => 256,
            Kind::Q8_0 | Kind::Q4_0 => 32,
        }
    }
}

/// The input rows of one product, quantized for the kernels of `tier`.
pub struct Activations {
    kind: Kind,
    tier: Tier,
    rows: QuantRows,
    /// For SMMLA (more than [`FEW_ROWS`] rows on the i8mm tier).
    pairs: Option<PairRows>,
}

impl Activations {
    /// `x` (`m` rows of `cols`) for a product with a `dtype` matrix on
    /// `tier`; None when there is no kernel for it here (the type, or a row
    /// length that is not a whole number of blocks).
    pub fn new(tier: Tier, dtype: GgmlDType, x: &[f32], m: usize, cols: usize) -> Option<Self> {
        let kind = Kind::of(dtype)?;
        if !matches!(tier, Tier::Neon | Tier::Dotprod | Tier::I8mm)
            || m == 0
            || cols == 0
            || !cols.is_multiple_of(kind.block())
            || x.len() != m * cols
        {
            return None;
        }
        // SMMLA for more than a few rows on the i8mm tier; the row kernels
        // otherwise.
        let smmla = tier == Tier::I8mm && m > FEW_ROWS;
        let sums = match kind {
            Kind::Q4K => Sums::Scaled32,
            Kind::Q6K if !smmla => Sums::Int16,
            _ => Sums::None,
        };
        let rows = QuantRows::new(x, m, cols, kind.block(), sums);
        let pairs = smmla.then(|| PairRows::new(&rows));
        Some(Activations {
            kind,
            tier,
            rows,
            pairs,
        })
    }

    /// `x @ W^T` into `out` (`[m, n]`), `weights` being `n` rows of blocks.
    pub fn matmul_t(&self, weights: &[u8], n: usize, out: &mut [f32]) -> Result<()> {
        let block_bytes = match self.kind {
            Kind::Q4K => rows::Q4K::BLOCK_BYTES,
            Kind::Q6K => rows::Q6K::BLOCK_BYTES,
            Kind::Q8_0 => rows::Q8_0::BLOCK_BYTES,
            Kind::Q4_0 => rows::Q4_0::BLOCK_BYTES,
        };
        let (m, k) = (self.rows.rows, self.rows.cols);
        if weights.len() != n * (k / self.kind.block()) * block_bytes || out.len() != m * n {
            return Err(Error::InvalidArgument(format!(
                "{:?} product: {} weight bytes and {} outputs for {m} x {k} times {n} rows",
                self.kind,
                weights.len(),
                out.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        match (self.kind, &self.pairs) {
            (Kind::Q4K, Some(p)) => mmla::matmul_t::<rows::Q4K>(p, m, weights, n, out),
            (Kind::Q6K, Some(p)) => mmla::matmul_t::<rows::Q6K>(p, m, weights, n, out),
            (Kind::Q8_0, Some(p)) => mmla::matmul_t::<rows::Q8_0>(p, m, weights, n, out),
            (Kind::Q4_0, Some(p)) => mmla::matmul_t::<rows::Q4_0>(p, m, weights, n, out),
            (Kind::Q4K, None) => self.rows_product::<rows::Q4K>(weights, n, out),
            (Kind::Q6K, None) => self.rows_product::<rows::Q6K>(weights, n, out),
            (Kind::Q8_0, None) => self.rows_product::<rows::Q8_0>(weights, n, out),
            (Kind::Q4_0, None) => self.rows_product::<rows::Q4_0>(weights, n, out),
        }
        Ok(())
    }

    /// The row kernels, [`TILE_ROWS`] activation rows at a time.
    fn rows_product<K: RowKernel>(&self, weights: &[u8], n: usize, out: &mut [f32]) {
        let row_bytes = weights.len() / n;
        let out = OutColumns::new(out);
        weights
            .par_chunks(TASK_ROWS * row_bytes)
            .enumerate()
            .for_each(|(task, chunk)| {
                let task = (chunk, row_bytes, task * TASK_ROWS, out, n);
                // SAFETY: the tier was detected (or chosen below it); the
                // sizes were checked by `matmul_t`; each task writes only its
                // own columns of `out`.
                unsafe {
                    match self.tier {
                        Tier::Neon => rows_task::<K, Widening>(&self.rows, task),
                        _ => rows_task_dotprod::<K>(&self.rows, task),
                    }
                }
            });
    }
}

/// A task of the row kernels: its weight rows, their byte length, the first
/// one's column, the output and its row length.
type RowsTask<'a> = (&'a [u8], usize, usize, OutColumns, usize);

#[target_feature(enable = "dotprod")]
unsafe fn rows_task_dotprod<K: RowKernel>(x: &QuantRows, task: RowsTask) {
    rows_task::<K, Sdot>(x, task)
}

#[inline(always)]
unsafe fn rows_task<K: RowKernel, D: Int8Dot>(x: &QuantRows, task: RowsTask) {
    for r0 in (0..x.rows).step_by(TILE_ROWS) {
        match x.rows - r0 {
            1 => tile::<K, D, 1>(x, r0, task),
            2 => tile::<K, D, 2>(x, r0, task),
            3 => tile::<K, D, 3>(x, r0, task),
            _ => tile::<K, D, TILE_ROWS>(x, r0, task),
        }
    }
}

#[inline(always)]
unsafe fn tile<K: RowKernel, D: Int8Dot, const R: usize>(
    x: &QuantRows,
    r0: usize,
    (chunk, row_bytes, first, out, n): RowsTask,
) {
    let rows: [Row; R] = std::array::from_fn(|i| x.row(r0 + i));
    for (c, w) in chunk.chunks_exact(row_bytes).enumerate() {
        let dots = K::dot::<D, R>(w, &rows);
        for (r, value) in dots.into_iter().enumerate() {
            *out.at((r0 + r) * n + first + c) = value;
        }
    }
}

#[cfg(test)]
mod tests;
