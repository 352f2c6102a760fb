//! A strict GGUF parser over a memory map. Every length, count and offset in
//! the header is checked against the file before it is used, so a truncated
//! or hostile file gives an [`Error::Gguf`], never a panic, a huge
//! allocation or a read outside the mapping. Tensor data is not read here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};

use super::mapped::MappedMatrix;
use super::mapping::{Mapping, ModelFile};
use super::names::{self, keys};
use super::{byte_size, dtype_from_id, Value, DEFAULT_ALIGNMENT, MAGIC};
use crate::error::{Error, GgufProblem, Result};
use crate::weights::{check_finite, Matrix, WeightSource};

/// GGML supports at most four dimensions.
const MAX_DIMS: usize = 4;
/// Arrays of arrays are legal GGUF but no model needs deep nesting; the
/// limit keeps a hostile file from recursing the parser into a stack overflow.
const MAX_ARRAY_DEPTH: usize = 2;

/// Where one tensor's data lies in the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub dtype: GgmlDType,
    /// Row-major, outermost first (GGUF stores the dimensions reversed).
    pub shape: Vec<usize>,
    /// Absolute byte offset in the file.
    pub offset: usize,
    pub len: usize,
}

/// An open GGUF file: its metadata and tensor index over a read-only mapping.
pub struct GgufFile {
    path: PathBuf,
    mapping: Arc<Mapping>,
    /// Bytes before the tensor data: header, metadata and tensor index.
    header_len: usize,
    metadata: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
}

/// A bounds-checked little-endian reader over the header.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, problem: GgufProblem) -> Error {
        Error::gguf(self.path, problem)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.err(GgufProblem::Truncated(what.to_string())))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items that each take at least `min_item_bytes` of the
    /// file: a count the rest of the file cannot hold is rejected up front.
    fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining / min_item_bytes.max(1) as u64 {
            return Err(self.err(GgufProblem::TooLarge(format!("{what} ({n})"))));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(what, 1)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            self.err(GgufProblem::Metadata {
                key: what.to_string(),
                reason: "string is not UTF-8".into(),
            })
        })
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<Value> {
        Ok(match type_id {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(i8::from_le_bytes(self.array(key)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.metadata_err(key, format!("bool byte {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.metadata_err(key, "arrays nested too deeply".into()));
                }
                let item_type = self.u32(key)?;
                let n = self.count(key, 1)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            t => return Err(self.metadata_err(key, format!("unknown value type {t}"))),
        })
    }

    fn metadata_err(&self, key: &str, reason: String) -> Error {
        self.err(GgufProblem::Metadata {
            key: key.to_string(),
            reason,
        })
    }
}

impl GgufFile {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_file(ModelFile::open(path)?)
    }

    /// Maps and parses a model file or a region of one.
    pub fn open_file(file: ModelFile) -> Result<Self> {
        let path = file.label().to_path_buf();
        Self::parse(&path, Arc::new(file.map()?))
    }

    fn parse(path: &Path, mapping: Arc<Mapping>) -> Result<Self> {
        let bytes = mapping.bytes();
        let mut c = Cursor {
            bytes,
            pos: 0,
            path,
        };
        let magic = c.u32("the magic")?;
        if magic != MAGIC {
            return Err(c.err(GgufProblem::BadMagic(magic)));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(GgufProblem::UnsupportedVersion(version)));
        }
        // A tensor info takes at least 8 + 4 + 4 + 8 bytes, a key-value 8 + 4 + 1.
        let n_tensors = c.count("the tensor count", 24)?;
        let n_kv = c.count("the metadata count", 13)?;
        let mut metadata = HashMap::new();
        for _ in 0..n_kv {
            let key = c.string("a metadata key")?;
            let type_id = c.u32(&key)?;
            let value = c.value(type_id, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(c.metadata_err(&key, "key appears twice".into()));
            }
        }
        let mut infos = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let n_dims = c.u32(&name)? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.err(GgufProblem::TooLarge(format!(
                    "tensor `{name}` rank ({n_dims})"
                ))));
            }
            let mut shape = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                shape.push(c.u64(&name)?);
            }
            shape.reverse();
            let type_id = c.u32(&name)?;
            let offset = c.u64(&name)?;
            infos.push((name, shape, type_id, offset));
        }
        let alignment = match metadata.get(keys::ALIGNMENT) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= 1 << 16)
                .map(|a| a as usize)
                .ok_or_else(|| {
                    c.metadata_err(keys::ALIGNMENT, "must be a power of two <= 65536".into())
                })?,
        };
        let data_start = c.pos.next_multiple_of(alignment);
        let mut tensors = HashMap::new();
        for (name, shape, type_id, offset) in infos {
            let info = tensor_info(path, &name, shape, type_id, offset, data_start, bytes.len())?;
            if tensors.insert(name.clone(), info).is_some() {
                return Err(c.metadata_err(&name, "tensor name appears twice".into()));
            }
        }
        let header_len = data_start.min(bytes.len());
        Ok(GgufFile {
            path: path.to_path_buf(),
            mapping,
            header_len,
            metadata,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.metadata
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The raw bytes of a tensor (for tools that copy or inspect files).
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        // In bounds: the parser checked offset + len against the file.
        let info = self.tensors.get(name)?;
        Some(&self.mapping.bytes()[info.offset..info.offset + info.len])
    }

    /// The mapped bytes, which outlive this parsed view.
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.mapping
    }

    /// Bytes before the tensor data (header, metadata, tensor index).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    fn info_checked(&self, name: &str, shape: &[usize]) -> Result<&TensorInfo> {
        let info = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        if info.shape != shape {
            return Err(Error::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: info.shape.clone(),
            });
        }
        Ok(info)
    }

    /// A `[rows, cols]` matrix left in the mapping.
    pub fn mapped(&self, name: &str, rows: usize, cols: usize) -> Result<MappedMatrix> {
        let info = self.info_checked(name, &[rows, cols])?;
        self.matrix_at(name, info)
    }

    /// The tensor `info` (named `name`) viewed in place.
    fn matrix_at(&self, name: &str, info: &TensorInfo) -> Result<MappedMatrix> {
        MappedMatrix::new(
            Arc::clone(self.mapping.mmap()),
            info.offset,
            info.len,
            info.dtype,
            &info.shape,
        )
        .ok_or_else(|| Error::gguf(&self.path, GgufProblem::Misaligned(name.to_string())))
    }

    pub(crate) fn metadata_error(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::gguf(
            &self.path,
            GgufProblem::Metadata {
                key: key.to_string(),
                reason: reason.into(),
            },
        )
    }

    pub(crate) fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .ok_or_else(|| self.metadata_error(key, "missing"))
    }

    pub(crate) fn get_usize(&self, key: &str) -> Result<usize> {
        self.get(key)?
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| self.metadata_error(key, "not a non-negative integer"))
    }

    pub(crate) fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)?
            .as_f64()
            .ok_or_else(|| self.metadata_error(key, "not a number"))
    }

    pub(crate) fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            _ => Err(self.metadata_error(key, "not a string")),
        }
    }

    pub(crate) fn get_usizes(&self, key: &str) -> Result<Vec<usize>> {
        match self.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_u64().and_then(|v| usize::try_from(v).ok()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.metadata_error(key, "not a list of non-negative integers")),
            _ => Err(self.metadata_error(key, "not an array")),
        }
    }
}

/// Validates one tensor's header entry against the file.
fn tensor_info(
    path: &Path,
    name: &str,
    shape: Vec<u64>,
    type_id: u32,
    offset: u64,
    data_start: usize,
    file_len: usize,
) -> Result<TensorInfo> {
    let too_large = || Error::gguf(path, GgufProblem::TooLarge(format!("tensor `{name}`")));
    let dtype = dtype_from_id(type_id).ok_or_else(|| {
        Error::gguf(
            path,
            GgufProblem::UnsupportedType {
                name: name.to_string(),
                type_id,
            },
        )
    })?;
    let shape = shape
        .into_iter()
        .map(|d| usize::try_from(d).ok().filter(|&d| d > 0))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(too_large)?;
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_large)?;
    // Blocks run along rows: the row length must be whole blocks.
    let row = shape[shape.len() - 1];
    if !row.is_multiple_of(dtype.block_size()) {
        return Err(Error::gguf(
            path,
            GgufProblem::Metadata {
                key: name.to_string(),
                reason: format!("row length {row} is not a multiple of {dtype:?} blocks"),
            },
        ));
    }
    let len = byte_size(dtype, elements).ok_or_else(too_large)?;
    let offset = usize::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(data_start))
        .ok_or_else(|| Error::gguf(path, GgufProblem::TensorOutOfBounds(name.to_string())))?;
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(Error::gguf(
            path,
            GgufProblem::TensorOutOfBounds(name.to_string()),
        ));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        offset,
        len,
    })
}

/// A GGUF file as a [`WeightSource`]: Hugging Face names are translated by
/// [`names::to_gguf`]; matrices stay in the mapping.
pub struct GgufSource {
    pub file: Arc<GgufFile>,
}

impl GgufSource {
    fn name(&self, hf: &str) -> Result<String> {
        names::to_gguf(hf).ok_or_else(|| Error::MissingTensor {
            path: self.file.path.clone(),
            name: hf.to_string(),
        })
    }
}

impl WeightSource for GgufSource {
    fn path(&self) -> &Path {
        &self.file.path
    }

    fn contains(&self, name: &str) -> bool {
        names::to_gguf(name).is_some_and(|n| self.file.tensors.contains_key(&n))
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let gguf_name = self.name(name)?;
        let info = self.file.info_checked(&gguf_name, shape)?;
        let matrix = self.file.matrix_at(&gguf_name, info)?;
        let data = matrix.dequantize_all()?;
        let tensor = Tensor::from_vec(data, shape, &Device::Cpu)?;
        check_finite(&tensor, &self.file.path, &gguf_name)?;
        matrix.release_pages();
        Ok(tensor)
    }

    fn matrix(&self, name: &str, out_dim: usize, in_dim: usize) -> Result<Matrix> {
        let gguf_name = self.name(name)?;
        Ok(Matrix::Mapped(Arc::new(
            self.file.mapped(&gguf_name, out_dim, in_dim)?,
        )))
    }
}
