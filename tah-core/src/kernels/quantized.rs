//! `x @ W^T` for a weight matrix stored as GGUF blocks (quantized, or
//! f32/f16/bf16), read where it lies (a memory-mapped file): which kernel
//! runs which product.
//!
//! The input is prepared once per product ([`Product::new`]: quantized to
//! int8, rounded to bf16, or left as f32, as the chosen kernel wants), then
//! any range of weight rows can be multiplied by it ([`Product::columns`]),
//! so an LM head taken a panel at a time prepares its input once.
//!
//! - x86-64: many rows of a 4- to 6-bit matrix on AMX tiles where the CPU
//!   and OS have them; Q4_K on the AVX-512 VNNI int8 kernel.
//! - AArch64: Q4_K, Q6_K, Q8_0 and Q4_0 on int8 kernels straight from the
//!   blocks (SMMLA, SDOT or plain NEON, by tier).
//! - Everything else: a few rows (decode) through candle's 8-bit dot
//!   products, or dot products with one widened row at a time for
//!   f32/f16/bf16; more rows dequantize a cache-sized panel of weight rows
//!   at a time and run an f32 GEMM.

use candle_core::quantized::GgmlDType;

use super::dense::{gemm_into, FEW_ROWS};
use super::{portable, Tier};
use crate::error::{Error, Result};

#[cfg(target_arch = "aarch64")]
use super::aarch64;
#[cfg(target_arch = "x86_64")]
use super::x86_64::{amx, q4k_int8};

/// Floats in one dequantized panel of weight rows (1 MiB): big enough for
/// an efficient GEMM, small enough to stay in the L2 cache (a 151936-row LM
/// head is never widened as a whole).
const PANEL_FLOATS: usize = 1 << 18;
/// From this many input rows, Q4_K matrices use AMX where the CPU has it:
/// below, dequantizing every weight row costs more than the tiles save
/// against the int8 kernel (1 thread, 3072 x 1024, best of 10: 16 rows 1.88
/// vs 0.98 ms, 24: 2.38 vs 1.74, 32: 2.17 vs 2.33, 64: 2.78 vs 4.07). Other
/// 4- to 6-bit types use it from `FEW_ROWS + 1` rows (the Q6_K LM head of
/// a 16-token prefill in `decider` mode: time to first token 520-583 ms at
/// a 32-row threshold, 259-298 ms at 5).
#[cfg(target_arch = "x86_64")]
const Q4K_AMX_MIN_ROWS: usize = 32;

/// A `[rows, cols]` weight matrix as GGUF blocks of `dtype`, row after row.
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrix<'a> {
    pub dtype: GgmlDType,
    pub bytes: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

/// The input of one product, prepared for the kernel that runs it.
enum Prepared {
    #[cfg(target_arch = "x86_64")]
    Amx(amx::Bf16Rows),
    #[cfg(target_arch = "x86_64")]
    Q4kInt8(q4k_int8::QuantizedRows),
    #[cfg(target_arch = "aarch64")]
    Arm(Box<aarch64::Activations>),
    /// The f32 rows themselves (the portable paths).
    Plain,
}

/// `x @ W^T`, with `x` prepared once for any number of weight-row ranges.
pub struct Product<'a> {
    matrix: QuantMatrix<'a>,
    x: &'a [f32],
    m: usize,
    prepared: Prepared,
}

impl<'a> QuantMatrix<'a> {
    /// Bytes of one weight row.
    pub fn row_bytes(&self) -> usize {
        self.bytes.len() / self.rows.max(1)
    }

    /// Bytes of weight rows `first..first + n`.
    fn row_range(&self, first: usize, n: usize) -> Result<&'a [u8]> {
        let row_bytes = self.row_bytes();
        self.bytes
            .get(first * row_bytes..(first + n) * row_bytes)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "weight rows {first}..{} are outside the {} x {} matrix",
                    first + n,
                    self.rows,
                    self.cols
                ))
            })
    }

    /// Row `j` dequantized into `out` (`cols` floats).
    pub fn dequantize_row_into(&self, j: usize, out: &mut [f32]) -> Result<()> {
        let src = self.row_range(j, 1)?;
        if super::dequantize_row(self.dtype, src, out) {
            return Ok(());
        }
        portable::dequantize(self.dtype, src, out)
    }

    /// Every element as f32 (for the small tensors: norms, LoRA, decider).
    pub fn dequantize_all(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.rows * self.cols];
        portable::dequantize(self.dtype, self.bytes, &mut out)?;
        Ok(out)
    }

    /// `x` (`m` rows of `cols`) prepared for the kernels of `tier`.
    pub fn product(&self, x: &'a [f32], m: usize, tier: Tier) -> Result<Product<'a>> {
        if x.len() != m * self.cols {
            return Err(Error::InvalidArgument(format!(
                "matmul: {} input values for {m} rows into a {} x {} {:?} matrix",
                x.len(),
                self.rows,
                self.cols,
                self.dtype
            )));
        }
        let prepared = prepare(self, x, m, tier);
        Ok(Product {
            matrix: *self,
            x,
            m,
            prepared,
        })
    }

    /// `x @ W^T` (`[m, rows]`) on the kernels of the process's tier.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let product = self.product(x, m, super::tier())?;
        let mut out = vec![0f32; m * self.rows];
        product.columns(0, self.rows, &mut out)?;
        Ok(out)
    }
}

#[cfg(target_arch = "x86_64")]
fn prepare(matrix: &QuantMatrix, x: &[f32], m: usize, tier: Tier) -> Prepared {
    let vnni = tier >= Tier::Avx512Vnni;
    let low_bit = matches!(
        matrix.dtype,
        GgmlDType::Q4_0
            | GgmlDType::Q4_1
            | GgmlDType::Q5_0
            | GgmlDType::Q5_1
            | GgmlDType::Q2K
            | GgmlDType::Q3K
            | GgmlDType::Q4K
            | GgmlDType::Q5K
            | GgmlDType::Q6K
    );
    // Q4_K has the int8 kernel for fewer rows; the other types' many-row
    // path dequantizes the same panels for an f32 GEMM.
    let amx_min_rows = match matrix.dtype {
        GgmlDType::Q4K if vnni => Q4K_AMX_MIN_ROWS,
        _ => FEW_ROWS + 1,
    };
    if vnni && low_bit && m >= amx_min_rows && amx::available() {
        if let Some(rows) = amx::Bf16Rows::new(x, m, matrix.cols) {
            return Prepared::Amx(rows);
        }
    }
    if vnni && matrix.dtype == GgmlDType::Q4K && q4k_int8::fits(matrix.cols) {
        return Prepared::Q4kInt8(q4k_int8::QuantizedRows::new(x, matrix.cols));
    }
    Prepared::Plain
}

#[cfg(target_arch = "aarch64")]
fn prepare(matrix: &QuantMatrix, x: &[f32], m: usize, tier: Tier) -> Prepared {
    match aarch64::Activations::new(tier, matrix.dtype, x, m, matrix.cols) {
        Some(a) => Prepared::Arm(Box::new(a)),
        None => Prepared::Plain,
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn prepare(_: &QuantMatrix, _: &[f32], _: usize, _: Tier) -> Prepared {
    Prepared::Plain
}

impl Product<'_> {
    /// Columns `first..first + n` of the product (weight rows), into `out`
    /// (`[m, n]`; every value is written).
    pub fn columns(&self, first: usize, n: usize, out: &mut [f32]) -> Result<()> {
        let (matrix, m) = (&self.matrix, self.m);
        let weights = matrix.row_range(first, n)?;
        if out.len() != m * n {
            return Err(Error::InvalidArgument(format!(
                "matmul: output of {} values for {m} x {n}",
                out.len()
            )));
        }
        match &self.prepared {
            #[cfg(target_arch = "x86_64")]
            Prepared::Amx(a) => {
                let weight_row =
                    |j: usize, row: &mut [f32]| matrix.dequantize_row_into(first + j, row);
                amx::matmul_t(a, n, &weight_row, out)
            }
            #[cfg(target_arch = "x86_64")]
            Prepared::Q4kInt8(q) => {
                // The sizes were checked (input columns, whole blocks at
                // load): a refusal here is a bug, reported rather than
                // hidden by a second, slower path.
                if q4k_int8::matmul_t(q, weights, n, out) {
                    Ok(())
                } else {
                    Err(candle_core::Error::Msg(format!(
                        "Q4_K int8 product refused its sizes: {m} rows into {n} x {}",
                        matrix.cols
                    ))
                    .into())
                }
            }
            #[cfg(target_arch = "aarch64")]
            Prepared::Arm(a) => a.matmul_t(weights, n, out),
            Prepared::Plain if m <= FEW_ROWS => self.few_rows(weights, n, out),
            Prepared::Plain => self.panels(first, n, out),
        }
    }

    /// A handful of rows: 8-bit dot products on the blocks, or dot products
    /// with one widened row at a time for unquantized types.
    fn few_rows(&self, weights: &[u8], n: usize, out: &mut [f32]) -> Result<()> {
        let (m, k) = (self.m, self.matrix.cols);
        if self.matrix.dtype == GgmlDType::F32 && cfg!(target_endian = "little") {
            // GGUF aligns tensor data, so a mapped f32 matrix (the LoRA
            // adapters) is read in place; copying its 16-float rows one at
            // a time cost more than the products.
            if let Ok(data) = bytemuck::try_cast_slice::<u8, f32>(weights) {
                let rows = super::dense::DenseRows { data, in_dim: k };
                return super::dense::few_rows_matmul_t_into(self.x, m, n, &rows, out);
            }
        }
        if matches!(
            self.matrix.dtype,
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        ) {
            let rows = WidenedRows {
                dtype: self.matrix.dtype,
                bytes: weights,
                cols: k,
            };
            return super::dense::few_rows_matmul_t_into(self.x, m, n, &rows, out);
        }
        portable::quantized_matmul_t(self.matrix.dtype, weights, (m, k, n), self.x, out)
    }

    /// Many rows: weight rows dequantized a panel at a time, each panel
    /// multiplied by an f32 GEMM into its columns of `out`.
    fn panels(&self, first: usize, n: usize, out: &mut [f32]) -> Result<()> {
        let (m, k) = (self.m, self.matrix.cols);
        let panel_rows = (PANEL_FLOATS / k.max(1)).max(16).min(n.max(1));
        let mut scratch = Vec::new();
        for start in (0..n).step_by(panel_rows) {
            let rows = panel_rows.min(n - start);
            scratch.resize(rows * k, 0f32);
            for (r, row) in scratch.chunks_exact_mut(k).enumerate() {
                self.matrix.dequantize_row_into(first + start + r, row)?;
            }
            // out[:, start..start + rows] = x @ panel^T
            gemm_into(
                (m, rows, k),
                &mut out[start..],
                n,
                false,
                (self.x, k, 1),
                (&scratch, 1, k),
                1.0,
            );
        }
        Ok(())
    }
}

/// Unquantized weight rows widened one at a time (f32 rows are copied too:
/// mapped bytes need not be 4-byte aligned).
struct WidenedRows<'a> {
    dtype: GgmlDType,
    bytes: &'a [u8],
    cols: usize,
}

impl super::dense::WeightRows for WidenedRows<'_> {
    fn row<'s>(&'s self, j: usize, scratch: &'s mut [f32]) -> Result<&'s [f32]> {
        let width = self.dtype.type_size() * self.cols;
        let src = self
            .bytes
            .get(j * width..(j + 1) * width)
            .ok_or_else(|| Error::InvalidArgument(format!("weight row {j} out of its storage")))?;
        if !super::dequantize_row(self.dtype, src, scratch) {
            portable::dequantize(self.dtype, src, scratch)?;
        }
        Ok(scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mapped f32 weights (LoRA adapters) are read in place when aligned and
    /// copied row by row when not; both give the plain product, and a
    /// perturbed weight changes it.
    #[test]
    fn f32_weights_in_place_or_copied_equal_the_reference() {
        let (m, rows, cols) = (3, 37, 16);
        let x = crate::kernels::test_values(m * cols, 3);
        let w = crate::kernels::test_values(rows * cols, 9);
        let reference: Vec<f32> = (0..m)
            .flat_map(|r| {
                let (x, w) = (&x, &w);
                (0..rows).map(move |j| {
                    (0..cols)
                        .map(|c| x[r * cols + c] * w[j * cols + c])
                        .sum::<f32>()
                })
            })
            .collect();
        let mut storage: Vec<u32> = vec![0; rows * cols + 1];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut storage);
        for shift in [0, 1] {
            for (i, v) in w.iter().enumerate() {
                bytes[shift + 4 * i..][..4].copy_from_slice(&v.to_le_bytes());
            }
            let got = f32_matrix(&bytes[shift..shift + 4 * rows * cols], rows, cols)
                .matmul_t(&x, m)
                .unwrap();
            for (g, r) in got.iter().zip(&reference) {
                assert!((g - r).abs() < 1e-5, "shift {shift}: {g} vs {r}");
            }
            bytes[shift] ^= 0x40;
            let perturbed = f32_matrix(&bytes[shift..shift + 4 * rows * cols], rows, cols)
                .matmul_t(&x, m)
                .unwrap();
            assert_ne!(
                perturbed, got,
                "shift {shift}: a changed weight went unseen"
            );
            bytes[shift] ^= 0x40;
        }
    }

    fn f32_matrix(bytes: &[u8], rows: usize, cols: usize) -> QuantMatrix<'_> {
        QuantMatrix {
            dtype: GgmlDType::F32,
            bytes,
            rows,
            cols,
        }
    }
}
