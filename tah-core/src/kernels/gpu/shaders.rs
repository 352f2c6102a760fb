//! The kernels' WGSL: which shader files make each kernel and its bindings.
//! A kernel's source is `common.wgsl` plus its snippets (weight decoding,
//! KV cache encoding) plus the kernel itself; the offline shader check
//! (`shader_sources`, `tests/shaders.rs`) sees exactly what the device gets.
//! Needs no GPU and no `gpu` feature.
//!
//! Every kernel keeps to wgpu's downlevel limits, what a mid-range phone
//! offers: at most 4 storage buffers per stage, 256 invocations per
//! workgroup, 16 KiB of workgroup memory (the largest use is 8.5 KiB), no
//! optional features (no f16 arithmetic, no subgroups).

use candle_core::quantized::GgmlDType;

use crate::kv_cache::KvPrecision;

macro_rules! shader {
    ($name:literal) => {
        include_str!(concat!("shaders/", $name, ".wgsl"))
    };
}

const COMMON: &str = shader!("common");
const WEIGHTS: &str = shader!("weights");
const TOPK: &str = shader!("topk_common");
const WORKGROUP_REDUCE: &str = shader!("workgroup_reduce");

/// Words of one row's top-k state (`topk_common.wgsl`).
pub const TOPK_STATE_WORDS: usize = 264;
/// Most entries a top-k kernel sorts.
pub const MAX_TOPK: usize = 1024;

/// How a weight matrix is stored on the GPU: the GGUF block types the
/// converter writes (plus the f32 of directory checkpoints), uploaded as
/// they are in the file and dequantized in the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightType {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Q5_0,
    Q4K,
    Q6K,
}

impl WeightType {
    pub const ALL: [WeightType; 8] = [
        WeightType::F32,
        WeightType::F16,
        WeightType::Bf16,
        WeightType::Q8_0,
        WeightType::Q4_0,
        WeightType::Q5_0,
        WeightType::Q4K,
        WeightType::Q6K,
    ];

    pub fn of(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::F32 => WeightType::F32,
            GgmlDType::F16 => WeightType::F16,
            GgmlDType::BF16 => WeightType::Bf16,
            GgmlDType::Q8_0 => WeightType::Q8_0,
            GgmlDType::Q4_0 => WeightType::Q4_0,
            GgmlDType::Q5_0 => WeightType::Q5_0,
            GgmlDType::Q4K => WeightType::Q4K,
            GgmlDType::Q6K => WeightType::Q6K,
            _ => return None,
        })
    }

    /// Values per block; a row is a whole number of blocks.
    pub fn block_values(self) -> usize {
        match self {
            WeightType::F32 | WeightType::F16 | WeightType::Bf16 => 1,
            WeightType::Q8_0 | WeightType::Q4_0 | WeightType::Q5_0 => 32,
            WeightType::Q4K | WeightType::Q6K => 256,
        }
    }

    /// `weight_value` for this type.
    fn source(self) -> &'static str {
        match self {
            WeightType::F32 => shader!("weight_f32"),
            WeightType::F16 => shader!("weight_f16"),
            WeightType::Bf16 => shader!("weight_bf16"),
            WeightType::Q8_0 => shader!("weight_q8_0"),
            WeightType::Q4_0 => shader!("weight_q4_0"),
            WeightType::Q5_0 => shader!("weight_q5_0"),
            WeightType::Q4K => shader!("weight_q4_k"),
            WeightType::Q6K => shader!("weight_q6_k"),
        }
    }

    /// `weight_dot` for this type (needs the kernel's `x`).
    fn dot_source(self) -> &'static str {
        match self {
            WeightType::F32 => shader!("dot_f32"),
            WeightType::F16 => shader!("dot_f16"),
            WeightType::Bf16 => shader!("dot_bf16"),
            WeightType::Q8_0 => shader!("dot_q8_0"),
            WeightType::Q4_0 => shader!("dot_q4_0"),
            WeightType::Q5_0 => shader!("dot_q5_0"),
            WeightType::Q4K => shader!("dot_q4_k"),
            WeightType::Q6K => shader!("dot_q6_k"),
        }
    }
}

/// Words per K or V vector of `head_dim` values in a KV cache of `precision`.
pub fn vector_words(precision: KvPrecision, head_dim: usize) -> usize {
    match precision {
        KvPrecision::F32 => head_dim,
        KvPrecision::F16 => head_dim.div_ceil(2),
        KvPrecision::Q8 => 1 + head_dim.div_ceil(4),
    }
}

fn kv_sources(precision: KvPrecision) -> (&'static str, &'static str) {
    match precision {
        KvPrecision::F32 => (shader!("kv_read_f32"), shader!("kv_encode_f32")),
        KvPrecision::F16 => (shader!("kv_read_f16"), shader!("kv_encode_f16")),
        KvPrecision::Q8 => (shader!("kv_read_q8"), shader!("kv_encode_q8")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    RmsNorm,
    QkNormRope,
    LayerNorm,
    SiluMul,
    Gelu,
    AddBias,
    CopyRows,
    SoftmaxRows,
    CheckFinite,
    Fill,
    AttendFinish,
    TopkHistogram,
    TopkSelect,
    TopkGather,
    TopkSort,
    Penalize,
    KvAppend(KvPrecision),
    Attend(KvPrecision),
    MatmulVec(WeightType),
    MatmulTiled(WeightType),
    EmbedRows(WeightType),
    SoftEmbed(WeightType),
}

/// How a kernel uses a storage binding (bindings 1.., in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

use Access::{Read as R, Write as W};

impl Kernel {
    /// Every kernel a model with these weight types and KV precision uses.
    pub fn needed(weights: &[WeightType], precision: KvPrecision) -> Vec<Kernel> {
        let mut kernels = vec![
            Kernel::RmsNorm,
            Kernel::QkNormRope,
            Kernel::LayerNorm,
            Kernel::SiluMul,
            Kernel::Gelu,
            Kernel::AddBias,
            Kernel::CopyRows,
            Kernel::SoftmaxRows,
            Kernel::CheckFinite,
            Kernel::Fill,
            Kernel::AttendFinish,
            Kernel::TopkHistogram,
            Kernel::TopkSelect,
            Kernel::TopkGather,
            Kernel::TopkSort,
            Kernel::Penalize,
            Kernel::KvAppend(precision),
            Kernel::Attend(precision),
        ];
        for &w in weights {
            kernels.extend([
                Kernel::MatmulVec(w),
                Kernel::MatmulTiled(w),
                Kernel::EmbedRows(w),
                Kernel::SoftEmbed(w),
            ]);
        }
        kernels
    }

    /// Every kernel of every variant (the offline shader check).
    pub fn all() -> Vec<Kernel> {
        let mut kernels = Vec::new();
        for precision in [KvPrecision::F32, KvPrecision::F16, KvPrecision::Q8] {
            for k in Kernel::needed(&WeightType::ALL, precision) {
                if !kernels.contains(&k) {
                    kernels.push(k);
                }
            }
        }
        kernels
    }

    pub fn name(self) -> String {
        format!("{self:?}")
    }

    pub fn bindings(self) -> &'static [Access] {
        match self {
            Kernel::RmsNorm | Kernel::LayerNorm => &[R, R, W],
            Kernel::QkNormRope => &[W, R, R],
            Kernel::SiluMul | Kernel::AddBias | Kernel::Penalize => &[W, R],
            Kernel::Gelu | Kernel::SoftmaxRows | Kernel::Fill | Kernel::TopkSelect => &[W],
            Kernel::CopyRows | Kernel::CheckFinite | Kernel::AttendFinish | Kernel::TopkSort => {
                &[R, W]
            }
            Kernel::TopkHistogram | Kernel::KvAppend(_) | Kernel::EmbedRows(_) => &[R, R, W],
            Kernel::Attend(_) => &[R, R, R, W],
            Kernel::TopkGather => &[R, R, W, W],
            Kernel::MatmulVec(_) | Kernel::MatmulTiled(_) => &[R, R, W, R],
            Kernel::SoftEmbed(_) => &[R, R, R, W],
        }
    }

    /// The WGSL module: `common.wgsl`, snippets, the kernel.
    pub fn source(self) -> String {
        let parts: Vec<&str> = match self {
            Kernel::RmsNorm => vec![WORKGROUP_REDUCE, shader!("rms_norm")],
            Kernel::QkNormRope => vec![WORKGROUP_REDUCE, shader!("qk_norm_rope")],
            Kernel::LayerNorm => vec![WORKGROUP_REDUCE, shader!("layer_norm")],
            Kernel::SiluMul => vec![shader!("silu_mul")],
            Kernel::Gelu => vec![shader!("gelu")],
            Kernel::AddBias => vec![shader!("add_bias")],
            Kernel::CopyRows => vec![shader!("copy_rows")],
            Kernel::SoftmaxRows => vec![WORKGROUP_REDUCE, shader!("softmax_rows")],
            Kernel::CheckFinite => vec![shader!("check_finite")],
            Kernel::Fill => vec![shader!("fill")],
            Kernel::AttendFinish => vec![shader!("attend_finish")],
            Kernel::TopkHistogram => vec![TOPK, shader!("topk_histogram")],
            Kernel::TopkSelect => vec![TOPK, shader!("topk_select")],
            Kernel::TopkGather => vec![TOPK, shader!("topk_gather")],
            Kernel::TopkSort => vec![TOPK, shader!("topk_sort")],
            Kernel::Penalize => vec![shader!("penalize")],
            Kernel::KvAppend(p) => vec![kv_sources(p).1, shader!("kv_append")],
            Kernel::Attend(p) => vec![kv_sources(p).0, shader!("attend")],
            Kernel::MatmulVec(w) => {
                vec![WEIGHTS, w.source(), w.dot_source(), shader!("matmul_vec")]
            }
            Kernel::MatmulTiled(w) => vec![WEIGHTS, w.source(), shader!("matmul_tiled")],
            Kernel::EmbedRows(w) => vec![WEIGHTS, w.source(), shader!("embed_rows")],
            Kernel::SoftEmbed(w) => vec![WEIGHTS, w.source(), shader!("soft_embed")],
        };
        let mut source = String::from(COMMON);
        for part in parts {
            source.push('\n');
            source.push_str(part);
        }
        source
    }
}
