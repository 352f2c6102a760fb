//! The one public error of the SDK, [`TahError`], and how the rich
//! [`tah_core::Error`] (and everything else that can go wrong at the boundary)
//! maps onto it.

use std::any::Any;

/// Why a call into the TaH runtime failed. Every variant carries a
/// human-readable `reason` (the core error's message, file names included).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum TahError {
    /// The model could not be loaded: a missing or unreadable file, a malformed
    /// checkpoint, an inconsistent configuration, a tokenizer or chat template
    /// that failed; or, during a generation, weights that turned out corrupt
    /// (the network produced NaN or infinite values).
    #[error("model load failed: {reason}")]
    ModelLoad { reason: String },
    /// A caller-supplied value is out of range (a load option, a generation
    /// setting...).
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },
    /// The prompt, plus what the session already holds, does not fit in the
    /// context.
    #[error("context overflow: {reason}")]
    ContextOverflow { reason: String },
    /// The session is already generating; wait for it to finish or cancel it.
    #[error("busy: {reason}")]
    Busy { reason: String },
    /// The operation was cancelled.
    #[error("cancelled: {reason}")]
    Cancelled { reason: String },
    /// The GPU could not load or run the model: no GPU (or a library built
    /// without GPU support), a shader its driver refused, a buffer over its
    /// limits, a device lost or hung. Load on the CPU, or with `gpuFallback`.
    #[error("GPU: {reason}")]
    Gpu { reason: String },
    /// A saved session state could not be written or restored: the file is
    /// missing, truncated or corrupted, written by a newer SDK, or saved
    /// with another model or KV settings. The session involved is unchanged.
    #[error("session state: {reason}")]
    SessionState { reason: String },
    /// A bug: an engine panic, a tensor backend failure, or a foreign callback
    /// that failed unexpectedly.
    #[error("internal error: {reason}")]
    Internal { reason: String },
}

impl TahError {
    /// The error a caught panic becomes.
    pub(crate) fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic payload".to_owned());
        TahError::Internal {
            reason: format!("the engine panicked: {message}"),
        }
    }
}

impl From<tah_core::Error> for TahError {
    fn from(error: tah_core::Error) -> Self {
        use tah_core::Error as E;
        let reason = error.to_string();
        match error {
            E::Io { .. }
            | E::MalformedFile { .. }
            | E::Gguf { .. }
            | E::MissingTensor { .. }
            | E::ShapeMismatch { .. }
            | E::UnsupportedDtype { .. }
            | E::InvalidConfig { .. }
            | E::Tokenizer(_)
            | E::ChatTemplate(_)
            | E::NonFiniteOutput { .. } => TahError::ModelLoad { reason },
            E::InvalidArgument(_) => TahError::InvalidArgument { reason },
            E::ContextOverflow { .. } => TahError::ContextOverflow { reason },
            E::Cancelled => TahError::Cancelled { reason },
            E::Gpu(_) => TahError::Gpu { reason },
            E::SessionState { .. } => TahError::SessionState { reason },
            E::Candle(_) => TahError::Internal { reason },
        }
    }
}

/// A foreign callback that throws something other than a [`TahError`].
impl From<uniffi::UnexpectedUniFFICallbackError> for TahError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        TahError::Internal {
            reason: format!("callback failed: {}", error.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_keep_their_message() {
        let core = tah_core::Error::ContextOverflow {
            needed: 10,
            capacity: 8,
        };
        let message = core.to_string();
        assert_eq!(
            TahError::from(core),
            TahError::ContextOverflow { reason: message }
        );
        let err = TahError::from(tah_core::Error::InvalidArgument("top_p 2".into()));
        assert!(matches!(err, TahError::InvalidArgument { reason } if reason.contains("top_p 2")));
    }

    #[test]
    fn panics_become_internal_errors() {
        let payload = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(
            TahError::from_panic(payload),
            TahError::Internal {
                reason: "the engine panicked: boom 1".into()
            }
        );
    }
}
