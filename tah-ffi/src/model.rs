//! `TahModel`: a loaded checkpoint, shared by any number of sessions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::TahError;
use crate::guard::guarded;
use crate::session::TahSession;

/// Options for [`TahModel::load`].
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ModelOptions {
    /// Worker threads the model's tensor operations use (`null`/`nil`: one
    /// per core).
    #[uniffi(default)]
    pub threads: Option<u32>,
    /// Context length of the model's sessions, in tokens (`null`/`nil`: the
    /// model's maximum).
    #[uniffi(default)]
    pub context_length: Option<u32>,
    /// A `tokenizer.json` to use instead of the one in the model directory.
    #[uniffi(default)]
    pub tokenizer_path: Option<String>,
    /// How the KV cache stores keys and values (`null`/`nil`: f16).
    #[uniffi(default)]
    pub kv_precision: Option<KvPrecision>,
    /// Where the model runs (`null`/`nil`: the CPU). The GPU needs a library
    /// built with the `gpu` feature (the Android and iOS builds have it).
    #[uniffi(default)]
    pub device: Option<Device>,
    /// On the GPU: use only an adapter whose name contains this.
    #[uniffi(default)]
    pub gpu_adapter: Option<String>,
    /// On the GPU: when the GPU cannot run the model, load it on the CPU
    /// instead (the reason is in `deviceNotice` and every `Stats`) rather
    /// than fail with `TahError.Gpu`.
    #[uniffi(default)]
    pub gpu_fallback: bool,
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Device {
    Cpu,
    /// Metal on iOS, Vulkan on Android.
    Gpu,
}

impl From<Device> for tah_core::ComputeDevice {
    fn from(d: Device) -> Self {
        match d {
            Device::Cpu => tah_core::ComputeDevice::Cpu,
            Device::Gpu => tah_core::ComputeDevice::Gpu,
        }
    }
}

/// KV cache precision: memory per cached token against exactness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum KvPrecision {
    /// Half precision: half the memory of f32 (the default).
    F16,
    /// Exact: what the reference computes.
    F32,
    /// 8-bit with one scale per head vector: about a quarter of f32.
    Q8,
}

impl From<KvPrecision> for tah_core::KvPrecision {
    fn from(p: KvPrecision) -> Self {
        match p {
            KvPrecision::F16 => tah_core::KvPrecision::F16,
            KvPrecision::F32 => tah_core::KvPrecision::F32,
            KvPrecision::Q8 => tah_core::KvPrecision::Q8,
        }
    }
}

/// A loaded TaH model (weights, decider, tokenizer, chat template). Loading is
/// the expensive part; create sessions from it with [`TahModel::new_session`].
/// The weights stay in memory until the model and all of its sessions are
/// released.
#[derive(uniffi::Object)]
pub struct TahModel {
    engine: Arc<tah_core::TahModel>,
    /// The model's own thread pool when `threads` was given.
    pool: Option<Arc<rayon::ThreadPool>>,
}

#[uniffi::export]
impl TahModel {
    /// Loads a TaH checkpoint directory (Hugging Face layout: `config.json`,
    /// `model.safetensors`, `tah_config.json`, `iter_decider.bin`, `lora/`...).
    /// Blocking: call it off the UI thread.
    #[uniffi::constructor]
    pub fn load(path: String, options: ModelOptions) -> Result<Arc<Self>, TahError> {
        guarded(|| {
            let pool = match options.threads {
                None => None,
                Some(0) => {
                    return Err(TahError::InvalidArgument {
                        reason: "threads must be positive".into(),
                    })
                }
                Some(n) => Some(Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n as usize)
                        .thread_name(|i| format!("tah-compute-{i}"))
                        .build()
                        .map_err(|e| TahError::Internal {
                            reason: format!("cannot start {n} threads: {e}"),
                        })?,
                )),
            };
            let load_options = tah_core::LoadOptions {
                tokenizer: options.tokenizer_path.map(PathBuf::from),
                context_length: options.context_length.map(|n| n as usize),
                kv_precision: options.kv_precision.map(Into::into).unwrap_or_default(),
                device: options.device.map(Into::into).unwrap_or_default(),
                gpu: tah_core::GpuOptions {
                    adapter: options.gpu_adapter,
                    fallback_to_cpu: options.gpu_fallback,
                    ..Default::default()
                },
            };
            let load = || tah_core::TahModel::load(Path::new(&path), &load_options);
            let engine = match &pool {
                Some(pool) => pool.install(load),
                None => load(),
            }
            .map_err(load_error)?;
            Ok(Arc::new(TahModel {
                engine: Arc::new(engine),
                pool,
            }))
        })
    }

    /// A new, empty conversation with this model. Sessions are independent
    /// and may generate concurrently.
    pub fn new_session(&self) -> Arc<TahSession> {
        Arc::new(TahSession::new(Arc::clone(&self.engine), self.pool.clone()))
    }

    /// The context length of this model's sessions, in tokens.
    pub fn context_length(&self) -> u32 {
        u32::try_from(self.engine.context_length()).unwrap_or(u32::MAX)
    }

    /// Where the model runs: `cpu`, or `gpu: <adapter> (<backend>)`.
    pub fn device_name(&self) -> String {
        self.engine.device_name()
    }

    /// Why a model asked for on the GPU runs on the CPU (`gpuFallback`).
    pub fn device_notice(&self) -> Option<String> {
        self.engine.device_notice().map(str::to_owned)
    }
}

/// A bad option is the caller's mistake, a GPU failure the device's;
/// anything else is the checkpoint's.
fn load_error(error: tah_core::Error) -> TahError {
    match error {
        tah_core::Error::InvalidArgument(_) | tah_core::Error::Gpu(_) => error.into(),
        other => TahError::ModelLoad {
            reason: other.to_string(),
        },
    }
}
