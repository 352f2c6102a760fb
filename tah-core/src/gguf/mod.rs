//! The single-file mobile model format: GGUF (llama.cpp's container) holding
//! a quantized Qwen3 under llama.cpp's `qwen3` names, plus the TaH parts
//! (LoRA, decider, settings) under a versioned `tah.` namespace and the
//! tokenizer and chat template, so one memory-mapped file is the whole model.
//!
//! - [`reader`]: strict, bounds-checked parser over a memory map.
//! - [`mapped`]: weight matrices that stay in the mapping (no heap copy);
//!   their products run in [`crate::kernels`].
//! - [`writer`] / [`plan`] / [`convert`]: `tah convert` (HF directory -> GGUF);
//!   [`requantize`]: GGUF -> GGUF at another type.
//! - [`random`]: `tah init-random` (random weights, real shapes, for benchmarks);
//!   [`vocab`]: llama.cpp's tokenizer keys for its plain-Qwen3 twin.
//! - [`load`]: a [`crate::TahModel`] from a GGUF file; [`mapping`]: the
//!   file (or a region of an open file) it is mapped from.
//!
//! Names (the only place they are spelled out is [`names`]):
//! - base: `token_embd.weight`, `output_norm.weight`, `output.weight` (only
//!   when untied), `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
//!   attn_q_norm, attn_k_norm, ffn_norm, ffn_gate, ffn_up, ffn_down}.weight`;
//! - LoRA (llama.cpp's adapter convention): `blk.N.attn_q.weight.lora_a`
//!   (`[r, in]`) and `...lora_b` (`[out, r]`) for every target module;
//! - decider: `tah.decider.<PyTorch state-dict name>`.

pub mod convert;
pub mod load;
pub mod mapped;
pub mod mapping;
pub mod names;
pub mod plan;
pub mod random;
pub mod reader;
pub mod requantize;
pub mod vocab;
pub mod writer;

use candle_core::quantized::GgmlDType;

pub use convert::{convert, ConvertOptions};
pub use mapped::MappedMatrix;
pub use mapping::ModelFile;
pub use plan::{read_embedded_texts, ConvertSummary, PartSize, Quant};
pub use random::{write_random, RandomModelOptions, RandomShape};
pub use reader::GgufFile;

/// `GGUF` in little-endian.
pub const MAGIC: u32 = 0x4655_4747;
/// The GGUF container version written (2 and 3 share the little-endian layout).
pub const VERSION: u32 = 3;
/// The TaH metadata layout written and read (`tah.format_version`).
pub const TAH_FORMAT_VERSION: u32 = 1;
/// GGUF's default data alignment (`general.alignment`).
pub const DEFAULT_ALIGNMENT: usize = 32;

/// A metadata value, as typed in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// GGUF's type id of the value.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// Any non-negative integer value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
}

/// GGML type ids (ggml.h) of the types this runtime reads and writes.
pub fn dtype_from_id(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

pub fn dtype_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// Bytes of `elements` values of `dtype` (whole blocks), None on overflow or
/// when `elements` is not a whole number of blocks.
pub fn byte_size(dtype: GgmlDType, elements: usize) -> Option<usize> {
    if !elements.is_multiple_of(dtype.block_size()) {
        return None;
    }
    (elements / dtype.block_size()).checked_mul(dtype.type_size())
}
