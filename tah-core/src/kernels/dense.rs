//! `x @ W^T` for dense f32 weight matrices (the LoRA adapters, the decider
//! MLP, f32 model files).
//!
//! For a handful of rows (decode steps, the few hard tokens of a chunk) a
//! general GEMM spends most of its time packing the whole weight matrix;
//! a row-parallel dot product over the row-major weight reads it once.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::dot;
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
        let mut out = vec![0f32; rows * out_dim];
        with_f32_values(weight, |data| {
            let weight = DenseRows { data, in_dim };
            with_f32_values(x, |x| {
                few_rows_matmul_t_into(x, rows, out_dim, &weight, &mut out)
            })
        })?;
        return Ok(Tensor::from_vec(out, (rows, out_dim), x.device())?);
    }
    Ok(x.matmul(&weight.t()?)?)
}

/// `x` (`rows` rows of `in` floats) times the transpose of `weight`
/// (`out_dim` rows), reading every weight row once, into `out`
/// (`[rows, out_dim]`).
pub(crate) fn few_rows_matmul_t_into(
    x: &[f32],
    rows: usize,
    out_dim: usize,
    weight: &impl WeightRows,
    out: &mut [f32],
) -> Result<()> {
    let in_dim = x.len() / rows.max(1);
    if out.len() != rows * out_dim || x.len() != rows * in_dim {
        return Err(Error::InvalidArgument(format!(
            "matmul: {} inputs and {} outputs for {rows} rows into {out_dim}",
            x.len(),
            out.len()
        )));
    }
    // Each task owns a block of output columns (all rows), written in place.
    let out_columns = OutColumns::new(out);
    (0..out_dim.div_ceil(COLUMNS_PER_TASK))
        .into_par_iter()
        .try_for_each(|task| -> Result<()> {
            let mut scratch = vec![0f32; in_dim];
            let first = task * COLUMNS_PER_TASK;
            for c in first..out_dim.min(first + COLUMNS_PER_TASK) {
                let w_row = weight.row(c, &mut scratch)?;
                for r in 0..rows {
                    let value = dot(&x[r * in_dim..][..in_dim], w_row);
                    // SAFETY: `r * out_dim + c` is inside `out`, and column
                    // `c` belongs to this task alone.
                    unsafe { *out_columns.at(r * out_dim + c) = value };
                }
            }
            Ok(())
        })
}

/// A matrix operand: `(data, row stride, column stride)`.
pub(crate) type Operand<'a> = (&'a [f32], usize, usize);

/// `dst = [dst +] scale * a b` for `(m, n, k)`: `a` is `m x k`, `b` is `k x n`,
/// `dst` is row-major with `dst_stride` floats between rows.
pub(crate) fn gemm_into(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    a: Operand,
    b: Operand,
    scale: f32,
) {
    if m == 0 || n == 0 || k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // The GEMM reads and writes through raw pointers: every element it may
    // touch must lie inside the slices.
    let last = |(data, rs, cs): Operand, rows: usize, cols: usize| {
        assert!((rows - 1) * rs + (cols - 1) * cs < data.len());
        data.as_ptr()
    };
    let (a_ptr, b_ptr) = (last(a, m, k), last(b, k, n));
    assert!((m - 1) * dst_stride + n <= dst.len());
    // SAFETY: the asserts above keep every accessed element in bounds; `dst`
    // is borrowed mutably, so it does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a_ptr,
            a.2 as isize,
            a.1 as isize,
            b_ptr,
            b.2 as isize,
            b.1 as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
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
