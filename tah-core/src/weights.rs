//! Where model constructors get their tensors from.
//!
//! Constructors ask for tensors by their Hugging Face checkpoint names through
//! a [`WeightBuilder`] (a prefix over a [`WeightSource`]); each file format
//! implements [`WeightSource`] and maps those names onto its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::gguf::MappedMatrix;

/// A weight matrix `[out, in]` applied as `x @ W^T`.
#[derive(Clone, Debug)]
pub enum Matrix {
    /// An f32 matrix on the heap.
    Dense(Tensor),
    /// A matrix left in a memory-mapped model file (possibly quantized).
    Mapped(Arc<MappedMatrix>),
}

impl Matrix {
    /// `x` is `[n, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Matrix::Dense(w) => crate::kernels::dense::dense_matmul_t(x, w),
            Matrix::Mapped(m) => m.forward(x),
        }
    }

    /// `x @ W^T` delivered as column panels: `visit(first_column, block)`
    /// with `block` the `[n, width]` row-major product with a band of
    /// weight rows. Many-row products with a mapped matrix never hold more
    /// than one panel (the LM head of a long prefill chunk), the others
    /// arrive as a single panel.
    pub fn forward_panels(
        &self,
        x: &Tensor,
        visit: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        match self {
            Matrix::Mapped(m) if x.dim(0)? > crate::kernels::dense::FEW_ROWS => {
                m.forward_panels(x, visit)
            }
            _ => visit(0, &self.forward(x)?.flatten_all()?.to_vec1::<f32>()?),
        }
    }
}

/// A store of named tensors (one checkpoint file, or a GGUF model file).
pub trait WeightSource: Send + Sync {
    /// The file, for error messages.
    fn path(&self) -> &Path;
    fn contains(&self, name: &str) -> bool;
    /// A tensor as f32, checked against `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor>;
    /// A weight matrix `[out, in]` ready for `x @ W^T`; formats that store
    /// quantized matrices return them without dequantizing.
    fn matrix(&self, name: &str, out_dim: usize, in_dim: usize) -> Result<Matrix> {
        Ok(Matrix::Dense(self.tensor(name, &[out_dim, in_dim])?))
    }
}

/// A name prefix over a [`WeightSource`], like candle's `VarBuilder::pp`.
#[derive(Clone)]
pub struct WeightBuilder<'a> {
    source: &'a dyn WeightSource,
    prefix: String,
}

impl<'a> WeightBuilder<'a> {
    /// A builder at the root of `source`.
    pub fn root(source: &'a dyn WeightSource) -> Self {
        WeightBuilder {
            source,
            prefix: String::new(),
        }
    }

    pub fn pp(&self, name: impl std::fmt::Display) -> WeightBuilder<'a> {
        WeightBuilder {
            source: self.source,
            prefix: join(&self.prefix, &name.to_string()),
        }
    }

    pub fn name(&self, name: &str) -> String {
        join(&self.prefix, name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.source.contains(&self.name(name))
    }

    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.source.tensor(&self.name(name), shape)
    }

    pub fn matrix(&self, name: &str, out_dim: usize, in_dim: usize) -> Result<Matrix> {
        self.source.matrix(&self.name(name), out_dim, in_dim)
    }

    pub fn path(&self) -> &Path {
        self.source.path()
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A memory-mapped `.safetensors` file; tensors are converted to f32 straight
/// from the mapping, one at a time (no full copy of the file).
pub struct SafetensorsSource {
    path: PathBuf,
    tensors: MmapedSafetensors,
}

impl SafetensorsSource {
    pub fn open(path: &Path) -> Result<Self> {
        if let Err(e) = std::fs::metadata(path) {
            return Err(Error::io(path, e));
        }
        // SAFETY: the mapping is read-only; like every mmap-based loader we
        // rely on the file not being modified while the model is loaded.
        let tensors = unsafe { MmapedSafetensors::new(path) }
            .map_err(|e| Error::malformed(path, e.to_string()))?;
        Ok(SafetensorsSource {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// Names of every tensor in the file.
    pub fn names(&self) -> Vec<String> {
        self.tensors.tensors().into_iter().map(|(n, _)| n).collect()
    }

    /// The stored shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors
            .get(name)
            .ok()
            .map(|view| view.shape().to_vec())
    }
}

impl WeightSource for SafetensorsSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.get(name).is_ok()
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let view = self.tensors.get(name).map_err(|_| Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        if view.shape() != shape {
            return Err(Error::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        let dtype = format!("{:?}", view.dtype());
        if !matches!(dtype.as_str(), "BF16" | "F16" | "F32") {
            return Err(Error::UnsupportedDtype {
                path: self.path.clone(),
                name: name.to_string(),
                dtype,
            });
        }
        let tensor = view.load(&Device::Cpu)?;
        let tensor = tensor.to_dtype(DType::F32)?;
        check_finite(&tensor, &self.path, name)?;
        Ok(tensor)
    }
}

/// NaN or infinite weights make every output NaN; refuse them at load time.
pub(crate) fn check_finite(tensor: &Tensor, path: &Path, name: &str) -> Result<()> {
    let (storage, layout) = tensor.storage_and_layout();
    let finite = match &*storage {
        candle_core::Storage::Cpu(cpu) => {
            let data = cpu.as_slice::<f32>()?;
            let start = layout.start_offset();
            // A view we cannot address counts as not finite: refuse it.
            data.get(start..start + layout.shape().elem_count())
                .is_some_and(|values| values.iter().all(|x| x.is_finite()))
        }
        _ => true,
    };
    if finite {
        Ok(())
    } else {
        Err(Error::malformed(
            path,
            format!("tensor `{name}` holds NaN or infinite values"),
        ))
    }
}
