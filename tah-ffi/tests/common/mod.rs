//! What the tah-ffi integration tests share: greedy settings, a listener
//! that reports over channels and misbehaves as told, and helpers to run a
//! generation and to wait for a session to be idle.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tah_ffi::{
    greedy_generation_config, GenerationConfig, GenerationResult, Prompt, TahError, TahSession,
    TokenEvent, TokenListener,
};

pub fn greedy(max_new_tokens: u32) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        ..greedy_generation_config()
    }
}

/// What a listener does on token `at`.
#[derive(Clone, Copy)]
pub enum Fault {
    None,
    Fail(u32),
    Panic(u32),
    Block(u32, Duration),
}

/// A listener that records tokens, reports its first token and its outcome
/// over channels, and misbehaves as told.
pub struct Listener {
    fault: Fault,
    pub tokens: Mutex<Vec<u32>>,
    first_token: Mutex<Sender<()>>,
    outcome: Mutex<Sender<Result<GenerationResult, TahError>>>,
}

pub struct Watch {
    first_token: Receiver<()>,
    outcome: Receiver<Result<GenerationResult, TahError>>,
}

impl Watch {
    pub fn outcome(&self) -> Result<GenerationResult, TahError> {
        self.outcome.recv_timeout(Duration::from_secs(120)).unwrap()
    }

    pub fn first_token(&self) {
        self.first_token
            .recv_timeout(Duration::from_secs(120))
            .unwrap();
    }
}

pub fn listener(fault: Fault) -> (Arc<Listener>, Watch) {
    let (first_tx, first_token) = channel();
    let (outcome_tx, outcome) = channel();
    let listener = Listener {
        fault,
        tokens: Mutex::new(Vec::new()),
        first_token: Mutex::new(first_tx),
        outcome: Mutex::new(outcome_tx),
    };
    (
        Arc::new(listener),
        Watch {
            first_token,
            outcome,
        },
    )
}

impl TokenListener for Listener {
    fn on_token(&self, event: TokenEvent) -> Result<(), TahError> {
        self.tokens.lock().unwrap().push(event.token_id);
        if event.index == 0 {
            let _ = self.first_token.lock().unwrap().send(());
        }
        match self.fault {
            Fault::Fail(at) if event.index == at => Err(TahError::InvalidArgument {
                reason: "listener failure on purpose".into(),
            }),
            Fault::Panic(at) if event.index == at => panic!("listener panic on purpose"),
            Fault::Block(at, time) if event.index == at => {
                std::thread::sleep(time);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_complete(&self, result: GenerationResult) -> Result<(), TahError> {
        let _ = self.outcome.lock().unwrap().send(Ok(result));
        Ok(())
    }

    fn on_error(&self, error: TahError) -> Result<(), TahError> {
        let _ = self.outcome.lock().unwrap().send(Err(error));
        Ok(())
    }
}

/// A whole generation of `prompt`; panics on error.
pub fn run(session: &TahSession, prompt: Prompt, config: GenerationConfig) -> GenerationResult {
    let (l, watch) = listener(Fault::None);
    let _handle = session.generate(prompt, config, l).unwrap();
    watch.outcome().unwrap()
}

/// Waits until the worker has given the session back.
pub fn await_idle(session: &TahSession) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(session.cached_tokens(), Err(TahError::Busy { .. })) {
        assert!(Instant::now() < deadline, "session still busy");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `listener` has received `n` tokens.
pub fn await_tokens(listener: &Listener, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while listener.tokens.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "fewer than {n} tokens");
        std::thread::sleep(Duration::from_millis(1));
    }
}
