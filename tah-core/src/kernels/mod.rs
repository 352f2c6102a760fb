//! Compute kernels, one folder per architecture behind one place.
//!
//! - [`gpu`]: WGSL kernels and their pipelines on wgpu (Metal on Apple
//!   platforms, Vulkan elsewhere), for the GPU model in `crate::gpu`; the
//!   shader sources are here in every build (the offline shader check).

pub mod gpu;
