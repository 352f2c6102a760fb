//! The vocabulary of a generation: its configuration, the events streamed to
//! the listener, the final result and its statistics, and the cancel handle.
//! [`crate::session::TahSession`] runs generations.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::chat_template::ChatMessage;
use crate::error::{Error, Result};
use crate::iteration::{IterationMode, IterationPolicy};
use crate::sampling::SamplingParams;

/// Settings of one generation. The defaults are Qwen3's recommended
/// thinking-mode sampling settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// 0 = no top-k cut.
    pub top_k: usize,
    /// In (0, 1]; 1 = off.
    pub top_p: f32,
    /// In [0, 1]; 0 = off.
    pub min_p: f32,
    /// > 0; 1 = off.
    pub repetition_penalty: f32,
    /// Same seed, same config, same prompt: same output. `None` = random.
    pub seed: Option<u64>,
    pub max_new_tokens: usize,
    /// Strings that end the output (not included in it).
    pub stop: Vec<String>,
    /// Chat prompts only: Qwen3's thinking mode (`enable_thinking`).
    pub enable_thinking: bool,
    pub mode: IterationMode,
    /// Overrides the checkpoint's decider threshold.
    pub threshold: Option<f32>,
    /// At most this many tokens per 100 may take a second pass (0..=100).
    pub hard_token_budget: Option<u32>,
    /// Tokens per prefill chunk (bounds activation memory).
    pub prefill_chunk: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            temperature: 0.6,
            top_k: 20,
            top_p: 0.95,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: None,
            max_new_tokens: 512,
            stop: Vec::new(),
            enable_thinking: true,
            mode: IterationMode::Decider,
            threshold: None,
            hard_token_budget: None,
            prefill_chunk: 64,
        }
    }
}

impl GenerationConfig {
    /// Deterministic argmax decoding (the reference's `do_sample=False`).
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Rejects out-of-range settings with [`Error::InvalidArgument`].
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature {} must be >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p {} must be in [0, 1]", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty {} must be > 0",
                self.repetition_penalty
            ));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.prefill_chunk == 0 {
            return bad("prefill_chunk must be at least 1".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop strings must not be empty".into());
        }
        if let Some(budget) = self.hard_token_budget.filter(|&b| b > 100) {
            return bad(format!("hard_token_budget {budget} must be in 0..=100"));
        }
        self.policy().validate()
    }

    pub(crate) fn policy(&self) -> IterationPolicy {
        IterationPolicy {
            mode: self.mode,
            threshold: self.threshold,
            forced_hard_rate: None,
        }
    }

    pub(crate) fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
        }
    }
}

/// What to answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// The whole conversation, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Text tokenized as is (no template).
    Raw(String),
}

/// One generated token, streamed as soon as it is produced. The EOS token
/// gets an event only to deliver text still held back when the output ends.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TokenEvent {
    /// Text completed by this token: never a broken character, never part of
    /// a stop string; may be empty (bytes held back until the character or a
    /// possible stop string is complete).
    pub text: String,
    pub token_id: u32,
    /// Passes of the forward whose logits produced this token.
    pub depth: u32,
    /// 0-based position in the output.
    pub index: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-sequence token.
    Eos,
    StopString,
    MaxTokens,
    /// The context is full (no room to feed the last token).
    ContextFull,
    Cancelled,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GenerationStats {
    /// Time `TahModel::load` took.
    pub load_ms: f64,
    /// From the call to the first token (template, tokenization, prefill).
    pub time_to_first_token_ms: f64,
    /// Prompt tokens run through the model (the rest was reused).
    pub prefill_tokens: u32,
    /// Prompt tokens whose KV entries were reused from the previous turn.
    pub reused_prefix_tokens: u32,
    pub prefill_tok_per_s: f64,
    /// Tokens generated (EOS excluded).
    pub decode_tokens: u32,
    /// Tokens after the first, per second after the first.
    pub decode_tok_per_s: f64,
    /// Mean passes over every token this generation ran through the model.
    pub passes_per_token: f64,
    /// Fraction of those tokens that took more than one pass.
    pub hard_token_fraction: f64,
    /// Depth-2 entries in the session's KV cache at the end.
    pub depth2_kv_entries: u32,
    /// Largest KV cache size during the generation.
    pub peak_kv_bytes: u64,
    /// Where the model ran ([`crate::TahModel::device_name`]).
    pub device: String,
    /// Why a model asked for on the GPU ran on the CPU
    /// ([`crate::TahModel::device_notice`]).
    pub device_notice: Option<String>,
    /// Threads of the pool the generation ran on.
    pub threads: u32,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GenerationResult {
    /// Everything generated (EOS and stop string excluded).
    pub text: String,
    /// The thinking: text before `</think>`, without `<think>`.
    pub reasoning: String,
    /// The answer: text after `</think>`.
    pub content: String,
    pub stop_reason: StopReason,
    /// Generated ids (EOS excluded).
    pub token_ids: Vec<u32>,
    pub stats: GenerationStats,
}

impl GenerationResult {
    /// A generation cancelled before it started: no output, nothing
    /// computed, the session unchanged.
    pub fn cancelled_before_start(load_ms: f64) -> Self {
        GenerationResult {
            text: String::new(),
            reasoning: String::new(),
            content: String::new(),
            stop_reason: StopReason::Cancelled,
            token_ids: Vec::new(),
            stats: GenerationStats {
                load_ms,
                threads: rayon::current_num_threads() as u32,
                ..GenerationStats::default()
            },
        }
    }
}

/// Splits Qwen3 output into (reasoning, content) like Qwen's own parsing:
/// before `</think>` (minus `<think>`) is reasoning, after it content, both
/// trimmed of surrounding newlines. Without `</think>`, output that opened a
/// `<think>` block is unfinished reasoning; anything else is content.
pub fn split_reasoning(text: &str) -> (String, String) {
    let trim = |s: &str| s.trim_matches('\n').to_owned();
    let strip_open = |s: &str| {
        let s = s.trim_start();
        s.strip_prefix("<think>").map(str::to_owned)
    };
    match text.split_once("</think>") {
        Some((reasoning, content)) => {
            let reasoning = strip_open(reasoning).unwrap_or_else(|| reasoning.to_owned());
            (trim(&reasoning), trim(content))
        }
        None => match strip_open(text) {
            Some(reasoning) => (trim(&reasoning), String::new()),
            None => (String::new(), trim(text)),
        },
    }
}

/// Cancels a generation from any thread. Clones share the flag; a cancelled
/// handle stays cancelled until [`reset`](Self::reset).
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_and_content_are_split_like_qwen() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            split_reasoning("<think>\nadd them\n</think>\n\n4"),
            s("add them", "4")
        );
        assert_eq!(split_reasoning("plan\n</think>\n\nok\n"), s("plan", "ok"));
        assert_eq!(
            split_reasoning("<think>\nstill going"),
            s("still going", "")
        );
        assert_eq!(split_reasoning("\n\nHello"), s("", "Hello"));
        assert_eq!(split_reasoning(""), s("", ""));
    }

    #[test]
    fn defaults_are_qwen3_thinking_settings_and_valid() {
        let c = GenerationConfig::default();
        assert_eq!(
            (c.temperature, c.top_p, c.top_k, c.min_p),
            (0.6, 0.95, 20, 0.0)
        );
        c.validate().unwrap();
        GenerationConfig::greedy().validate().unwrap();
    }

    #[test]
    fn out_of_range_settings_are_rejected() {
        let cases: Vec<fn(&mut GenerationConfig)> = vec![
            |c| c.temperature = -0.1,
            |c| c.temperature = f32::NAN,
            |c| c.top_p = 0.0,
            |c| c.top_p = 1.5,
            |c| c.min_p = -0.5,
            |c| c.min_p = 2.0,
            |c| c.repetition_penalty = 0.0,
            |c| c.repetition_penalty = f32::INFINITY,
            |c| c.max_new_tokens = 0,
            |c| c.prefill_chunk = 0,
            |c| c.stop = vec![String::new()],
            |c| c.hard_token_budget = Some(101),
            |c| c.threshold = Some(f32::NAN),
        ];
        for (i, break_it) in cases.into_iter().enumerate() {
            let mut c = GenerationConfig::default();
            break_it(&mut c);
            assert!(
                matches!(c.validate(), Err(Error::InvalidArgument(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn cancel_handle_clones_share_the_flag() {
        let a = CancelHandle::new();
        let b = a.clone();
        b.cancel();
        assert!(a.is_cancelled());
        a.reset();
        assert!(!b.is_cancelled());
    }
}
