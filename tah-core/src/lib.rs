//! `tah-core`: the on-device runtime for Think-at-Hard (TaH) models.
//!
//! A TaH model is a Qwen3 network in which a small decider picks the "hard"
//! tokens; only those take further passes (through the same weights plus a
//! LoRA adapter, fed a soft embedding of the previous pass's top logits),
//! and their logits are added up. See `docs` in the repository README.

mod atomic_file;
pub mod chat_template;
pub mod config;
mod cpu_chunk;
pub mod decider;
pub mod device;
pub mod embedding;
pub mod error;
pub mod eval;
mod fingerprint;
pub mod generation;
pub mod gguf;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod iteration;
pub mod kernels;
pub mod kv_cache;
pub mod load;
pub mod logits;
pub mod memory;
pub mod model;
pub mod sampling;
pub mod session;
mod session_state;
pub mod stream;
pub mod tah_model;
pub mod tokenizer;
pub mod torch_pickle;
pub mod trace;
pub mod weights;

pub use chat_template::{ChatMessage, Role};
pub use device::{ComputeDevice, GpuOptions};
pub use error::{Error, GgufProblem, GpuProblem, Result, StateProblem};
pub use gguf::ModelFile;
pub use iteration::{ChunkOptions, ChunkOutput, IterationMode, IterationPolicy, KeepLogits};
pub use kv_cache::{KvCache, KvPrecision};
pub use logits::TopRequest;
pub use session::{
    CancelHandle, GenerationConfig, GenerationResult, GenerationStats, Prompt, StopReason,
    TahSession, TokenEvent,
};
pub use tah_model::{LoadOptions, TahModel};
