//! Diagnostics for apps and the binding suites.

use crate::error::TahError;
use crate::guard::guarded;

/// Panics inside the runtime on purpose, under the same guard as every other
/// entry point, and returns what the panic became: `TahError.Internal`
/// carrying `message`. For checking, in an app or a test suite, that an
/// engine panic reaches the host as an ordinary exception and never aborts
/// the process. It has no other effect.
///
/// (A diagnostic function rather than a hidden trigger in a real input: no
/// prompt, file or setting can be made to panic on purpose, and the SDK
/// offers no switch that would make one.)
#[uniffi::export]
pub fn diagnostic_panic(message: String) -> Result<(), TahError> {
    guarded(|| -> Result<(), TahError> { panic!("{message}") })
}
