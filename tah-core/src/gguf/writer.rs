//! A streaming GGUF (version 3) writer: the header is written from the
//! tensors' declared types and shapes, then each tensor's data is produced
//! and written one at a time, so converting never holds the whole model.

use std::io::Write;
use std::path::Path;

use candle_core::quantized::GgmlDType;

use super::{byte_size, dtype_id, Value, DEFAULT_ALIGNMENT, MAGIC, VERSION};
use crate::error::{Error, Result};

/// A tensor to write: its data comes later, from the `data` callback.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: GgmlDType,
    /// Row-major, outermost first.
    pub shape: Vec<usize>,
}

impl TensorEntry {
    pub fn byte_size(&self) -> Result<usize> {
        let elements = self
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        elements
            .and_then(|e| byte_size(self.dtype, e))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "tensor `{}` {:?} is not whole {:?} blocks",
                    self.name, self.shape, self.dtype
                ))
            })
    }
}

fn write_string(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_string(w, s),
        Value::Array(items) => {
            // GGUF arrays are homogeneous; an empty one is typed u32.
            let item_type = items.first().map_or(4, Value::type_id);
            w.write_all(&item_type.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| write_value(w, item))
        }
    }
}

fn padding(pos: usize) -> usize {
    pos.next_multiple_of(DEFAULT_ALIGNMENT) - pos
}

/// Writes a GGUF file (`path` names it in errors). `data(i)` returns the
/// bytes of `tensors[i]`, which must be exactly its declared size.
pub fn write_gguf(
    path: &Path,
    w: &mut impl Write,
    metadata: &[(String, Value)],
    tensors: &[TensorEntry],
    mut data: impl FnMut(usize) -> Result<Vec<u8>>,
) -> Result<()> {
    let io = |e| Error::io(path, e);
    let mut header = Vec::new();
    header.extend_from_slice(&MAGIC.to_le_bytes());
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_string(&mut header, key).map_err(io)?;
        header.extend_from_slice(&value.type_id().to_le_bytes());
        write_value(&mut header, value).map_err(io)?;
    }
    let mut offset = 0usize;
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        write_string(&mut header, &t.name).map_err(io)?;
        header.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in t.shape.iter().rev() {
            header.extend_from_slice(&(d as u64).to_le_bytes());
        }
        header.extend_from_slice(&dtype_id(t.dtype).to_le_bytes());
        header.extend_from_slice(&(offset as u64).to_le_bytes());
        let size = t.byte_size()?;
        sizes.push(size);
        offset += size + padding(size);
    }
    header.resize(header.len() + padding(header.len()), 0);
    w.write_all(&header).map_err(io)?;
    for (i, (t, &size)) in tensors.iter().zip(&sizes).enumerate() {
        let bytes = data(i)?;
        if bytes.len() != size {
            return Err(Error::InvalidArgument(format!(
                "tensor `{}`: {} bytes of data, {size} declared",
                t.name,
                bytes.len()
            )));
        }
        w.write_all(&bytes).map_err(io)?;
        w.write_all(&vec![0u8; padding(size)]).map_err(io)?;
    }
    w.flush().map_err(io)
}
