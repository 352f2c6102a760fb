//! The rich internal error of `tah-core`.
//!
//! Every failure a user can provoke (a bad file, a bad argument, a prompt that
//! does not fit) is a variant here, naming the file and the problem. The FFI
//! crate maps these onto its small public `TahError`.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout `tah-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file exists but its content is not what the format requires
    /// (bad JSON, truncated data, wrong magic, a disallowed pickle opcode...).
    #[error("{path}: malformed file: {reason}")]
    MalformedFile { path: PathBuf, reason: String },

    /// A GGUF model file is damaged, hostile or of a version we cannot read.
    #[error("{path}: {problem}")]
    Gguf { path: PathBuf, problem: GgufProblem },

    /// A model file lacks a tensor the architecture needs.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },

    /// A tensor exists but has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    /// A tensor's dtype is not one we can read.
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },

    /// The configuration files are readable but inconsistent or unsupported
    /// (a LoRA target that does not exist, a decider layer out of range...).
    #[error("{path}: invalid configuration: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },

    /// The tokenizer or chat template failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The chat template could not be rendered.
    #[error("chat template: {0}")]
    ChatTemplate(String),

    /// A caller-supplied argument is out of range (token id, sampling
    /// parameter, threshold...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The prompt (plus what is already cached) does not fit in the context.
    #[error("context overflow: {needed} tokens needed, context holds {capacity}")]
    ContextOverflow { needed: usize, capacity: usize },

    /// The network produced a NaN or infinite hidden state or logit: its
    /// weights are corrupt. Quantized GGUF weights are not scanned at load
    /// time (that would read the whole mapping), so this is where such a file
    /// is caught.
    #[error("the model produced NaN or infinite values at position {position} (corrupt weights)")]
    NonFiniteOutput { position: usize },

    /// The operation was cancelled through its handle.
    #[error("cancelled")]
    Cancelled,

    /// The GPU path could not load or run the model: no adapter, a shader
    /// the driver refused, a buffer over the device's limits, a device lost
    /// or hung, or a build without GPU support.
    #[error("GPU: {0}")]
    Gpu(#[from] GpuProblem),

    /// A saved session state could not be written or restored: it is
    /// damaged, of a newer format, or belongs to another model or settings.
    #[error("{path}: session state: {problem}")]
    SessionState {
        path: PathBuf,
        problem: StateProblem,
    },

    /// A tensor operation failed. This indicates a bug (shapes are validated
    /// at load time), but it is still reported rather than panicking.
    #[error("tensor backend: {0}")]
    Candle(#[from] candle_core::Error),
}

/// What is wrong with a GGUF file (see [`Error::Gguf`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufProblem {
    #[error("not a GGUF file (magic {0:#010x})")]
    BadMagic(u32),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("TaH format version {found} is not supported (this runtime reads {supported})")]
    UnsupportedTahVersion { found: u32, supported: u32 },
    #[error("the file ends early (while reading {0})")]
    Truncated(String),
    #[error("the file shrank to {size} bytes after loading ({needed} are mapped); a loaded model's file must not change")]
    ShrankAfterLoad { size: u64, needed: u64 },
    #[error("{0} is too large (corrupt or hostile file)")]
    TooLarge(String),
    #[error("tensor `{0}` lies (partly) past the end of the file")]
    TensorOutOfBounds(String),
    #[error("tensor `{0}` is not aligned for its type")]
    Misaligned(String),
    #[error("tensor `{name}` has GGML type {type_id}, which is not supported")]
    UnsupportedType { name: String, type_id: u32 },
    #[error("metadata `{key}`: {reason}")]
    Metadata { key: String, reason: String },
}

/// What went wrong on the GPU (see [`Error::Gpu`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuProblem {
    #[error("this build has no GPU support (build with the `gpu` feature)")]
    NotCompiled,
    #[error("no GPU adapter{}", .filter.as_ref().map(|f| format!(" matching `{f}`")).unwrap_or_default())]
    NoAdapter { filter: Option<String> },
    #[error("the GPU refused the device request: {0}")]
    DeviceRequest(String),
    #[error("shader `{shader}` failed to build: {reason}")]
    ShaderBuild { shader: String, reason: String },
    #[error("{what} needs {needed} bytes, over the GPU's limit of {limit}")]
    OverLimits {
        what: String,
        needed: u64,
        limit: u64,
    },
    #[error("the model cannot run on the GPU: {0}")]
    Unsupported(String),
    #[error("{0} needs a model on the CPU (this one runs on the GPU)")]
    CpuOnly(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU did not finish within {0:?}")]
    Timeout(Duration),
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    #[error("GPU error: {0}")]
    Internal(String),
}

/// What is wrong with a saved session state (see [`Error::SessionState`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateProblem {
    #[error("not a TaH session state file")]
    NotAStateFile,
    #[error("format version {found} is not supported (this runtime reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("the file ends early (in {0})")]
    Truncated(String),
    #[error("the file is corrupted ({0} fails its checksum)")]
    Corrupted(String),
    #[error("saved with another model ({0})")]
    ForeignModel(String),
    #[error("saved with other settings ({0})")]
    SettingsMismatch(String),
    #[error("inconsistent contents ({0})")]
    Malformed(String),
    #[error("{0}")]
    Io(String),
}

impl Error {
    pub(crate) fn session_state(path: impl Into<PathBuf>, problem: StateProblem) -> Self {
        Error::SessionState {
            path: path.into(),
            problem,
        }
    }

    pub(crate) fn gguf(path: impl Into<PathBuf>, problem: GgufProblem) -> Self {
        Error::Gguf {
            path: path.into(),
            problem,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::MalformedFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
