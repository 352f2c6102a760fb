//! `TahModel`: a loaded checkpoint, shared by any number of sessions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::error::TahError;
use crate::guard::guarded;
use crate::session::{lock, SessionInner, TahSession};
use crate::source::ModelSource;

/// Options for [`TahModel::load`].
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ModelOptions {
    /// Worker threads the model's tensor operations use (`null`/`nil`: one
    /// per core). [`TahModel::set_threads`] changes it later.
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
    pub(crate) inner: Arc<ModelInner>,
}

/// What the model's sessions share with it.
pub(crate) struct ModelInner {
    pub engine: Arc<tah_core::TahModel>,
    /// The compute pool generations start on (None: rayon's global pool,
    /// one thread per core). Replaced by `set_threads`.
    pool: Mutex<Option<Arc<rayon::ThreadPool>>>,
    /// The model's sessions, for memory trims.
    sessions: Mutex<Vec<Weak<SessionInner>>>,
}

impl ModelInner {
    /// The pool the next generation runs on.
    pub fn pool(&self) -> Option<Arc<rayon::ThreadPool>> {
        lock(&self.pool).clone()
    }

    pub fn set_pool(&self, pool: Option<Arc<rayon::ThreadPool>>) {
        *lock(&self.pool) = pool;
    }

    /// The live sessions (dropping the records of released ones).
    pub fn sessions(&self) -> Vec<Arc<SessionInner>> {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.strong_count() > 0);
        sessions.iter().filter_map(Weak::upgrade).collect()
    }

    fn register(&self, session: &Arc<SessionInner>) {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.strong_count() > 0);
        sessions.push(Arc::downgrade(session));
    }
}

/// A pool of `threads` compute threads.
pub(crate) fn compute_pool(threads: u32) -> Result<Arc<rayon::ThreadPool>, TahError> {
    if threads == 0 {
        return Err(TahError::InvalidArgument {
            reason: "threads must be positive".into(),
        });
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .thread_name(|i| format!("tah-compute-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| TahError::Internal {
            reason: format!("cannot start {threads} threads: {e}"),
        })
}

#[uniffi::export]
impl TahModel {
    /// Loads a TaH checkpoint directory (Hugging Face layout: `config.json`,
    /// `model.safetensors`, `tah_config.json`, `iter_decider.bin`, `lora/`...)
    /// or a `.gguf` model file. Blocking: call it off the UI thread.
    #[uniffi::constructor]
    pub fn load(path: String, options: ModelOptions) -> Result<Arc<Self>, TahError> {
        Self::load_from(ModelSource::Path { path }, options)
    }

    /// Loads a model from `source`: a path, or a `.gguf` model inside an
    /// open file (an uncompressed Android asset, through its
    /// `AssetFileDescriptor`), mapped in place. Blocking: call it off the UI
    /// thread.
    #[uniffi::constructor]
    pub fn load_from(source: ModelSource, options: ModelOptions) -> Result<Arc<Self>, TahError> {
        guarded(|| {
            let pool = options.threads.map(compute_pool).transpose()?;
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
            let load = || match source {
                ModelSource::Path { path } => {
                    tah_core::TahModel::load(Path::new(&path), &load_options)
                }
                ModelSource::Fd { fd, offset, length } => {
                    crate::source::model_file(fd, offset, length)
                        .and_then(|file| tah_core::TahModel::load_file(file, &load_options))
                }
            };
            let engine = match &pool {
                Some(pool) => pool.install(load),
                None => load(),
            }
            .map_err(load_error)?;
            Ok(Arc::new(TahModel {
                inner: Arc::new(ModelInner {
                    engine: Arc::new(engine),
                    pool: Mutex::new(pool),
                    sessions: Mutex::new(Vec::new()),
                }),
            }))
        })
    }

    /// A new, empty conversation with this model. Sessions are independent
    /// and may generate concurrently.
    pub fn new_session(&self) -> Arc<TahSession> {
        let engine = tah_core::TahSession::new(Arc::clone(&self.inner.engine));
        Arc::new(self.session_with(engine))
    }

    /// The context length of this model's sessions, in tokens.
    pub fn context_length(&self) -> u32 {
        u32::try_from(self.inner.engine.context_length()).unwrap_or(u32::MAX)
    }

    /// Where the model runs: `cpu`, or `gpu: <adapter> (<backend>)`.
    pub fn device_name(&self) -> String {
        self.inner.engine.device_name()
    }

    /// Why a model asked for on the GPU runs on the CPU (`gpuFallback`).
    pub fn device_notice(&self) -> Option<String> {
        self.inner.engine.device_notice().map(str::to_owned)
    }
}

impl TahModel {
    /// A session holding `engine`, registered with the model.
    pub(crate) fn session_with(&self, engine: tah_core::TahSession) -> TahSession {
        let session = TahSession::new(Arc::clone(&self.inner), engine);
        self.inner.register(session.inner());
        session
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
