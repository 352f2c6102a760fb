//! `TahSession` and its generations: each generation runs on its own worker
//! thread and reports to a [`TokenListener`]; a [`GenerationHandle`] cancels it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::error::TahError;
use crate::guard::guarded;
use crate::model::ModelInner;
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
/// several sessions for concurrent generations. A generation that was
/// cancelled (`cancel()`, a closed handle, a stopped Kotlin flow or Swift
/// stream) does not block the next one: a new generation, `reset`,
/// `cachedTokens` or `saveState` waits for it to wind down (within one
/// forward pass). Releasing the session cancels its running generation.
#[derive(uniffi::Object)]
pub struct TahSession {
    inner: Arc<SessionInner>,
}

pub(crate) struct SessionInner {
    model: Arc<ModelInner>,
    slot: Mutex<Slot>,
    /// Signalled whenever a generation gives the engine session back.
    returned: Condvar,
}

/// The engine session, lent to the worker of the running generation.
struct Slot {
    /// `None` while a generation holds it.
    engine: Option<engine::TahSession>,
    /// The generation that holds the engine, or takes it next.
    owner: Option<Owner>,
    next_id: u64,
}

struct Owner {
    id: u64,
    cancel: CancelHandle,
    /// The worker thread, once it holds the engine.
    worker: Option<ThreadId>,
}

/// How long a call waits for a cancelled generation to give the session
/// back: far more than one forward pass, so only a listener that blocks
/// in a callback reaches it.
const WIND_DOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a generation's worker did not get the engine session.
enum Missed {
    /// A newer generation took this one's place (this one had been
    /// cancelled before it started).
    Superseded,
    /// The previous generation did not give the session back in time.
    TimedOut,
}

impl TahSession {
    pub(crate) fn new(model: Arc<ModelInner>, engine: engine::TahSession) -> Self {
        TahSession {
            inner: Arc::new(SessionInner {
                model,
                slot: Mutex::new(Slot {
                    engine: Some(engine),
                    owner: None,
                    next_id: 0,
                }),
                returned: Condvar::new(),
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<SessionInner> {
        &self.inner
    }
}

#[uniffi::export]
impl TahSession {
    /// Starts generating from `prompt` on a worker thread and returns at once.
    /// Tokens, then the result or the error, go to `listener`. Fails at once
    /// with `InvalidArgument` for a bad `config` and with `Busy` while another
    /// generation of this session runs (one that was cancelled is waited for).
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
        self.inner.cancel();
    }

    /// Forgets the conversation (clears the KV cache). `Busy` while generating.
    pub fn reset(&self) -> Result<(), TahError> {
        self.inner.with_engine(|engine| {
            engine.reset();
            Ok(())
        })
    }

    /// Tokens held in the session's KV cache. `Busy` while generating.
    pub fn cached_tokens(&self) -> Result<u64, TahError> {
        self.inner
            .with_engine(|engine| Ok(engine.cached_tokens() as u64))
    }
}

impl Drop for TahSession {
    fn drop(&mut self) {
        self.inner.cancel();
    }
}

fn busy() -> TahError {
    TahError::Busy {
        reason: "this session is already generating".into(),
    }
}

impl TahSession {
    /// Validates, reserves the engine session and starts the worker.
    fn start(
        &self,
        prompt: Prompt,
        config: &GenerationConfig,
        sink: Box<dyn Sink>,
    ) -> Result<GenerationHandle, TahError> {
        let config = config.to_engine()?;
        let cancel = CancelHandle::default();
        let id = self.inner.reserve(&cancel)?;
        let finished = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            inner: Arc::clone(&self.inner),
            id,
            prompt: prompt.into(),
            config,
            cancel: cancel.clone(),
            finished: Arc::clone(&finished),
        };
        let spawned = std::thread::Builder::new()
            .name("tah-generate".into())
            .spawn(move || worker.run(sink));
        if let Err(e) = spawned {
            self.inner.release(id);
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

    pub(crate) fn model(&self) -> &Arc<ModelInner> {
        &self.model
    }

    fn cancel(&self) {
        if let Some(owner) = &self.lock().owner {
            owner.cancel.cancel();
        }
    }

    /// Makes a new generation the next owner of the engine: `Busy` while a
    /// generation that was not cancelled holds or awaits it.
    fn reserve(&self, cancel: &CancelHandle) -> Result<u64, TahError> {
        let mut slot = self.lock();
        if slot
            .owner
            .as_ref()
            .is_some_and(|o| !o.cancel.is_cancelled())
        {
            return Err(busy());
        }
        let id = slot.next_id;
        slot.next_id += 1;
        // A cancelled owner still winding down keeps the engine until it
        // gives it back; one still waiting for it gives up (see `take`).
        slot.owner = Some(Owner {
            id,
            cancel: cancel.clone(),
            worker: None,
        });
        Ok(id)
    }

    /// Gives up the reservation `id` (its worker could not start).
    fn release(&self, id: u64) {
        let mut slot = self.lock();
        if slot.owner.as_ref().is_some_and(|o| o.id == id) {
            slot.owner = None;
        }
        drop(slot);
        self.returned.notify_all();
    }

    /// Waits until generation `id` may take the engine.
    fn take(&self, id: u64) -> Result<engine::TahSession, Missed> {
        let deadline = Instant::now() + WIND_DOWN_TIMEOUT;
        let mut slot = self.lock();
        loop {
            if slot.owner.as_ref().is_none_or(|o| o.id != id) {
                return Err(Missed::Superseded);
            }
            if let Some(engine) = slot.engine.take() {
                if let Some(owner) = slot.owner.as_mut() {
                    owner.worker = Some(std::thread::current().id());
                }
                return Ok(engine);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                slot.owner = None;
                return Err(Missed::TimedOut);
            }
            slot = self
                .returned
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Generation `id` gives the engine back.
    fn give_back(&self, id: u64, engine: engine::TahSession) {
        let mut slot = self.lock();
        slot.engine = Some(engine);
        if slot.owner.as_ref().is_some_and(|o| o.id == id) {
            slot.owner = None;
        }
        drop(slot);
        self.returned.notify_all();
    }

    /// Runs `f` on the idle engine session, waiting for a cancelled
    /// generation to wind down; `Busy` while one that was not cancelled runs.
    pub(crate) fn with_engine<T>(
        &self,
        f: impl FnOnce(&mut engine::TahSession) -> Result<T, TahError>,
    ) -> Result<T, TahError> {
        let deadline = Instant::now() + WIND_DOWN_TIMEOUT;
        let mut slot = self.lock();
        loop {
            match &slot.owner {
                None => break,
                Some(o) if !o.cancel.is_cancelled() => return Err(busy()),
                // A callback of the generation itself would wait for itself.
                Some(o) if o.worker == Some(std::thread::current().id()) => return Err(busy()),
                Some(_) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(busy());
            }
            slot = self
                .returned
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let engine = slot.engine.as_mut().ok_or_else(busy)?;
        guarded(|| f(engine))
    }

    /// Runs `f` on the engine session if it is idle, without waiting.
    pub(crate) fn if_idle<T>(&self, f: impl FnOnce(&mut engine::TahSession) -> T) -> Option<T> {
        let mut slot = self.lock();
        if slot.owner.is_some() {
            return None;
        }
        slot.engine.as_mut().map(f)
    }
}

/// Locks, ignoring poisoning: every critical section here leaves the data
/// consistent, and engine panics are caught before they could poison.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One generation, on its worker thread.
struct Worker {
    inner: Arc<SessionInner>,
    id: u64,
    prompt: engine::Prompt,
    config: engine::GenerationConfig,
    cancel: CancelHandle,
    finished: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, mut sink: Box<dyn Sink>) {
        let mut engine = match self.inner.take(self.id) {
            Ok(engine) => engine,
            Err(Missed::Superseded) => {
                let load_ms = self.inner.model().engine.load_ms();
                let result = engine::GenerationResult::cancelled_before_start(load_ms);
                return self.finish(sink, Ok(result.into()));
            }
            Err(Missed::TimedOut) => {
                let reason = "the previous generation did not stop in time".into();
                return self.finish(sink, Err(TahError::Busy { reason }));
            }
        };
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
        // The model's pool as it is now: `set_threads` between generations
        // takes effect here.
        let outcome = match self.inner.model().pool() {
            Some(pool) => pool.install(generate),
            None => generate(),
        };
        let outcome = match (outcome, listener_error) {
            (Err(e @ TahError::Internal { .. }), _) => {
                // A panic may have left the engine session inconsistent.
                engine = engine::TahSession::new(Arc::clone(&self.inner.model().engine));
                Err(e)
            }
            (_, Some(e)) => Err(TahError::Internal {
                reason: format!("the token listener failed: {e}"),
            }),
            (outcome, None) => outcome.map(GenerationResult::from),
        };
        // Give the session back before reporting, so that the final callback
        // may start the next generation.
        self.inner.give_back(self.id, engine);
        self.finish(sink, outcome);
    }

    fn finish(&self, sink: Box<dyn Sink>, outcome: Result<GenerationResult, TahError>) {
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
