//! A model's life on a phone: giving memory back when the system asks
//! (`onTrimMemory`, memory warnings) and changing the number of compute
//! threads between generations (a hot phone, a background app).

use std::sync::Arc;

use crate::error::TahError;
use crate::guard::guarded;
use crate::model::{compute_pool, TahModel};

/// How much [`TahModel::trim_memory`] gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TrimLevel {
    /// Only what comes back unchanged at no cost but page faults: the KV
    /// caches' unused room, the allocator's free memory (buffers of past
    /// generations) and the mapped weights' resident pages. Android
    /// `TRIM_MEMORY_RUNNING_LOW`, `TRIM_MEMORY_UI_HIDDEN`.
    Moderate,
    /// Also idle sessions' KV entries past their kept prefix (the system
    /// message of their last chat prompt): their next answer recomputes the
    /// conversation's prompt, like a fresh session. Android
    /// `TRIM_MEMORY_RUNNING_CRITICAL` and the background levels, iOS memory
    /// warnings.
    Critical,
}

/// What a trim gave back, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TrimReport {
    /// KV cache memory the idle sessions freed (entries and unused room).
    pub kv_cache_bytes: u64,
    /// Heap memory returned to the system, the freed KV caches' included
    /// (where the platform tells: Linux and Android measure the process's
    /// anonymous memory, Apple's allocator reports it).
    pub heap_bytes: u64,
    /// Mapped weight pages that left the process's resident set (they are
    /// read back from the model file when next used). On Apple platforms
    /// this counts the file's pages in memory, an upper bound.
    pub weight_bytes: u64,
    /// Memory returned to the system: `heap_bytes + weight_bytes`.
    pub total_bytes: u64,
}

#[uniffi::export]
impl TahModel {
    /// Gives back memory that can be rebuilt (see [`TrimLevel`]) and reports
    /// how much. Generations after a trim give the same tokens as they would
    /// have without it (at `Critical`, the same as a fresh session for the
    /// dropped part). Sessions that are generating keep their KV cache.
    /// Blocking for a few milliseconds; safe to call from any thread.
    pub fn trim_memory(&self, level: TrimLevel) -> Result<TrimReport, TahError> {
        guarded(|| {
            let drop_entries = level == TrimLevel::Critical;
            let sessions = self.inner.sessions();
            let (kv_cache_bytes, heap_bytes) = tah_core::memory::release_heap_after(|| {
                sessions
                    .iter()
                    .filter_map(|s| s.if_idle(|engine| engine.trim_cache(drop_entries)))
                    .sum::<usize>()
            });
            let weight_bytes = self.inner.engine.release_weight_pages();
            let bytes = |n: usize| n as u64;
            Ok(TrimReport {
                kv_cache_bytes: bytes(kv_cache_bytes),
                heap_bytes: bytes(heap_bytes),
                weight_bytes: bytes(weight_bytes),
                total_bytes: bytes(heap_bytes + weight_bytes),
            })
        })
    }

    /// Sets the number of compute threads (> 0). Running generations keep
    /// the threads they started with; the next generation uses the new
    /// number. For a phone that reports a serious thermal state, fewer
    /// threads mean less heat and a steadier speed.
    pub fn set_threads(&self, threads: u32) -> Result<(), TahError> {
        guarded(|| {
            if self
                .inner
                .pool()
                .is_some_and(|p| p.current_num_threads() == threads as usize)
            {
                return Ok(());
            }
            self.inner.set_pool(Some(compute_pool(threads)?));
            Ok(())
        })
    }

    /// The number of compute threads the next generation uses.
    pub fn threads(&self) -> u32 {
        let pool: Option<Arc<rayon::ThreadPool>> = self.inner.pool();
        let n = pool.map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}
