//! Weight matrices that stay in the file's memory map.
//!
//! Matrices are multiplied straight from the mapped blocks (not through
//! candle's `QMatMul`, whose CPU kernels repack every weight into a heap
//! copy). A few input rows (decode) use 8-bit dot products on the blocks;
//! more rows (prefill) dequantize a cache-sized panel of weight rows at a
//! time and run an f32 GEMM (see [`super::dequant`]). Embedding rows are
//! dequantized one row at a time. Only the pages actually read become
//! resident. Q4_K matrices on CPUs with AVX-512 VNNI use integer dot
//! products ([`super::q4k_int8`]); many rows of a 4- to 6-bit matrix on
//! CPUs with AMX use its tiles ([`super::amx`]).

use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use memmap2::Mmap;
use rayon::prelude::*;

use super::reader::{GgufFile, TensorInfo};
use super::{amx, dequant, q4k_int8};
use crate::error::{Error, GgufProblem, Result};
use crate::matmul::{few_rows_matmul_t, with_f32_values, WeightRows, FEW_ROWS};

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
const Q4K_AMX_MIN_ROWS: usize = 32;
/// Weight rows per parallel task of the few-rows product.
const WEIGHT_ROWS_PER_TASK: usize = 256;
/// How far ahead (in weight rows) the few-rows product prefetches (8 measured
/// a little faster than 2 and 4 for the Q6_K LM head in decode here).
const PREFETCH_ROWS_AHEAD: usize = 8;

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

/// `lhs @ rhs^T` with candle's k-quants dot products: the activations are
/// quantized to the weights' 8-bit dot-product type, which makes a handful
/// of rows several times faster than dequantizing the weights to f32.
/// Weight rows are read in order with the rows ahead prefetched: decode is
/// bound by how fast the mapped weights stream in from memory.
fn quantized_matmul<T: GgmlType>(
    bytes: &[u8],
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    let mismatch = || candle_core::Error::Msg("block count mismatch".into());
    let rhs = blocks::<T>(bytes).ok_or_else(|| candle_core::Error::Msg("misaligned".into()))?;
    if T::BLCK_SIZE != T::VecDotType::BLCK_SIZE
        || !k.is_multiple_of(T::BLCK_SIZE)
        || rhs.len() * T::BLCK_SIZE != n * k
        || lhs.len() != m * k
        || dst.len() != m * n
    {
        return Err(mismatch().into());
    }
    let row_blocks = k / T::BLCK_SIZE;
    let mut lhs_q = vec![T::VecDotType::zeros(); m * row_blocks];
    for (src, dst) in lhs.chunks_exact(k).zip(lhs_q.chunks_exact_mut(row_blocks)) {
        T::VecDotType::from_float(src, dst);
    }
    // Weight-row-major results (`[n, m]`), transposed at the end.
    let mut by_weight_row = vec![0f32; n * m];
    by_weight_row
        .par_chunks_mut(WEIGHT_ROWS_PER_TASK * m)
        .zip(rhs.par_chunks(WEIGHT_ROWS_PER_TASK * row_blocks))
        .for_each(|(out, weights)| {
            let rows: Vec<&[T]> = weights.chunks_exact(row_blocks).collect();
            for (j, row) in rows.iter().enumerate() {
                if let Some(ahead) = rows.get(j + PREFETCH_ROWS_AHEAD) {
                    prefetch(ahead);
                }
                for (o, x) in out[j * m..(j + 1) * m]
                    .iter_mut()
                    .zip(lhs_q.chunks_exact(row_blocks))
                {
                    *o = T::vec_dot(k, row, x);
                }
            }
        });
    for (j, values) in by_weight_row.chunks_exact(m).enumerate() {
        for (r, v) in values.iter().enumerate() {
            dst[r * n + j] = *v;
        }
    }
    Ok(())
}

/// Asks the CPU to start loading `blocks` into the cache.
fn prefetch<T>(blocks: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = blocks.as_ptr() as *const i8;
        for offset in (0..std::mem::size_of_val(blocks)).step_by(64) {
            // SAFETY: a prefetch is a hint; it never faults, and the address
            // is inside `blocks`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    start.add(offset),
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = blocks;
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

    /// Drops this matrix's pages from the process's resident set, for a
    /// tensor copied to the heap at load time whose mapped bytes would
    /// otherwise count twice. Touching them again re-reads them from the file.
    pub(crate) fn release_pages(&self) {
        super::mapping::release_range(&self.mmap, self.offset, self.len);
    }

    /// Every element as f32 (for the small tensors: norms, LoRA, decider).
    pub fn dequantize_all(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.rows * self.cols];
        with_block_type!(self.dtype, to_f32(self.bytes(), &mut out))?;
        Ok(out)
    }

    /// Rows `ids` as `[ids.len(), cols]`, dequantizing only those rows.
    pub fn rows_f32(&self, ids: &[u32]) -> Result<Tensor> {
        let mut out = vec![0f32; ids.len() * self.cols];
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            if id as usize >= self.rows {
                return Err(Error::InvalidArgument(format!(
                    "row {id} is outside the matrix ({} rows)",
                    self.rows
                )));
            }
            self.dequantize_row_into(id as usize, dst)?;
        }
        Ok(Tensor::from_vec(out, (ids.len(), self.cols), &Device::Cpu)?)
    }

    /// Row `j` dequantized into `out` (`cols` floats).
    fn dequantize_row_into(&self, j: usize, out: &mut [f32]) -> Result<()> {
        let row_bytes = self.row_bytes();
        let src = self
            .bytes()
            .get(j * row_bytes..(j + 1) * row_bytes)
            .ok_or_else(|| Error::InvalidArgument(format!("row {j} is outside {self:?}")))?;
        if dequant::dequantize_row(self.dtype, src, out) {
            return Ok(());
        }
        with_block_type!(self.dtype, to_f32(src, out))
    }

    /// `x @ W^T` for `x` of shape `[m, cols]`. Many rows of a 4- to 6-bit
    /// matrix use AMX where the CPU has it, Q4_K the int8 kernel where the
    /// CPU has AVX-512 VNNI. Otherwise a few rows (decode) of a quantized
    /// matrix use 8-bit dot products straight from the blocks, of an
    /// unquantized one dot products with one widened row at a time; more
    /// rows dequantize a panel of weight rows and use an f32 GEMM.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = self.input_rows(x)?;
        if let Some(a) = self.amx_rows(x, m)? {
            let mut product = vec![0f32; m * self.rows];
            self.amx_product(&a, 0, self.rows, &mut product)?;
            return Ok(Tensor::from_vec(product, (m, self.rows), x.device())?);
        }
        if self.dtype == GgmlDType::Q4K && q4k_int8::available() {
            let quantized =
                with_f32_values(x, |lhs| Ok(q4k_int8::QuantizedRows::new(lhs, self.cols)))?;
            let mut dst = vec![0f32; m * self.rows];
            // The sizes were checked (input columns, whole blocks at load):
            // a refusal here is a bug, reported rather than hidden by a
            // second, slower path.
            if !q4k_int8::matmul_t(&quantized, self.bytes(), self.rows, &mut dst) {
                return Err(candle_core::Error::Msg(format!(
                    "Q4_K int8 product refused its sizes: {m} rows into {self:?}"
                ))
                .into());
            }
            return Ok(Tensor::from_vec(dst, (m, self.rows), x.device())?);
        }
        if m > FEW_ROWS {
            return self.panel_forward(x);
        }
        with_f32_values(x, |lhs| {
            if matches!(
                self.dtype,
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
            ) {
                return few_rows_matmul_t(lhs, m, self.rows, self);
            }
            let mut dst = vec![0f32; m * self.rows];
            with_block_type!(
                self.dtype,
                quantized_matmul(self.bytes(), (m, self.cols, self.rows), lhs, &mut dst)
            )?;
            Ok(Tensor::from_vec(dst, (m, self.rows), x.device())?)
        })
    }

    /// `x` rounded for AMX ([`amx`]) when this product goes there: enough
    /// rows (see [`Q4K_AMX_MIN_ROWS`]) of a 4- to 6-bit matrix on a CPU that
    /// has it; None otherwise.
    fn amx_rows(&self, x: &Tensor, m: usize) -> Result<Option<amx::Bf16Rows>> {
        let low_bit = matches!(
            self.dtype,
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
        let min_rows = match self.dtype {
            GgmlDType::Q4K if q4k_int8::available() => Q4K_AMX_MIN_ROWS,
            _ => FEW_ROWS + 1,
        };
        if m < min_rows || !low_bit || !amx::available() {
            return Ok(None);
        }
        with_f32_values(x, |x| Ok(amx::Bf16Rows::new(x, m, self.cols)))
    }

    /// `a @ W^T` for weight rows `first..first + n`, on AMX, into `out`
    /// (`[a rows, n]`; every value is written).
    fn amx_product(
        &self,
        a: &amx::Bf16Rows,
        first: usize,
        n: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let weight_row = |j: usize, row: &mut [f32]| self.dequantize_row_into(first + j, row);
        amx::matmul_t(a, n, &weight_row, out)
    }

    /// Rows of `x`, after checking that it has `cols` columns.
    fn input_rows(&self, x: &Tensor) -> Result<usize> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            return Err(candle_core::Error::Msg(format!(
                "matmul: input has {k} columns, matrix {:?}",
                self
            ))
            .into());
        }
        Ok(m)
    }

    /// Many rows: the product written panel by panel into one `[m, rows]` result.
    fn panel_forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = x.dim(0)?;
        let n = self.rows;
        let mut out = vec![0f32; m * n];
        self.forward_panels(x, &mut |first, block| {
            let width = block.len() / m;
            for (dst, src) in out.chunks_exact_mut(n).zip(block.chunks_exact(width)) {
                dst[first..first + width].copy_from_slice(src);
            }
            Ok(())
        })?;
        Ok(Tensor::from_vec(out, (m, n), x.device())?)
    }

    /// Dequantizes a panel of weight rows to f32, multiplies, hands the
    /// `[m, panel]` block to `visit`, repeats.
    pub fn forward_panels(
        &self,
        x: &Tensor,
        visit: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let m = self.input_rows(x)?;
        let panel_rows = (PANEL_FLOATS / self.cols).max(16).min(self.rows);
        // Rounded once for all panels; one product buffer reused.
        let amx_rows = self.amx_rows(x, m)?;
        let mut amx_block = Vec::new();
        let mut scratch = Vec::new();
        for start in (0..self.rows).step_by(panel_rows) {
            let rows = panel_rows.min(self.rows - start);
            if let Some(a) = &amx_rows {
                amx_block.resize(m * rows, 0f32);
                self.amx_product(a, start, rows, &mut amx_block)?;
                visit(start, &amx_block)?;
                continue;
            }
            scratch.resize(rows * self.cols, 0f32);
            for (r, out) in scratch.chunks_exact_mut(self.cols).enumerate() {
                self.dequantize_row_into(start + r, out)?;
            }
            let w = Tensor::from_slice(&scratch, (rows, self.cols), x.device())?;
            let block = x.matmul(&w.t()?)?.flatten_all()?.to_vec1::<f32>()?;
            visit(start, &block)?;
        }
        Ok(())
    }
}

impl WeightRows for MappedMatrix {
    fn row<'a>(&'a self, j: usize, scratch: &'a mut [f32]) -> Result<&'a [f32]> {
        self.dequantize_row_into(j, scratch)?;
        Ok(scratch)
    }
}
