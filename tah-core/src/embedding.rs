//! The token embedding matrix: input rows, soft-embedding mixes and (when
//! tied) the LM head.

use candle_core::quantized::QMatMul;
use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// `embed_tokens` as an f32 `[vocab, hidden]` matrix.
#[derive(Clone, Debug)]
pub struct Embedding {
    weight: Tensor,
    vocab_size: usize,
    hidden_size: usize,
}

impl Embedding {
    pub fn new(weight: Tensor) -> Result<Self> {
        let (vocab_size, hidden_size) = weight.dims2()?;
        Ok(Embedding {
            weight,
            vocab_size,
            hidden_size,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// The rows of `ids` as `[n, hidden]`.
    pub fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.vocab_size
            )));
        }
        let index = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
        Ok(self.weight.index_select(&index, 0)?)
    }

    /// Soft embeddings: row i is `sum_j weights[i][j] * embed[ids[i][j]]`, with
    /// `ids` and `weights` given as `[n][k]`.
    pub fn soft_embedding(&self, ids: &[u32], weights: &[f32], k: usize) -> Result<Tensor> {
        let n = weights.len() / k;
        let rows = self.rows(ids)?.reshape((n, k, self.hidden_size))?;
        let weights = Tensor::from_slice(weights, (n, 1, k), &Device::Cpu)?;
        Ok(weights.matmul(&rows)?.reshape((n, self.hidden_size))?)
    }

    /// The tied LM head: logits = h @ embed^T.
    pub fn as_lm_head(&self) -> Result<QMatMul> {
        Ok(QMatMul::Tensor(self.weight.clone()))
    }
}
