//! Which compute backends this build has, and which one the model uses.
//!
//! The model runs on the CPU, always: its hot path (weights multiplied
//! straight from the mapped GGUF blocks, the KV cache, the iteration loop)
//! has CPU kernels only. The `metal` feature compiles candle's Metal backend
//! in (for Apple builds), so that [`backends`] can report whether a Metal
//! device opens on the phone; no tensor runs on it yet.

use candle_core::Device;

/// What [`backends`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backends {
    /// The device the model's tensors live on.
    pub model_device: &'static str,
    /// Built with the `metal` feature.
    pub metal_compiled: bool,
    /// A Metal device could be opened (never tried without the feature).
    pub metal_device_available: bool,
}

/// Reports the compute backends of this build. Opening the Metal device
/// (with the `metal` feature) costs a few milliseconds: call it once.
pub fn backends() -> Backends {
    let metal_compiled = cfg!(feature = "metal");
    Backends {
        model_device: "cpu",
        metal_compiled,
        metal_device_available: metal_compiled && Device::new_metal(0).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_runs_on_the_cpu_and_metal_follows_the_feature() {
        let found = backends();
        assert_eq!(found.model_device, "cpu");
        assert_eq!(found.metal_compiled, cfg!(feature = "metal"));
        if !found.metal_compiled {
            assert!(!found.metal_device_available);
        }
    }
}
