//! Weight matrices that stay in the file's memory map.
//!
//! Quantized matrices are multiplied straight from the mapped blocks with
//! candle's `k_quants::matmul` (not through `QMatMul`, whose CPU kernels
//! lazily repack every weight into a heap copy the first time it is used);
//! f32/f16/bf16 matrices are widened to f32 a chunk of rows at a time, so
//! the activations keep full precision. Embedding rows are dequantized one
//! row at a time. Only the pages actually read become resident.

use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use memmap2::Mmap;

use super::reader::{GgufFile, TensorInfo};
use crate::error::{Error, GgufProblem, Result};

/// Rows widened at a time when multiplying by an unquantized matrix: big
/// enough for an efficient matmul, small enough to stay in cache-sized
/// scratch (a 151936-row LM head is never widened as a whole).
const DENSE_CHUNK_ROWS: usize = 1024;

/// Calls `$f::<T>($args)` with `T` the block type of `$dtype`.
macro_rules! with_block_type {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            GgmlDType::F32 => $f::<f32>($($arg),*),
            GgmlDType::F16 => $f::<half::f16>($($arg),*),
            GgmlDType::BF16 => $f::<half::bf16>($($arg),*),
            GgmlDType::Q4_0 => $f::<k_quants::BlockQ4_0>($($arg),*),
            GgmlDType::Q4_1 => $f::<k_quants::BlockQ4_1>($($arg),*),
            GgmlDType::Q5_0 => $f::<k_quants::BlockQ5_0>($($arg),*),
            GgmlDType::Q5_1 => $f::<k_quants::BlockQ5_1>($($arg),*),
            GgmlDType::Q8_0 => $f::<k_quants::BlockQ8_0>($($arg),*),
            GgmlDType::Q2K => $f::<k_quants::BlockQ2K>($($arg),*),
            GgmlDType::Q3K => $f::<k_quants::BlockQ3K>($($arg),*),
            GgmlDType::Q4K => $f::<k_quants::BlockQ4K>($($arg),*),
            GgmlDType::Q5K => $f::<k_quants::BlockQ5K>($($arg),*),
            GgmlDType::Q6K => $f::<k_quants::BlockQ6K>($($arg),*),
            // Activation-only types; the reader never yields them.
            GgmlDType::Q8_1 | GgmlDType::Q8K => Err(candle_core::Error::Msg(format!(
                "{:?} is not a weight type",
                $dtype
            ))
            .into()),
        }
    };
}

/// A `[rows, cols]` matrix in a memory-mapped GGUF file.
pub struct MappedMatrix {
    mmap: Arc<Mmap>,
    offset: usize,
    len: usize,
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
}

impl std::fmt::Debug for MappedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "MappedMatrix[{}x{} {:?}]",
            self.rows, self.cols, self.dtype
        )
    }
}

/// Views mapped bytes as blocks, after checking length and alignment.
fn blocks<T: GgmlType>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if size == 0
        || !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: length and alignment are checked above; the block types are
    // plain `repr(C)` structs of integers and f16 for which every bit
    // pattern is a valid value; the bytes live as long as the mapping.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

fn check_layout<T: GgmlType>(bytes: &[u8]) -> Result<()> {
    match blocks::<T>(bytes) {
        Some(_) if std::mem::size_of::<T>() == T::DTYPE.type_size() => Ok(()),
        _ => Err(candle_core::Error::Msg("misaligned".into()).into()),
    }
}

fn to_f32<T: GgmlType>(bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let src = blocks::<T>(bytes).ok_or_else(|| candle_core::Error::Msg("misaligned".into()))?;
    if src.len() * T::BLCK_SIZE != out.len() {
        return Err(candle_core::Error::Msg("block count mismatch".into()).into());
    }
    T::to_float(src, out);
    Ok(())
}

fn quantized_matmul<T: GgmlType>(
    bytes: &[u8],
    mkn: (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    let (_, k, n) = mkn;
    let rhs = blocks::<T>(bytes).ok_or_else(|| candle_core::Error::Msg("misaligned".into()))?;
    // k_quants::matmul indexes `rhs` by n * k / block: guarantee it fits.
    if rhs.len() * T::BLCK_SIZE != n * k {
        return Err(candle_core::Error::Msg("block count mismatch".into()).into());
    }
    Ok(k_quants::matmul(mkn, lhs, rhs, dst)?)
}

impl MappedMatrix {
    /// Checks that the tensor's bytes can be viewed as its block type.
    pub(crate) fn new(file: &GgufFile, name: &str, info: &TensorInfo) -> Result<Self> {
        let cols = info.shape.last().copied().unwrap_or(1);
        let rows = info.shape.iter().rev().skip(1).product();
        let matrix = MappedMatrix {
            mmap: file.mmap().clone(),
            offset: info.offset,
            len: info.len,
            dtype: info.dtype,
            rows,
            cols,
        };
        with_block_type!(info.dtype, check_layout(matrix.bytes()))
            .map_err(|_| Error::gguf(file.path(), GgufProblem::Misaligned(name.to_string())))?;
        Ok(matrix)
    }

    fn bytes(&self) -> &[u8] {
        // In bounds: the reader checked offset + len against the file.
        &self.mmap[self.offset..self.offset + self.len]
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row_bytes(&self) -> usize {
        self.len / self.rows
    }

    /// Every element as f32 (for the small tensors: norms, LoRA, decider).
    pub fn dequantize_all(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.rows * self.cols];
        with_block_type!(self.dtype, to_f32(self.bytes(), &mut out))?;
        Ok(out)
    }

    /// Rows `ids` as `[ids.len(), cols]`, dequantizing only those rows.
    pub fn rows_f32(&self, ids: &[u32]) -> Result<Tensor> {
        let (cols, row_bytes) = (self.cols, self.row_bytes());
        let mut out = vec![0f32; ids.len() * cols];
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(cols)) {
            let id = id as usize;
            if id >= self.rows {
                return Err(Error::InvalidArgument(format!(
                    "row {id} is outside the matrix ({} rows)",
                    self.rows
                )));
            }
            let src = &self.bytes()[id * row_bytes..(id + 1) * row_bytes];
            with_block_type!(self.dtype, to_f32(src, dst))?;
        }
        Ok(Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)?)
    }

    /// `x @ W^T` for `x` of shape `[m, cols]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            return Err(candle_core::Error::Msg(format!(
                "matmul: input has {k} columns, matrix {:?}",
                self
            ))
            .into());
        }
        let n = self.rows;
        if matches!(
            self.dtype,
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        ) {
            return self.dense_forward(x);
        }
        let lhs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dst = vec![0f32; m * n];
        with_block_type!(
            self.dtype,
            quantized_matmul(self.bytes(), (m, k, n), &lhs, &mut dst)
        )?;
        Ok(Tensor::from_vec(dst, (m, n), x.device())?)
    }

    /// Unquantized weights: widen a chunk of rows to f32, multiply, repeat.
    fn dense_forward(&self, x: &Tensor) -> Result<Tensor> {
        let row_bytes = self.row_bytes();
        let mut parts = Vec::with_capacity(self.rows.div_ceil(DENSE_CHUNK_ROWS));
        let mut scratch = Vec::new();
        for start in (0..self.rows).step_by(DENSE_CHUNK_ROWS) {
            let rows = DENSE_CHUNK_ROWS.min(self.rows - start);
            scratch.resize(rows * self.cols, 0f32);
            let src = &self.bytes()[start * row_bytes..(start + rows) * row_bytes];
            with_block_type!(self.dtype, to_f32(src, &mut scratch))?;
            let w = Tensor::from_slice(&scratch, (rows, self.cols), x.device())?;
            parts.push(x.matmul(&w.t()?)?);
        }
        Ok(Tensor::cat(&parts, 1)?)
    }
}
