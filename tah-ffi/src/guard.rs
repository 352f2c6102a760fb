//! Keeps panics from crossing the boundary.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::TahError;

/// Runs `f`, turning a panic into [`TahError::Internal`].
///
/// Unwind safety: callers either own everything `f` touches, or discard it
/// after a panic (a session's engine state is replaced by a fresh one).
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, TahError>) -> Result<T, TahError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(TahError::from_panic(payload)))
}
