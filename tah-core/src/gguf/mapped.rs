//! Weight matrices that stay in the file's memory map.
//!
//! A [`MappedMatrix`] is where a tensor's blocks lie in the mapping; its
//! products run straight on those bytes through [`crate::kernels`] (no heap
//! copy of the weights, so only the pages actually read become resident).
//! Embedding rows are dequantized one row at a time.

use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::kernels::dense::with_f32_values;
use crate::kernels::QuantMatrix;

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

impl MappedMatrix {
    /// The `len` bytes at `offset` of `mmap` as a matrix of `shape` (the last
    /// dimension is the row length); None when the bytes cannot be viewed as
    /// blocks of `dtype` (length or alignment). The caller checked that the
    /// range lies inside the mapping.
    pub(crate) fn new(
        mmap: Arc<Mmap>,
        offset: usize,
        len: usize,
        dtype: GgmlDType,
        shape: &[usize],
    ) -> Option<Self> {
        let cols = shape.last().copied().unwrap_or(1);
        let rows = shape.iter().rev().skip(1).product();
        let matrix = MappedMatrix {
            mmap,
            offset,
            len,
            dtype,
            rows,
            cols,
        };
        let bytes = matrix.mmap.get(offset..offset.checked_add(len)?)?;
        crate::kernels::check_block_layout(dtype, bytes).ok()?;
        Some(matrix)
    }

    /// The matrix as stored in the file (whole blocks, row after row).
    pub(crate) fn bytes(&self) -> &[u8] {
        // In bounds: checked in `new`.
        &self.mmap[self.offset..self.offset + self.len]
    }

    /// The blocks, for the kernels.
    pub fn view(&self) -> QuantMatrix<'_> {
        QuantMatrix {
            dtype: self.dtype,
            bytes: self.bytes(),
            rows: self.rows,
            cols: self.cols,
        }
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

    /// Drops this matrix's pages from the process's resident set, for a
    /// tensor copied to the heap at load time whose mapped bytes would
    /// otherwise count twice. Touching them again re-reads them from the file.
    pub(crate) fn release_pages(&self) {
        super::mapping::release_range(&self.mmap, self.offset, self.len);
    }

    /// Every element as f32 (for the small tensors: norms, LoRA, decider).
    pub fn dequantize_all(&self) -> Result<Vec<f32>> {
        self.view().dequantize_all()
    }

    /// Rows `ids` as `[ids.len(), cols]`, dequantizing only those rows.
    pub fn rows_f32(&self, ids: &[u32]) -> Result<Tensor> {
        let mut out = vec![0f32; ids.len() * self.cols];
        let view = self.view();
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            if id as usize >= self.rows {
                return Err(Error::InvalidArgument(format!(
                    "row {id} is outside the matrix ({} rows)",
                    self.rows
                )));
            }
            view.dequantize_row_into(id as usize, dst)?;
        }
        Ok(Tensor::from_vec(out, (ids.len(), self.cols), &Device::Cpu)?)
    }

    /// Rows of `x`, after checking that it has `cols` columns.
    fn input_rows(&self, x: &Tensor) -> Result<usize> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            return Err(candle_core::Error::Msg(format!(
                "matmul: input has {k} columns, matrix {self:?}"
            ))
            .into());
        }
        Ok(m)
    }

    /// `x @ W^T` for `x` of shape `[m, cols]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = self.input_rows(x)?;
        let product = with_f32_values(x, |lhs| self.view().matmul_t(lhs, m))?;
        Ok(Tensor::from_vec(product, (m, self.rows), x.device())?)
    }

    /// `x @ W^T` a panel of weight rows at a time: each `[m, panel]` block is
    /// handed to `visit` with its first column (so an LM head over many
    /// rows never holds all its logits at once). The input is prepared once.
    pub fn forward_panels(
        &self,
        x: &Tensor,
        visit: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let m = self.input_rows(x)?;
        // Weight rows per panel: 1 MiB of them as f32 (what the portable
        // path dequantizes at a time).
        let panel_rows = ((1 << 18) / self.cols.max(1)).max(16).min(self.rows).max(1);
        with_f32_values(x, |lhs| {
            let view = self.view();
            let product = view.product(lhs, m, crate::kernels::tier())?;
            let mut block = Vec::new();
            for start in (0..self.rows).step_by(panel_rows) {
                let rows = panel_rows.min(self.rows - start);
                block.resize(m * rows, 0f32);
                product.columns(start, rows, &mut block)?;
                visit(start, &block)?;
            }
            Ok(())
        })
    }
}
