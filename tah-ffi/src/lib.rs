//! `tah-ffi`: the TaH runtime for Kotlin and Swift, through uniffi.
//!
//! Thin wrappers only: a [`TahModel`] is loaded once and shared by
//! [`TahSession`]s; a session generates on a worker thread, streaming
//! [`TokenEvent`]s to a [`TokenListener`] and returning a
//! [`GenerationHandle`] that cancels it. Every failure reaches the foreign
//! side as one [`TahError`]; engine panics are caught and become
//! [`TahError::Internal`]. The idiomatic facades (a Kotlin `Flow`, a Swift
//! `AsyncThrowingStream`) live in `bindings/`.

mod diagnostics;
mod error;
mod guard;
mod lifecycle;
mod model;
mod records;
mod session;
mod source;
mod state;

pub use diagnostics::diagnostic_panic;
pub use error::TahError;
pub use lifecycle::{TrimLevel, TrimReport};
pub use model::{Device, KvPrecision, ModelOptions, TahModel};
pub use records::{
    compute_backends, default_generation_config, greedy_generation_config, ChatMessage,
    ComputeBackends, GenerationConfig, GenerationResult, IterationMode, Prompt, Role, Stats,
    StopReason, TokenEvent,
};
pub use session::{GenerationHandle, TahSession, TokenListener};
pub use source::ModelSource;

uniffi::setup_scaffolding!();
