//! The GPU kernels: WGSL compute shaders (`shaders/`) on wgpu, one code base
//! for Metal (iOS) and Vulkan (Android; Mesa's lavapipe in CI).
//!
//! - [`shaders`]: which shader files make each kernel (no GPU needed: the
//!   offline shader check reads them without the `gpu` feature);
//! - `context`: adapter and device, typed errors, buffers, bounded waits;
//! - `pipelines`: building the kernels;
//! - `recorder`: dispatches and copies submitted together, with read-back.

pub mod shaders;

#[cfg(feature = "gpu")]
mod context;
#[cfg(feature = "gpu")]
mod pipelines;
#[cfg(feature = "gpu")]
mod recorder;

#[cfg(feature = "gpu")]
pub use context::adapter_name;
#[cfg(feature = "gpu")]
pub(crate) use context::GpuContext;
#[cfg(feature = "gpu")]
pub(crate) use pipelines::Pipelines;
#[cfg(feature = "gpu")]
pub(crate) use recorder::{grid, params, ParamWord, Params, Recorder, Scratch};
pub use shaders::{vector_words, Access, Kernel, WeightType, MAX_TOPK, TOPK_STATE_WORDS};
