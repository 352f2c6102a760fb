//! Saved sessions: a session's state written to a file and restored, for an
//! app killed in the background or restarted.

use std::path::Path;
use std::sync::Arc;

use crate::error::TahError;
use crate::model::TahModel;
use crate::records::ChatMessage;
use crate::session::TahSession;

#[uniffi::export]
impl TahSession {
    /// Restores a session saved with [`TahSession::save_state`] for `model`.
    /// A missing, truncated or corrupted file, one written by a newer
    /// version of the SDK, or one saved with another model or KV settings
    /// fails with `SessionState`; a model on the GPU with `Gpu` (saved
    /// sessions need the model on the CPU). Blocking (reads the file): call
    /// it off the UI thread.
    #[uniffi::constructor]
    pub fn restore(model: Arc<TahModel>, path: String) -> Result<Arc<Self>, TahError> {
        crate::guard::guarded(|| {
            let engine =
                tah_core::TahSession::restore(Arc::clone(&model.inner.engine), Path::new(&path))?;
            Ok(Arc::new(model.session_with(engine)))
        })
    }

    /// Writes the session's state to `path`: the tokens it holds, their KV
    /// entries, the settings they were computed with and the conversation
    /// of the last chat prompt, tied to the model. The file is replaced
    /// atomically (a kill mid-save leaves the previous one). Returns its
    /// size in bytes. `Busy` while generating; `SessionState` if it cannot
    /// be written, `Gpu` for a model on the GPU (the session is unaffected
    /// either way). Blocking: call it off the UI thread.
    pub fn save_state(&self, path: String) -> Result<u64, TahError> {
        self.inner()
            .with_engine(|engine| Ok(engine.save_state(Path::new(&path))?))
    }

    /// The conversation of the last chat prompt and its answer (what a
    /// restored session was saved with). `Busy` while generating.
    pub fn history(&self) -> Result<Vec<ChatMessage>, TahError> {
        self.inner()
            .with_engine(|engine| Ok(engine.history().iter().cloned().map(Into::into).collect()))
    }
}
