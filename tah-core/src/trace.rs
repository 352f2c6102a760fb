//! `tah trace`: prefill a prompt, decode greedily and record, per position,
//! the passes taken, the decider's probabilities and the top logits — the
//! same quantities (and conventions) as the reference's `expected.json`.

use serde::Serialize;

use crate::chat_template::ChatMessage;
use crate::error::{Error, Result};
use crate::iteration::{ChunkOptions, IterationPolicy, KeepLogits};
use crate::logits::{logsumexp, top_k};
use crate::tah_model::TahModel;

/// Top logits recorded per prefill position.
pub const PREFILL_TOP: usize = 20;
/// Top logits recorded per decode step.
pub const DECODE_TOP: usize = 5;

#[derive(Clone, Debug)]
pub enum TraceInput {
    /// Token ids as they are.
    Ids(Vec<u32>),
    /// Raw text, tokenized as is.
    Prompt(String),
    /// One user message rendered with the chat template (thinking on).
    Chat(String),
    /// A conversation rendered with the chat template and its generation
    /// prompt (thinking on).
    Messages(Vec<ChatMessage>),
}

#[derive(Clone, Debug)]
pub struct TraceRequest {
    pub input: TraceInput,
    pub new_tokens: usize,
    /// Prefill the first `split` tokens, then the rest as a second chunk.
    pub split: Option<usize>,
    pub policy: IterationPolicy,
}

pub use crate::logits::TopLogits;

#[derive(Clone, Debug, Serialize)]
pub struct PrefillTrace {
    pub iter_count: Vec<usize>,
    pub decider_prob: Vec<Vec<f32>>,
    pub top: Vec<TopLogits>,
    pub logsumexp: Vec<f64>,
}

/// Decode steps. `iter_count[i]` is the passes of the forward that processed
/// token i (the reference's convention A); `top[i]` and `logsumexp[i]` are of
/// the logits that produced token i.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeTrace {
    pub tokens: Vec<u32>,
    pub iter_count: Vec<usize>,
    pub decider_prob: Vec<Vec<f32>>,
    pub top: Vec<TopLogits>,
    pub logsumexp: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    /// The text that was tokenized (rendered chat prompt or raw prompt).
    #[serde(skip)]
    pub prompt: Option<String>,
    pub input_ids: Vec<u32>,
    pub prefill: PrefillTrace,
    pub decode: DecodeTrace,
}

impl Trace {
    /// Passes per token over prefill and decode.
    pub fn passes_per_token(&self) -> f64 {
        let counts = self
            .prefill
            .iter_count
            .iter()
            .chain(&self.decode.iter_count);
        let (sum, n) = counts.fold((0, 0), |(s, n), &c| (s + c, n + 1));
        if n == 0 {
            0.0
        } else {
            sum as f64 / n as f64
        }
    }

    /// Fraction of tokens that took more than one pass.
    pub fn hard_fraction(&self) -> f64 {
        let counts: Vec<usize> = self
            .prefill
            .iter_count
            .iter()
            .chain(&self.decode.iter_count)
            .copied()
            .collect();
        if counts.is_empty() {
            0.0
        } else {
            counts.iter().filter(|&&c| c > 1).count() as f64 / counts.len() as f64
        }
    }
}

/// The rendered conversation and its ids.
fn render(model: &TahModel, messages: &[ChatMessage]) -> Result<(Option<String>, Vec<u32>)> {
    let rendered = model.chat_template()?.render(messages, true, true)?;
    let ids = model.tokenizer()?.encode(&rendered)?;
    Ok((Some(rendered), ids))
}

/// Runs a trace. Decoding is greedy and stops early (without appending) on
/// the model config's EOS token, like the reference.
pub fn trace(model: &TahModel, request: &TraceRequest) -> Result<Trace> {
    // 1. The input ids.
    let (prompt, input_ids) = match &request.input {
        TraceInput::Ids(ids) => (None, ids.clone()),
        TraceInput::Prompt(text) => (Some(text.clone()), model.tokenizer()?.encode(text)?),
        TraceInput::Chat(text) => render(model, &[ChatMessage::user(text.clone())])?,
        TraceInput::Messages(messages) => render(model, messages)?,
    };
    if input_ids.is_empty() {
        return Err(Error::InvalidArgument("the prompt has no tokens".into()));
    }
    let split = request.split.unwrap_or(input_ids.len());
    if split == 0 || split > input_ids.len() {
        return Err(Error::InvalidArgument(format!(
            "split {split} must be within 1..={}",
            input_ids.len()
        )));
    }

    // 2. Prefill, in one or two chunks, keeping every position's logits.
    let mut cache = model.new_cache();
    let opts = ChunkOptions {
        policy: request.policy,
        keep: KeepLogits::All,
        max_hard: None,
        cancel: None,
        probe_decider: true,
    };
    let mut prefill = PrefillTrace {
        iter_count: Vec::new(),
        decider_prob: Vec::new(),
        top: Vec::new(),
        logsumexp: Vec::new(),
    };
    let mut last_logits = Vec::new();
    for chunk in [&input_ids[..split], &input_ids[split..]] {
        if chunk.is_empty() {
            continue;
        }
        let out = model.forward_chunk(chunk, &mut cache, &opts)?;
        for (passes, logits) in out.tokens.into_iter().zip(out.logits) {
            prefill.iter_count.push(passes.iter_count);
            prefill.decider_prob.push(passes.decider_probs);
            prefill.top.push(top_k(&logits, PREFILL_TOP));
            prefill.logsumexp.push(logsumexp(&logits));
            last_logits = logits;
        }
    }

    // 3. Greedy decode, one token per forward.
    let eos = model
        .config()
        .eos_token_id
        .as_ref()
        .map(|e| e.ids())
        .unwrap_or_default();
    let mut decode = DecodeTrace {
        tokens: Vec::new(),
        iter_count: Vec::new(),
        decider_prob: Vec::new(),
        top: Vec::new(),
        logsumexp: Vec::new(),
    };
    for _ in 0..request.new_tokens {
        let top = top_k(&last_logits, DECODE_TOP);
        let Some(&(token, _)) = top.first() else {
            break;
        };
        if eos.contains(&token) {
            break;
        }
        decode.tokens.push(token);
        decode.top.push(top);
        decode.logsumexp.push(logsumexp(&last_logits));
        let mut out = model.forward_chunk(&[token], &mut cache, &opts)?;
        let passes = out.tokens.remove(0);
        decode.iter_count.push(passes.iter_count);
        decode.decider_prob.push(passes.decider_probs);
        last_logits = out.logits.pop().unwrap_or_default();
    }

    Ok(Trace {
        prompt,
        input_ids,
        prefill,
        decode,
    })
}
