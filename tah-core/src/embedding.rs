//! The token embedding matrix: input rows, soft-embedding mixes and (when
//! tied) the LM head.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::gguf::MappedMatrix;
use crate::weights::Matrix;

/// `embed_tokens` (`[vocab, hidden]`): an f32 matrix on the heap, or a
/// matrix left in a memory-mapped model file, of which only the rows looked
/// up are ever dequantized.
#[derive(Clone, Debug)]
pub struct Embedding {
    weight: Matrix,
    vocab_size: usize,
    hidden_size: usize,
}

impl Embedding {
    pub fn new(weight: Tensor) -> Result<Self> {
        let (vocab_size, hidden_size) = weight.dims2()?;
        Ok(Embedding {
            weight: Matrix::Dense(weight),
            vocab_size,
            hidden_size,
        })
    }

    pub fn mapped(weight: Arc<MappedMatrix>) -> Self {
        Embedding {
            vocab_size: weight.rows(),
            hidden_size: weight.cols(),
            weight: Matrix::Mapped(weight),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Whether the matrix stays in a mapped file (never dequantized whole).
    pub fn is_mapped(&self) -> bool {
        matches!(self.weight, Matrix::Mapped(_))
    }

    /// The rows of `ids` as `[n, hidden]`.
    pub fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.vocab_size
            )));
        }
        match &self.weight {
            Matrix::Dense(w) => {
                let index = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
                Ok(w.index_select(&index, 0)?)
            }
            Matrix::Mapped(m) => m.rows_f32(ids),
        }
    }

    /// Soft embeddings: row i is `sum_j weights[i][j] * embed[ids[i][j]]`, with
    /// `ids` and `weights` given as `[n][k]`.
    pub fn soft_embedding(&self, ids: &[u32], weights: &[f32], k: usize) -> Result<Tensor> {
        let n = weights.len() / k;
        let rows = self.rows(ids)?.reshape((n, k, self.hidden_size))?;
        let weights = Tensor::from_slice(weights, (n, 1, k), &Device::Cpu)?;
        Ok(weights.matmul(&rows)?.reshape((n, self.hidden_size))?)
    }

    /// The tied LM head: logits = h @ embed^T (sharing the weights).
    pub fn as_lm_head(&self) -> Matrix {
        self.weight.clone()
    }
}
