//! Where a model runs: the CPU (always available) or, in builds with the
//! `gpu` feature, the GPU through wgpu (Metal on Apple platforms, Vulkan
//! elsewhere). Chosen at load time ([`crate::LoadOptions::device`]).

use std::time::Duration;

#[cfg(doc)]
use crate::error::GpuProblem;
use crate::error::{Error, Result};

/// The device a model's weights, KV caches and passes live on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDevice {
    #[default]
    Cpu,
    /// Needs a build with the `gpu` feature; without it, or without a usable
    /// GPU, loading fails with [`Error::Gpu`] unless
    /// [`GpuOptions::fallback_to_cpu`] is set.
    Gpu,
}

impl std::str::FromStr for ComputeDevice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(ComputeDevice::Cpu),
            "gpu" => Ok(ComputeDevice::Gpu),
            other => Err(Error::InvalidArgument(format!(
                "unknown device `{other}` (cpu, gpu)"
            ))),
        }
    }
}

/// How a model is put on the GPU ([`ComputeDevice::Gpu`]).
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Use only an adapter whose name contains this (case-insensitive);
    /// default: the first hardware GPU, else any adapter (a software one
    /// such as Mesa's lavapipe included).
    pub adapter: Option<String>,
    /// When the GPU cannot run the model (no adapter, a device lost, a
    /// shader the driver refuses, a buffer over its limits), load it on the
    /// CPU instead and say why in [`crate::TahModel::device_notice`] and in
    /// every generation's stats, rather than fail the load.
    pub fallback_to_cpu: bool,
    /// Longest wait for one GPU submission (default 60 s): a device that
    /// takes longer counts as hung and the call fails with
    /// [`GpuProblem::Timeout`].
    pub wait_timeout: Option<Duration>,
    /// Failure injection for tests (see [`GpuTestHooks`]).
    #[doc(hidden)]
    pub test_hooks: GpuTestHooks,
}

/// Forces the GPU path's failure modes and size limits, so tests can check
/// each one on any machine. Not for production use.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct GpuTestHooks {
    /// Treat storage bindings as this small: weights split over more
    /// buffers, or a typed error where one row does not fit.
    pub max_binding_bytes: Option<u64>,
    /// KV cache entries per buffer segment (default: as many as a binding holds).
    pub kv_segment_entries: Option<usize>,
    /// Build one deliberately invalid shader through the real build path.
    pub broken_shader: bool,
    /// Ask the adapter for limits no device has.
    pub impossible_limits: bool,
    /// Destroy the device right after it is created.
    pub lose_device: bool,
}

/// What [`backends`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// Built with the `gpu` feature.
    pub gpu_compiled: bool,
    /// The adapter a GPU model would use (None without the feature, or
    /// when no adapter opens).
    pub gpu_adapter: Option<String>,
}

/// Reports the compute backends of this build. Looking for a GPU adapter
/// (with the `gpu` feature) costs some milliseconds: call it once.
pub fn backends() -> Backends {
    #[cfg(feature = "gpu")]
    let gpu_adapter = crate::kernels::gpu::adapter_name(&GpuOptions::default()).ok();
    #[cfg(not(feature = "gpu"))]
    let gpu_adapter = None;
    Backends {
        gpu_compiled: cfg!(feature = "gpu"),
        gpu_adapter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_follow_the_feature() {
        let found = backends();
        assert_eq!(found.gpu_compiled, cfg!(feature = "gpu"));
        if !found.gpu_compiled {
            assert_eq!(found.gpu_adapter, None);
        }
        assert_eq!("gpu".parse::<ComputeDevice>().unwrap(), ComputeDevice::Gpu);
        assert!("tpu".parse::<ComputeDevice>().is_err());
    }
}
