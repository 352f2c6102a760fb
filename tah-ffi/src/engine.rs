//! INTERIM stand-in for `tah_core::session` (issue #5, phase 1).
//!
//! The session layer of `tah-core` is being written on another branch; this
//! module mirrors its announced API (same names and shapes) so that the FFI
//! wrappers around it stay unchanged when it lands: this file is then deleted
//! and `use crate::engine` becomes `use tah_core::session`. It is deliberately
//! minimal: greedy decoding only (a sampling temperature is rejected), no KV
//! prefix reuse across turns, no conversation history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tah_core::chat_template::ChatMessage;
use tah_core::logits::argmax;
use tah_core::tokenizer::StreamDecoder;
use tah_core::{
    ChunkOptions, Error, IterationMode, IterationPolicy, KeepLogits, KvCache, Result, TahModel,
};

/// Generation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub seed: Option<u64>,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub enable_thinking: bool,
    pub mode: IterationMode,
    pub threshold: Option<f32>,
    pub hard_token_budget: Option<u32>,
    pub prefill_chunk: usize,
}

impl Default for GenerationConfig {
    /// Qwen3's recommended thinking-mode settings.
    fn default() -> Self {
        GenerationConfig {
            temperature: 0.6,
            top_k: 20,
            top_p: 0.95,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: None,
            max_new_tokens: 2048,
            stop: Vec::new(),
            enable_thinking: true,
            mode: IterationMode::Decider,
            threshold: None,
            hard_token_budget: None,
            prefill_chunk: 512,
        }
    }
}

impl GenerationConfig {
    /// Deterministic argmax decoding.
    pub fn greedy() -> Self {
        GenerationConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if self.temperature != 0.0 {
            return bad(format!(
                "temperature {} is not supported yet (only greedy decoding, temperature 0)",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} is outside (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p {} is outside [0, 1]", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty {} must be positive",
                self.repetition_penalty
            ));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be positive".into());
        }
        if self.prefill_chunk == 0 {
            return bad("prefill_chunk must be positive".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop strings must not be empty".into());
        }
        self.policy().validate()
    }

    fn policy(&self) -> IterationPolicy {
        IterationPolicy {
            mode: self.mode,
            threshold: self.threshold,
            forced_hard_rate: None,
        }
    }
}

/// What to generate from.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// A conversation rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Text tokenized as it is.
    Raw(String),
}

/// One generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenEvent {
    pub text: String,
    pub token_id: u32,
    pub depth: u32,
    pub index: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationStats {
    pub load_ms: f64,
    pub time_to_first_token_ms: f64,
    pub prefill_tokens: u32,
    pub reused_prefix_tokens: u32,
    pub prefill_tok_per_s: f64,
    pub decode_tokens: u32,
    pub decode_tok_per_s: f64,
    pub passes_per_token: f64,
    pub hard_token_fraction: f64,
    pub depth2_kv_entries: u32,
    pub peak_kv_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenerationResult {
    pub text: String,
    pub reasoning: String,
    pub content: String,
    pub stop_reason: StopReason,
    pub token_ids: Vec<u32>,
    pub stats: GenerationStats,
}

/// A cancellation flag shared between a generation and whoever may cancel it.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One conversation with a model.
pub struct TahSession {
    model: Arc<TahModel>,
    cache: KvCache,
}

impl TahSession {
    pub fn new(model: Arc<TahModel>) -> Self {
        let cache = model.new_cache();
        TahSession { model, cache }
    }

    /// Clears the KV cache.
    pub fn reset(&mut self) {
        self.cache.reset();
    }

    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Prefills `prompt` (on a fresh cache) and decodes greedily, reporting
    /// every token through `on_token`. Cancellation returns `Ok` with
    /// [`StopReason::Cancelled`].
    pub fn generate(
        &mut self,
        prompt: &Prompt,
        config: &GenerationConfig,
        cancel: &CancelHandle,
        on_token: &mut dyn FnMut(&TokenEvent),
    ) -> Result<GenerationResult> {
        config.validate()?;
        let model = Arc::clone(&self.model);
        let tokenizer = model.tokenizer()?;
        let text = match prompt {
            Prompt::Raw(text) => text.clone(),
            Prompt::Chat(messages) => {
                model
                    .chat_template()?
                    .render(messages, true, config.enable_thinking)?
            }
        };
        let ids = tokenizer.encode(&text)?;
        if ids.is_empty() {
            return Err(Error::InvalidArgument("the prompt has no tokens".into()));
        }
        self.cache.reset();
        let opts = ChunkOptions {
            policy: config.policy(),
            keep: KeepLogits::Last,
            max_hard: config.hard_token_budget.map(|b| b as usize),
            cancel: Some(&cancel.0),
        };
        let mut passes = Vec::new();
        let mut stats = GenerationStats {
            prefill_tokens: ids.len() as u32,
            ..GenerationStats::default()
        };

        // Prefill, chunk by chunk.
        let start = Instant::now();
        let mut logits = Vec::new();
        for chunk in ids.chunks(config.prefill_chunk) {
            let out = match model.forward_chunk(chunk, &mut self.cache, &opts) {
                Err(Error::Cancelled) => {
                    return Ok(finish(
                        String::new(),
                        Vec::new(),
                        StopReason::Cancelled,
                        stats,
                    ))
                }
                other => other?,
            };
            passes.extend(out.tokens.iter().map(|t| t.iter_count));
            logits = out.logits.into_iter().next_back().unwrap_or_default();
        }
        let prefill_s = start.elapsed().as_secs_f64();
        stats.prefill_tok_per_s = ids.len() as f64 / prefill_s.max(1e-9);

        // Greedy decode.
        let mut decoder = StreamDecoder::new(tokenizer);
        let mut out_text = String::new();
        let mut token_ids = Vec::new();
        let mut depth = passes.last().copied().unwrap_or(1);
        let decode_start = Instant::now();
        let stop_reason = loop {
            if cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            let Some(token) = argmax(&logits) else {
                break StopReason::Eos;
            };
            if model.eos_token_ids().contains(&token) {
                break StopReason::Eos;
            }
            if token_ids.is_empty() {
                stats.time_to_first_token_ms = start.elapsed().as_secs_f64() * 1e3;
            }
            let delta = decoder.push(token)?;
            out_text.push_str(&delta);
            on_token(&TokenEvent {
                text: delta,
                token_id: token,
                depth: depth as u32,
                index: token_ids.len() as u32,
            });
            token_ids.push(token);
            if let Some(at) = config.stop.iter().filter_map(|s| out_text.find(s)).min() {
                out_text.truncate(at);
                break StopReason::StopString;
            }
            if token_ids.len() >= config.max_new_tokens {
                break StopReason::MaxTokens;
            }
            if self.cache.len() >= self.cache.capacity() {
                break StopReason::ContextFull;
            }
            match model.forward_chunk(&[token], &mut self.cache, &opts) {
                Err(Error::Cancelled) => break StopReason::Cancelled,
                other => {
                    let mut out = other?;
                    depth = out.tokens[0].iter_count;
                    passes.push(depth);
                    logits = out.logits.pop().unwrap_or_default();
                }
            }
        };
        if stop_reason != StopReason::StopString {
            out_text.push_str(&decoder.finish()?);
        }
        stats.decode_tokens = token_ids.len() as u32;
        stats.decode_tok_per_s =
            token_ids.len() as f64 / decode_start.elapsed().as_secs_f64().max(1e-9);
        stats.passes_per_token = passes.iter().sum::<usize>() as f64 / passes.len() as f64;
        stats.hard_token_fraction =
            passes.iter().filter(|&&p| p > 1).count() as f64 / passes.len() as f64;
        stats.depth2_kv_entries = self.cache.depth_len(2) as u32;
        stats.peak_kv_bytes = self.cache.bytes() as u64;
        Ok(finish(out_text, token_ids, stop_reason, stats))
    }
}

/// Splits `<think>reasoning</think>content`.
fn finish(
    text: String,
    token_ids: Vec<u32>,
    stop_reason: StopReason,
    stats: GenerationStats,
) -> GenerationResult {
    let (reasoning, content) = match text.split_once("</think>") {
        Some((r, c)) => (r.trim_start_matches("<think>").trim(), c.trim()),
        None => ("", text.as_str()),
    };
    GenerationResult {
        reasoning: reasoning.to_owned(),
        content: content.to_owned(),
        text,
        stop_reason,
        token_ids,
        stats,
    }
}
