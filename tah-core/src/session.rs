//! Generation sessions: one conversation on a shared [`TahModel`], with its
//! own KV cache. Between generations the cache is kept, and the next prompt
//! reuses the longest common token prefix, so a new chat turn prefills only
//! what changed (Qwen3's template drops earlier turns' thinking, so the
//! previous answer is partly recomputed).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub use crate::generation::{
    split_reasoning, CancelHandle, GenerationConfig, GenerationResult, GenerationStats, Prompt,
    StopReason, TokenEvent,
};

use crate::chat_template::{ChatMessage, Role};
use crate::error::{Error, Result};
use crate::iteration::{ChunkOptions, IterationPolicy, KeepLogits, TokenPasses};
use crate::kv_cache::KvCache;
use crate::sampling::Sampler;
use crate::stream::TextStream;
use crate::tah_model::TahModel;

/// What decides the KV entries of a token besides the tokens themselves:
/// entries computed under other settings are not reused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CacheKey {
    pub policy: IterationPolicy,
    pub hard_token_budget: Option<u32>,
}

pub struct TahSession {
    pub(crate) model: Arc<TahModel>,
    pub(crate) cache: KvCache,
    /// The ids whose K/V entries are in `cache` (always `cache.len()` of them).
    pub(crate) tokens: Vec<u32>,
    /// Settings the cached entries were computed with.
    pub(crate) cache_key: Option<CacheKey>,
    pub(crate) history: Vec<ChatMessage>,
    /// Leading cached tokens a critical memory trim keeps: the system
    /// prompt of the last chat prompt.
    pub(crate) kept_prefix: usize,
}

/// Per-generation counters behind [`GenerationStats`] and the hard-token budget.
struct Tally {
    started: Instant,
    /// Tokens run through the model, their passes, and how many took > 1.
    tokens: usize,
    passes: usize,
    hard: usize,
    peak_kv_bytes: usize,
    prefill_secs: f64,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
}

impl Tally {
    fn new(kv_bytes: usize) -> Self {
        Self {
            started: Instant::now(),
            tokens: 0,
            passes: 0,
            hard: 0,
            peak_kv_bytes: kv_bytes,
            prefill_secs: 0.0,
            first_token: None,
            last_token: None,
        }
    }

    /// Pass-2 allowance for the next `n` tokens: the budget is a rate, so
    /// after t tokens at most `budget * t / 100` of them are hard.
    fn max_hard(&self, budget: Option<u32>, n: usize) -> Option<usize> {
        budget.map(|b| ((self.tokens + n) * b as usize / 100).saturating_sub(self.hard))
    }

    fn record(&mut self, passes: &[TokenPasses], kv_bytes: usize) {
        self.tokens += passes.len();
        self.passes += passes.iter().map(|p| p.iter_count).sum::<usize>();
        self.hard += passes.iter().filter(|p| p.iter_count > 1).count();
        self.peak_kv_bytes = self.peak_kv_bytes.max(kv_bytes);
    }

    fn token_sampled(&mut self) {
        let now = Instant::now();
        self.first_token.get_or_insert(now);
        self.last_token = Some(now);
    }
}

/// The output so far (kept on cancellation).
#[derive(Default)]
struct Output {
    text: String,
    token_ids: Vec<u32>,
}

impl TahSession {
    pub fn new(model: Arc<TahModel>) -> Self {
        let cache = model.new_cache();
        Self {
            model,
            cache,
            tokens: Vec::new(),
            cache_key: None,
            history: Vec::new(),
            kept_prefix: 0,
        }
    }

    pub fn model(&self) -> &Arc<TahModel> {
        &self.model
    }

    /// The conversation of the last chat prompt and its answer (see
    /// [`generate`](Self::generate)), or as [`set_history`](Self::set_history)
    /// left it.
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    /// Replaces the conversation (a system message to open it, a restored
    /// chat...). The cache is kept: the next turn reuses what still matches.
    pub fn set_history(&mut self, history: Vec<ChatMessage>) {
        self.history = history;
    }

    /// Positions held in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// The ids whose K/V entries the session holds.
    pub fn cached_token_ids(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets the conversation and the cache (keeping its allocations).
    pub fn reset(&mut self) {
        self.cache.reset();
        self.tokens.clear();
        self.cache_key = None;
        self.history.clear();
        self.kept_prefix = 0;
    }

    /// Gives the KV cache's memory back: unused capacity always, and with
    /// `drop_entries` every entry past the kept prefix (the last chat
    /// prompt's system message), which the next prompt then recomputes.
    /// Returns the bytes freed.
    pub fn trim_cache(&mut self, drop_entries: bool) -> usize {
        let keep = if drop_entries {
            self.kept_prefix.min(self.tokens.len())
        } else {
            self.tokens.len()
        };
        self.tokens.truncate(keep);
        self.cache.shrink(keep)
    }

    /// One chat turn: answers `history() + user_message` (which
    /// [`generate`](Self::generate) then records as the history, with the
    /// answer).
    pub fn chat(
        &mut self,
        user_message: &str,
        config: &GenerationConfig,
        cancel: &CancelHandle,
        on_token: &mut dyn FnMut(&TokenEvent),
    ) -> Result<GenerationResult> {
        let mut messages = self.history.clone();
        messages.push(ChatMessage::user(user_message));
        self.generate(&Prompt::Chat(messages), config, cancel, on_token)
    }

    /// Generates an answer to `prompt`, streaming every token to `on_token`.
    /// Cancellation is not an error: the result holds the output so far with
    /// [`StopReason::Cancelled`], and the session stays usable (cancelled
    /// before it started, nothing changes). After a chat prompt, the history
    /// is its messages plus the answer (full text, thinking included; the
    /// template decides what later turns see; a cancelled answer as far as
    /// it got); on error the history is unchanged.
    pub fn generate(
        &mut self,
        prompt: &Prompt,
        config: &GenerationConfig,
        cancel: &CancelHandle,
        on_token: &mut dyn FnMut(&TokenEvent),
    ) -> Result<GenerationResult> {
        config.validate()?;
        if cancel.is_cancelled() {
            return Ok(GenerationResult::cancelled_before_start(
                self.model.load_ms(),
            ));
        }
        self.model.check_weights_intact()?;
        let model = Arc::clone(&self.model);
        let ids = encode_prompt(&model, prompt, config)?;
        if ids.len() > self.cache.capacity() {
            return Err(Error::ContextOverflow {
                needed: ids.len(),
                capacity: self.cache.capacity(),
            });
        }

        // Reuse the cached prefix the prompt shares, computed under the same
        // settings; at least one token is recomputed for the first logits.
        let key = CacheKey {
            policy: config.policy(),
            hard_token_budget: config.hard_token_budget,
        };
        let reused = if self.cache_key == Some(key) {
            common_prefix_len(&self.tokens, &ids).min(ids.len() - 1)
        } else {
            0
        };
        self.truncate(reused);
        self.cache_key = Some(key);

        let mut tally = Tally::new(self.cache.bytes());
        let mut output = Output::default();
        let stop_reason = match self.run(
            &ids,
            reused,
            config,
            cancel,
            on_token,
            &mut tally,
            &mut output,
        ) {
            Ok(reason) => reason,
            Err(Error::Cancelled) => StopReason::Cancelled,
            Err(e) => return Err(e),
        };
        let stats = self.stats(&model, &tally, ids.len() - reused, reused, &output);
        if let Prompt::Chat(messages) = prompt {
            self.kept_prefix = system_prefix_len(&model, messages, config, &ids);
            self.history = messages.clone();
            self.history
                .push(ChatMessage::assistant(output.text.clone()));
        }
        let (reasoning, content) = split_reasoning(&output.text);
        Ok(GenerationResult {
            text: output.text,
            reasoning,
            content,
            stop_reason,
            token_ids: output.token_ids,
            stats,
        })
    }

    /// Prefill then decode. Errors leave the cache consistent with `tokens`.
    #[allow(clippy::too_many_arguments)] // private; the pieces of one generation
    fn run(
        &mut self,
        ids: &[u32],
        reused: usize,
        config: &GenerationConfig,
        cancel: &CancelHandle,
        on_token: &mut dyn FnMut(&TokenEvent),
        tally: &mut Tally,
        output: &mut Output,
    ) -> Result<StopReason> {
        let model = Arc::clone(&self.model);
        let tokenizer = model.tokenizer()?;
        let policy = config.policy();
        let budget = config.hard_token_budget;
        // Each forward returns only what the sampler reads of the last
        // position's logits (the argmax, or the top-k cut's candidates).
        let mut sampler = Sampler::new(config.sampling(), config.seed, tokenizer.vocab_size(), ids);
        let cancel_flag = cancel.flag();

        let prefill_start = Instant::now();
        let mut next = None;
        for chunk in ids[reused..].chunks(config.prefill_chunk) {
            next = Some(self.feed(
                chunk,
                &chunk_options(policy, &sampler, cancel_flag),
                budget,
                tally,
            )?);
        }
        tally.prefill_secs = prefill_start.elapsed().as_secs_f64();
        // `reused < ids.len()`, so at least one chunk ran.
        let (mut candidates, mut depth) =
            next.ok_or_else(|| Error::InvalidArgument("nothing to prefill".into()))?;

        let mut stream = TextStream::new(tokenizer, &config.stop);
        loop {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let token = sampler
                .sample_candidates(&candidates)
                .ok_or_else(|| Error::InvalidArgument("the model returned no logits".into()))?;
            tally.token_sampled();
            let index = output.token_ids.len() as u32;
            if model.eos_token_ids().contains(&token) {
                // The EOS token's event only delivers text held back so far.
                let (text, stopped) = stream.finish()?;
                if !text.is_empty() {
                    output.text.push_str(&text);
                    on_token(&TokenEvent {
                        text,
                        token_id: token,
                        depth,
                        index,
                    });
                }
                return Ok(if stopped {
                    StopReason::StopString
                } else {
                    StopReason::Eos
                });
            }
            sampler.observe(token);
            output.token_ids.push(token);
            let (mut text, mut stopped) = stream.push(token)?;
            let limit = if stopped {
                None
            } else if output.token_ids.len() >= config.max_new_tokens {
                Some(StopReason::MaxTokens)
            } else if self.cache.len() >= self.cache.capacity() {
                Some(StopReason::ContextFull)
            } else {
                None
            };
            if limit.is_some() {
                // Last token: release what was held back with its event.
                let (rest, found) = stream.finish()?;
                text.push_str(&rest);
                stopped = found;
            }
            output.text.push_str(&text);
            on_token(&TokenEvent {
                text,
                token_id: token,
                depth,
                index,
            });
            if stopped {
                return Ok(StopReason::StopString);
            }
            if let Some(reason) = limit {
                return Ok(reason);
            }
            (candidates, depth) = self.feed(
                &[token],
                &chunk_options(policy, &sampler, cancel_flag),
                budget,
                tally,
            )?;
        }
    }

    /// Runs `ids` after the cached tokens; returns the sampling candidates
    /// of the last position and its depth. On error (or cancellation)
    /// nothing is added.
    fn feed(
        &mut self,
        ids: &[u32],
        opts: &ChunkOptions,
        budget: Option<u32>,
        tally: &mut Tally,
    ) -> Result<(Vec<(u32, f32)>, u32)> {
        let opts = ChunkOptions {
            max_hard: tally.max_hard(budget, ids.len()),
            ..*opts
        };
        let out = self.model.forward_chunk(ids, &mut self.cache, &opts)?;
        self.tokens.extend_from_slice(ids);
        tally.record(&out.tokens, self.cache.bytes());
        let depth = out.tokens.last().map_or(1, |t| t.iter_count) as u32;
        // NaN logits would otherwise be sampled as "the top token" forever
        // (a NaN sorts above every number, so it is among the candidates).
        if out.top.iter().any(|(_, x)| !x.is_finite()) {
            return Err(Error::NonFiniteOutput {
                position: self.tokens.len() - 1,
            });
        }
        Ok((out.top, depth))
    }

    fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
        self.tokens.truncate(len);
    }

    fn stats(
        &self,
        model: &TahModel,
        tally: &Tally,
        prefilled: usize,
        reused: usize,
        output: &Output,
    ) -> GenerationStats {
        let per_s = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let decode_secs = match (tally.first_token, tally.last_token) {
            (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let ratio = |a: usize| {
            if tally.tokens == 0 {
                0.0
            } else {
                a as f64 / tally.tokens as f64
            }
        };
        GenerationStats {
            load_ms: model.load_ms(),
            time_to_first_token_ms: tally
                .first_token
                .map_or(0.0, |t| t.duration_since(tally.started).as_secs_f64() * 1e3),
            prefill_tokens: prefilled as u32,
            reused_prefix_tokens: reused as u32,
            prefill_tok_per_s: per_s(prefilled, tally.prefill_secs),
            decode_tokens: output.token_ids.len() as u32,
            decode_tok_per_s: per_s(output.token_ids.len().saturating_sub(1), decode_secs),
            passes_per_token: ratio(tally.passes),
            hard_token_fraction: ratio(tally.hard),
            depth2_kv_entries: self.cache.depth_len(2) as u32,
            peak_kv_bytes: tally.peak_kv_bytes as u64,
            device: model.device_name(),
            device_notice: model.device_notice().map(str::to_owned),
            threads: rayon::current_num_threads() as u32,
        }
    }
}

/// Options of a generation's forwards: only what `sampler` reads of the
/// last position's logits comes back.
fn chunk_options<'a>(
    policy: IterationPolicy,
    sampler: &'a Sampler,
    cancel: &'a AtomicBool,
) -> ChunkOptions<'a> {
    ChunkOptions {
        policy,
        keep: KeepLogits::LastTop(sampler.request()),
        max_hard: None,
        cancel: Some(cancel),
        probe_decider: false,
    }
}

/// The prompt's token ids (never empty).
fn encode_prompt(model: &TahModel, prompt: &Prompt, config: &GenerationConfig) -> Result<Vec<u32>> {
    let text = match prompt {
        Prompt::Chat(messages) if messages.is_empty() => {
            return Err(Error::InvalidArgument("the conversation is empty".into()))
        }
        Prompt::Chat(messages) => {
            model
                .chat_template()?
                .render(messages, true, config.enable_thinking)?
        }
        Prompt::Raw(text) => text.clone(),
    };
    let ids = model.tokenizer()?.encode(&text)?;
    if ids.is_empty() {
        return Err(Error::InvalidArgument("the prompt has no tokens".into()));
    }
    Ok(ids)
}

/// Leading tokens of `ids` (the rendered `messages`) that belong to its
/// opening system message; 0 without one (or if it does not render alone).
fn system_prefix_len(
    model: &TahModel,
    messages: &[ChatMessage],
    config: &GenerationConfig,
    ids: &[u32],
) -> usize {
    let Some(system) = messages.first().filter(|m| m.role == Role::System) else {
        return 0;
    };
    let system_ids = model.chat_template().and_then(|template| {
        let text = template.render(std::slice::from_ref(system), false, config.enable_thinking)?;
        model.tokenizer()?.encode(&text)
    });
    system_ids.map_or(0, |s| common_prefix_len(&s, ids))
}

fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_a_rate_over_the_generation() {
        let mut tally = Tally::new(0);
        assert_eq!(tally.max_hard(None, 10), None);
        assert_eq!(tally.max_hard(Some(10), 50), Some(5));
        let pass = |n| TokenPasses {
            iter_count: n,
            decider_probs: Vec::new(),
        };
        let mut chunk = vec![pass(1); 45];
        chunk.extend(vec![pass(2); 5]);
        tally.record(&chunk, 0);
        // 50 tokens, 5 hard: the next 9 single tokens earn no new allowance.
        assert_eq!(tally.max_hard(Some(10), 9), Some(0));
        assert_eq!(tally.max_hard(Some(10), 10), Some(1));
        assert_eq!(tally.max_hard(Some(0), 1000), Some(0));
    }

    #[test]
    fn common_prefix() {
        assert_eq!(common_prefix_len(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix_len(&[], &[1]), 0);
        assert_eq!(common_prefix_len(&[1, 2], &[1, 2]), 2);
    }
}
