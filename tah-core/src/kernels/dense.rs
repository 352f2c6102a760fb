//! `x @ W^T` for dense f32 weight matrices (the LoRA adapters, the decider
//! MLP, f32 model files).
//!
//! For a handful of rows (decode steps, the few hard tokens of a chunk) a
//! general GEMM spends most of its time packing the whole weight matrix;
//! a row-parallel dot product over the row-major weight reads it once.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use super::{dot, dot4};
use crate::error::{Error, Result};

/// Up to this many input rows use the dot-product path.
pub(crate) const FEW_ROWS: usize = 4;
/// Weight rows up to this long take [`super::narrow_matvec`].
const NARROW_ROWS: usize = 32;
/// Output columns per parallel task.
const COLUMNS_PER_TASK: usize = 256;

/// A weight matrix `[out, in]` read one row at a time as f32.
pub(crate) trait WeightRows: Sync {
    /// Row `j`, borrowed or written into `scratch` (`in` floats).
    fn row<'a>(&'a self, j: usize, scratch: &'a mut [f32]) -> Result<&'a [f32]>;

    /// Every row at once, when they lie contiguous in memory.
    fn contiguous(&self) -> Option<&[f32]> {
        None
    }
}

/// A row-major f32 matrix in memory.
pub(crate) struct DenseRows<'w> {
    pub data: &'w [f32],
    pub in_dim: usize,
}

impl WeightRows for DenseRows<'_> {
    fn row<'a>(&'a self, j: usize, _scratch: &'a mut [f32]) -> Result<&'a [f32]> {
        self.data
            .get(j * self.in_dim..(j + 1) * self.in_dim)
            .ok_or_else(|| Error::InvalidArgument(format!("weight row {j} out of its storage")))
    }

    fn contiguous(&self) -> Option<&[f32]> {
        Some(self.data)
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
    // Short rows (LoRA `B`, `[out, r]`): the whole product is a few
    // multiplies per output, less than a parallel task's set-up.
    if (1..=NARROW_ROWS).contains(&in_dim) {
        if let Some(data) = weight.contiguous().filter(|d| d.len() >= out_dim * in_dim) {
            for (x_row, out_row) in x.chunks_exact(in_dim).zip(out.chunks_exact_mut(out_dim)) {
                super::narrow_matvec(x_row, data, out_row);
            }
            return Ok(());
        }
    }
    // Each task owns a block of output columns (all rows), written in place;
    // weight rows four at a time, so each input value is loaded once per
    // four of them.
    let out_columns = OutColumns::new(out);
    (0..out_dim.div_ceil(COLUMNS_PER_TASK))
        .into_par_iter()
        .try_for_each(|task| -> Result<()> {
            let mut scratch = vec![0f32; 4 * in_dim];
            let first = task * COLUMNS_PER_TASK;
            let end = out_dim.min(first + COLUMNS_PER_TASK);
            let mut c = first;
            while c < end {
                let group = (end - c).min(4);
                let mut parts = scratch.chunks_exact_mut(in_dim);
                let mut w: [&[f32]; 4] = [&[]; 4];
                for (j, slot) in w.iter_mut().enumerate().take(group) {
                    let part = parts.next().unwrap_or_default();
                    *slot = weight.row(c + j, part)?;
                }
                for r in 0..rows {
                    let x_row = &x[r * in_dim..][..in_dim];
                    let values = if group == 4 {
                        dot4(x_row, w)
                    } else {
                        std::array::from_fn(|j| if j < group { dot(x_row, w[j]) } else { 0.0 })
                    };
                    for (j, value) in values.into_iter().enumerate().take(group) {
                        // SAFETY: `r * out_dim + c + j` is inside `out`, and
                        // column `c + j` belongs to this task alone.
                        unsafe { *out_columns.at(r * out_dim + c + j) = value };
                    }
                }
                c += group;
            }
            Ok(())
        })
}

/// [`gemm_into`] for one row `a` whose values are contiguous (a decode
/// step's query, or its attention weights): a dot product per column of `b`
/// when its columns are contiguous, a scaled sum of `b`'s rows when its rows
/// are. At these sizes a GEMM's set-up costs more than the products (a
/// decode step makes 16 such calls per layer).
fn row_times_matrix(
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    (a, _, _): Operand,
    (b, b_rs, b_cs): Operand,
    scale: f32,
) {
    let a = &a[..k];
    if b_rs == 1 {
        for (j, d) in dst.iter_mut().enumerate() {
            let value = scale * dot(a, &b[j * b_cs..][..k]);
            *d = if accumulate { *d + value } else { value };
        }
        return;
    }
    if !accumulate {
        dst.fill(0.0);
    }
    for (i, &weight) in a.iter().enumerate() {
        let weight = scale * weight;
        for (d, v) in dst.iter_mut().zip(&b[i * b_rs..][..n]) {
            *d = weight.mul_add(*v, *d);
        }
    }
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
    if m == 1 && a.2 == 1 && (b.1 == 1 || b.2 == 1) {
        return row_times_matrix(n, k, &mut dst[..n], accumulate, a, b, scale);
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

    /// One row times a matrix read by columns or by rows, with and without
    /// accumulation, equals the GEMM path (taken for two rows).
    #[test]
    fn one_row_products_equal_the_gemm() {
        let (n, k) = (37, 70);
        let a = crate::kernels::test_values(2 * k, 1);
        let b = crate::kernels::test_values(k * n, 2);
        for (rs, cs) in [(1, k), (n, 1)] {
            for accumulate in [false, true] {
                let mut two = vec![0.5f32; 2 * n];
                gemm_into(
                    (2, n, k),
                    &mut two,
                    n,
                    accumulate,
                    (&a, k, 1),
                    (&b, rs, cs),
                    0.7,
                );
                let mut one = vec![0.5f32; n];
                gemm_into(
                    (1, n, k),
                    &mut one,
                    n,
                    accumulate,
                    (&a, k, 1),
                    (&b, rs, cs),
                    0.7,
                );
                for (x, y) in one.iter().zip(&two[..n]) {
                    assert!((x - y).abs() < 1e-5, "strides ({rs}, {cs}): {x} vs {y}");
                }
            }
        }
    }

    /// Long rows (tasks of dot products) and short ones (LoRA `B`: the
    /// narrow kernel, or its fallback for widths it does not take).
    #[test]
    fn few_rows_path_equals_gemm() {
        for in_dim in [70, 16, 12, 7] {
            let x = Tensor::randn(0f32, 1.0, (3, in_dim), &Device::Cpu).unwrap();
            let w = Tensor::randn(0f32, 1.0, (1001, in_dim), &Device::Cpu).unwrap();
            let fast = dense_matmul_t(&x, &w).unwrap();
            let reference = x.matmul(&w.t().unwrap()).unwrap();
            let diff = (fast - reference)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "in_dim {in_dim}");
        }
    }
}
