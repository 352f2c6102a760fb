//! `TahSession` and its generations: each generation runs on its own worker
//! thread and reports to a [`TokenListener`]; a [`GenerationHandle`] cancels it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::TahError;
use crate::guard::guarded;
use crate::records::{GenerationConfig, GenerationResult, Prompt, TokenEvent};
use tah_core::session::{self as engine, CancelHandle};

/// Receives the events of one generation, on the generation's worker thread.
/// Exactly one of `on_complete` and `on_error` is called, last.
#[uniffi::export(with_foreign)]
pub trait TokenListener: Send + Sync {
    /// A token was generated. Throwing stops the generation, which then
    /// reports `TahError.Internal` through `on_error`; the session stays
    /// usable.
    fn on_token(&self, event: TokenEvent) -> Result<(), TahError>;
    /// The generation ended normally (including when it was cancelled:
    /// `result.stop_reason` is then `Cancelled`).
    fn on_complete(&self, result: GenerationResult) -> Result<(), TahError>;
    /// The generation failed.
    fn on_error(&self, error: TahError) -> Result<(), TahError>;
}

/// A running generation. Dropping (Swift) or closing (Kotlin) the handle
/// cancels the generation: keep it for as long as you want the output.
#[derive(uniffi::Object)]
pub struct GenerationHandle {
    cancel: CancelHandle,
    finished: Arc<AtomicBool>,
}

#[uniffi::export]
impl GenerationHandle {
    /// Asks the generation to stop; it ends soon after (within one forward
    /// pass) with `StopReason.Cancelled`. Idempotent; no effect once finished.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether the generation has ended (its final callback may still be
    /// running).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

impl Drop for GenerationHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One conversation with a model: its KV cache and settings. A session runs
/// one generation at a time (a second one fails with `TahError.Busy`); use
/// several sessions for concurrent generations. Releasing the session cancels
/// its running generation.
#[derive(uniffi::Object)]
pub struct TahSession {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    model: Arc<tah_core::TahModel>,
    pool: Option<Arc<rayon::ThreadPool>>,
    slot: Mutex<Slot>,
}

/// The engine session, lent to the worker of the running generation.
struct Slot {
    /// `None` while a generation runs.
    engine: Option<engine::TahSession>,
    /// The running (or last) generation's cancel flag.
    cancel: CancelHandle,
}

impl TahSession {
    pub(crate) fn new(
        model: Arc<tah_core::TahModel>,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Self {
        let engine = engine::TahSession::new(Arc::clone(&model));
        TahSession {
            inner: Arc::new(SessionInner {
                model,
                pool,
                slot: Mutex::new(Slot {
                    engine: Some(engine),
                    cancel: CancelHandle::default(),
                }),
            }),
        }
    }
}

#[uniffi::export]
impl TahSession {
    /// Starts generating from `prompt` on a worker thread and returns at once.
    /// Tokens, then the result or the error, go to `listener`. Fails at once
    /// with `InvalidArgument` for a bad `config` and with `Busy` while another
    /// generation of this session runs.
    pub fn generate(
        &self,
        prompt: Prompt,
        config: GenerationConfig,
        listener: Arc<dyn TokenListener>,
    ) -> Result<Arc<GenerationHandle>, TahError> {
        self.start(prompt, &config, Box::new(ListenerSink(listener)))
            .map(Arc::new)
    }

    /// Generates from `prompt` and returns the whole result. Cancelling the
    /// calling coroutine (Kotlin) cancels the generation; in Swift, call
    /// [`TahSession::cancel`] (the Swift facade's `complete` does it on task
    /// cancellation).
    pub async fn complete(
        &self,
        prompt: Prompt,
        config: GenerationConfig,
    ) -> Result<GenerationResult, TahError> {
        let (sender, receiver) = oneshot();
        // Dropped when this future is: a cancelled caller cancels the work.
        let _handle = self.start(prompt, &config, Box::new(sender))?;
        receiver.await
    }

    /// Cancels the running generation, if any.
    pub fn cancel(&self) {
        self.inner.lock().cancel.cancel();
    }

    /// Forgets the conversation (clears the KV cache). `Busy` while generating.
    pub fn reset(&self) -> Result<(), TahError> {
        let mut slot = self.inner.lock();
        let engine = slot.engine.as_mut().ok_or_else(busy)?;
        guarded(|| {
            engine.reset();
            Ok(())
        })
    }

    /// Tokens held in the session's KV cache. `Busy` while generating.
    pub fn cached_tokens(&self) -> Result<u64, TahError> {
        let slot = self.inner.lock();
        let engine = slot.engine.as_ref().ok_or_else(busy)?;
        Ok(engine.cached_tokens() as u64)
    }
}

impl Drop for TahSession {
    fn drop(&mut self) {
        self.inner.lock().cancel.cancel();
    }
}

fn busy() -> TahError {
    TahError::Busy {
        reason: "this session is already generating".into(),
    }
}

impl TahSession {
    /// Validates, borrows the engine session and starts the worker.
    fn start(
        &self,
        prompt: Prompt,
        config: &GenerationConfig,
        sink: Box<dyn Sink>,
    ) -> Result<GenerationHandle, TahError> {
        let config = config.to_engine()?;
        let cancel = CancelHandle::default();
        let engine = {
            let mut slot = self.inner.lock();
            let engine = slot.engine.take().ok_or_else(busy)?;
            slot.cancel = cancel.clone();
            engine
        };
        let finished = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            inner: Arc::clone(&self.inner),
            prompt: prompt.into(),
            config,
            cancel: cancel.clone(),
            finished: Arc::clone(&finished),
        };
        // If the thread cannot start, the closure (and the engine with it) comes back.
        let engine = Arc::new(Mutex::new(Some((engine, sink))));
        let for_thread = Arc::clone(&engine);
        let spawned = std::thread::Builder::new()
            .name("tah-generate".into())
            .spawn(move || {
                let taken = lock(&for_thread).take();
                if let Some((engine, sink)) = taken {
                    worker.run(engine, sink);
                }
            });
        if let Err(e) = spawned {
            if let Some((engine, _)) = lock(&engine).take() {
                self.inner.lock().engine = Some(engine);
            }
            return Err(TahError::Internal {
                reason: format!("cannot start the generation thread: {e}"),
            });
        }
        Ok(GenerationHandle { cancel, finished })
    }
}

impl SessionInner {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        lock(&self.slot)
    }
}

/// Locks, ignoring poisoning: every critical section here leaves the data
/// consistent, and engine panics are caught before they could poison.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One generation, on its worker thread.
struct Worker {
    inner: Arc<SessionInner>,
    prompt: engine::Prompt,
    config: engine::GenerationConfig,
    cancel: CancelHandle,
    finished: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, mut engine: engine::TahSession, mut sink: Box<dyn Sink>) {
        let mut listener_error = None;
        let mut generate = || {
            guarded(|| {
                let mut on_token = |event: &engine::TokenEvent| {
                    if listener_error.is_some() {
                        return;
                    }
                    if let Err(e) = sink.token(event.clone().into()) {
                        listener_error = Some(e);
                        self.cancel.cancel();
                    }
                };
                engine
                    .generate(&self.prompt, &self.config, &self.cancel, &mut on_token)
                    .map_err(TahError::from)
            })
        };
        let outcome = match &self.inner.pool {
            Some(pool) => pool.install(generate),
            None => generate(),
        };
        let outcome = match (outcome, listener_error) {
            (Err(e @ TahError::Internal { .. }), _) => {
                // A panic may have left the engine session inconsistent.
                engine = engine::TahSession::new(Arc::clone(&self.inner.model));
                Err(e)
            }
            (_, Some(e)) => Err(TahError::Internal {
                reason: format!("the token listener failed: {e}"),
            }),
            (outcome, None) => outcome.map(GenerationResult::from),
        };
        // Give the session back before reporting, so that the final callback
        // may start the next generation.
        self.inner.lock().engine = Some(engine);
        self.finished.store(true, Ordering::Release);
        if let Err(e) = guarded(|| {
            sink.finish(outcome);
            Ok(())
        }) {
            log::error!("a generation's final callback failed: {e}");
        }
    }
}

/// Where a worker sends its events.
trait Sink: Send {
    fn token(&mut self, event: TokenEvent) -> Result<(), TahError>;
    fn finish(self: Box<Self>, outcome: Result<GenerationResult, TahError>);
}

struct ListenerSink(Arc<dyn TokenListener>);

impl Sink for ListenerSink {
    fn token(&mut self, event: TokenEvent) -> Result<(), TahError> {
        self.0.on_token(event)
    }

    fn finish(self: Box<Self>, outcome: Result<GenerationResult, TahError>) {
        let reported = match outcome {
            Ok(result) => self.0.on_complete(result),
            Err(error) => self.0.on_error(error),
        };
        if let Err(e) = reported {
            log::warn!("a token listener's final callback failed: {e}");
        }
    }
}

/// The sending half of [`oneshot`]: the worker's result for [`TahSession::complete`].
struct Sender(Arc<Mutex<Shared>>);

/// The receiving half of [`oneshot`].
struct Receiver(Arc<Mutex<Shared>>);

#[derive(Default)]
struct Shared {
    outcome: Option<Result<GenerationResult, TahError>>,
    waker: Option<Waker>,
}

/// A single-use channel whose receiver is a future (uniffi drives it; no
/// async runtime is involved).
fn oneshot() -> (Sender, Receiver) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

impl Sink for Sender {
    fn token(&mut self, _: TokenEvent) -> Result<(), TahError> {
        Ok(())
    }

    fn finish(self: Box<Self>, outcome: Result<GenerationResult, TahError>) {
        let mut shared = lock(&self.0);
        shared.outcome = Some(outcome);
        if let Some(waker) = shared.waker.take() {
            waker.wake();
        }
    }
}

impl Future for Receiver {
    type Output = Result<GenerationResult, TahError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut shared = lock(&self.0);
        match shared.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                shared.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
