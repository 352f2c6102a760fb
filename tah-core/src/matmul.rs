//! `x @ W^T` for dense f32 weight matrices.
//!
//! For a handful of rows (decode steps, the few hard tokens of a chunk) a
//! general GEMM spends most of its time packing the whole weight matrix;
//! a row-parallel dot product over the row-major weight reads it once.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Up to this many input rows use the dot-product path.
pub(crate) const FEW_ROWS: usize = 4;
/// Output columns per parallel task.
const COLUMNS_PER_TASK: usize = 256;

/// A weight matrix `[out, in]` read one row at a time as f32.
pub(crate) trait WeightRows: Sync {
    /// Row `j`, borrowed or written into `scratch` (`in` floats).
    fn row<'a>(&'a self, j: usize, scratch: &'a mut [f32]) -> Result<&'a [f32]>;
}

/// A row-major f32 matrix in memory.
struct DenseRows<'w> {
    data: &'w [f32],
    in_dim: usize,
}

impl WeightRows for DenseRows<'_> {
    fn row<'a>(&'a self, j: usize, _scratch: &'a mut [f32]) -> Result<&'a [f32]> {
        self.data
            .get(j * self.in_dim..(j + 1) * self.in_dim)
            .ok_or_else(|| Error::InvalidArgument(format!("weight row {j} out of its storage")))
    }
}

/// A `[rows, n]` output shared by parallel tasks that each write their own
/// columns (a task's columns are not contiguous, so they cannot be split
/// off as slices).
#[derive(Clone, Copy)]
pub(crate) struct OutColumns(*mut f32);
// SAFETY: users write disjoint columns from each task.
unsafe impl Send for OutColumns {}
unsafe impl Sync for OutColumns {}

impl OutColumns {
    pub fn new(out: &mut [f32]) -> Self {
        OutColumns(out.as_mut_ptr())
    }

    /// # Safety
    /// `offset` must lie within the output.
    pub unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// Calls `f` with `x`'s values in row-major order: borrowed from its storage
/// when `x` is a contiguous f32 CPU tensor (activations usually are), else
/// copied.
pub(crate) fn with_f32_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    if let (DType::F32, Some((start, end))) = (x.dtype(), x.layout().contiguous_offsets()) {
        let (storage, _) = x.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            if let Some(values) = cpu.as_slice::<f32>()?.get(start..end) {
                return f(values);
            }
        }
    }
    f(&x.contiguous()?.flatten_all()?.to_vec1::<f32>()?)
}

/// `x` (`[n, in]`) times the transpose of `weight` (`[out, in]`).
pub fn dense_matmul_t(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (rows, in_dim) = x.dims2()?;
    let (out_dim, weight_in) = weight.dims2()?;
    // Borrowed, never copied: a contiguous f32 matrix in memory.
    let in_memory =
        weight.dtype() == DType::F32 && weight.is_contiguous() && weight.device().is_cpu();
    if rows <= FEW_ROWS && weight_in == in_dim && in_memory {
        return with_f32_values(weight, |data| {
            let weight = DenseRows { data, in_dim };
            with_f32_values(x, |x| few_rows_matmul_t(x, rows, out_dim, &weight))
        });
    }
    Ok(x.matmul(&weight.t()?)?)
}

/// `x` (`rows` rows of `in` floats) times the transpose of `weight`
/// (`out_dim` rows), reading every weight row once.
pub(crate) fn few_rows_matmul_t(
    x: &[f32],
    rows: usize,
    out_dim: usize,
    weight: &impl WeightRows,
) -> Result<Tensor> {
    let in_dim = x.len() / rows.max(1);
    // Column-major result: each task owns a block of output columns (all
    // rows), so tasks never share an output element.
    let mut by_column = vec![0f32; out_dim * rows];
    by_column
        .par_chunks_mut(COLUMNS_PER_TASK * rows)
        .enumerate()
        .try_for_each(|(task, block)| -> Result<()> {
            let mut scratch = vec![0f32; in_dim];
            for (c, cell) in block.chunks_mut(rows).enumerate() {
                let w_row = weight.row(task * COLUMNS_PER_TASK + c, &mut scratch)?;
                for (r, value) in cell.iter_mut().enumerate() {
                    *value = dot(&x[r * in_dim..][..in_dim], w_row);
                }
            }
            Ok(())
        })?;
    let out = Tensor::from_vec(by_column, (out_dim, rows), &candle_core::Device::Cpu)?;
    Ok(if rows == 1 {
        out.reshape((1, out_dim))?
    } else {
        out.t()?.contiguous()?
    })
}

/// Dot product, using AVX2 + FMA when the CPU has them (the portable build
/// targets baseline x86-64; ARM builds get NEON from the target itself).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_portable(a, b)
}

/// Sixteen independent accumulators: the compiler maps them onto SIMD lanes.
#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (a_body, b_body) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_body
        .remainder()
        .iter()
        .zip(b_body.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a_body.zip(b_body) {
        for l in 0..LANES {
            acc[l] = ca[l].mul_add(cb[l], acc[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Deterministic values in [-0.5, 0.5) for kernel tests (a multiplicative
/// hash of the index and `seed`).
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
            (h >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn few_rows_path_equals_gemm() {
        let x = Tensor::randn(0f32, 1.0, (3, 70), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (1000, 70), &Device::Cpu).unwrap();
        let fast = dense_matmul_t(&x, &w).unwrap();
        let reference = x.matmul(&w.t().unwrap()).unwrap();
        let diff = (fast - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }
}
