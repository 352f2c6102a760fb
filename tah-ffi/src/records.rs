//! Plain data crossing the boundary (uniffi records and enums), and their
//! conversions to and from the engine's own types. No logic lives here.

use tah_core::chat_template;
use tah_core::IterationMode as CoreIterationMode;

use crate::error::TahError;
use tah_core::session as engine;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Prompt {
    /// A conversation, rendered with the model's own chat template (with the
    /// assistant's generation prompt appended).
    Chat { messages: Vec<ChatMessage> },
    /// Text tokenized exactly as given (no template).
    Raw { text: String },
}

/// How tokens are chosen for extra passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum IterationMode {
    /// The model's decider picks the hard tokens (the model as trained).
    Decider,
    /// One pass per token: the plain base model.
    Never,
    /// Every token takes the maximum number of passes.
    Always,
}

/// Settings of one generation. Start from `defaultGenerationConfig()` (Qwen3
/// thinking-mode sampling) or `greedyGenerationConfig()` and change fields.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct GenerationConfig {
    /// Sampling temperature; 0 means greedy (argmax) decoding.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: no limit).
    pub top_k: u32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability
    /// reaches `top_p`, in (0, 1].
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one.
    pub min_p: f32,
    /// Penalty (> 0; 1 = none) on tokens already generated.
    pub repetition_penalty: f32,
    /// Seed of the sampler; `null`/`nil` picks one at random.
    pub seed: Option<u64>,
    /// The most tokens to generate.
    pub max_new_tokens: u32,
    /// Generation stops when the output contains one of these strings (which
    /// is not included in the result).
    pub stop: Vec<String>,
    /// Let the model think (`<think>...</think>`) before answering.
    pub enable_thinking: bool,
    /// How tokens are chosen for extra passes.
    pub mode: IterationMode,
    /// Overrides the decider's threshold (`Decider` mode only).
    pub threshold: Option<f32>,
    /// At most this many tokens per forward may take extra passes.
    pub hard_token_budget: Option<u32>,
    /// Prompt tokens processed per forward while prefilling.
    pub prefill_chunk: u32,
}

/// One generated token, as it is streamed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TokenEvent {
    /// The text this token completes (may be empty while a multi-byte
    /// character is still incomplete).
    pub text: String,
    pub token_id: u32,
    /// Number of passes the token took (1 = easy, more = a hard token).
    pub depth: u32,
    /// Position of the token in the generated output, from 0.
    pub index: u32,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum StopReason {
    /// The model emitted an end-of-sequence token.
    Eos,
    /// The output reached one of the configured stop strings.
    StopString,
    /// `max_new_tokens` tokens were generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// The generation was cancelled.
    Cancelled,
}

/// Measurements of one generation.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Stats {
    /// Time it took to load the model.
    pub load_ms: f64,
    pub time_to_first_token_ms: f64,
    /// Prompt tokens processed (not counting a reused cached prefix).
    pub prefill_tokens: u32,
    /// Prompt tokens reused from the session's cache.
    pub reused_prefix_tokens: u32,
    pub prefill_tok_per_s: f64,
    pub decode_tokens: u32,
    pub decode_tok_per_s: f64,
    /// Average passes per token (1 = no token was hard).
    pub passes_per_token: f64,
    /// Fraction of tokens that took more than one pass.
    pub hard_token_fraction: f64,
    /// KV cache entries at depth 2 at the end of the generation.
    pub depth2_kv_entries: u32,
    /// Largest KV cache size during the generation, in bytes.
    pub peak_kv_bytes: u64,
    /// Where the model ran: `cpu`, or `gpu: <adapter> (<backend>)`.
    pub device: String,
    /// Why a model asked for on the GPU ran on the CPU (`gpuFallback`).
    pub device_notice: Option<String>,
    /// Compute threads the generation ran on.
    pub threads: u32,
}

/// The outcome of a generation.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct GenerationResult {
    /// Everything generated (reasoning and answer).
    pub text: String,
    /// The part inside `<think>...</think>`.
    pub reasoning: String,
    /// The answer after the reasoning.
    pub content: String,
    pub stop_reason: StopReason,
    pub token_ids: Vec<u32>,
    pub stats: Stats,
}

impl From<ChatMessage> for chat_template::ChatMessage {
    fn from(m: ChatMessage) -> Self {
        let role = match m.role {
            Role::System => chat_template::Role::System,
            Role::User => chat_template::Role::User,
            Role::Assistant => chat_template::Role::Assistant,
        };
        chat_template::ChatMessage {
            role,
            content: m.content,
        }
    }
}

impl From<chat_template::ChatMessage> for ChatMessage {
    fn from(m: chat_template::ChatMessage) -> Self {
        let role = match m.role {
            chat_template::Role::System => Role::System,
            chat_template::Role::User => Role::User,
            chat_template::Role::Assistant => Role::Assistant,
        };
        ChatMessage {
            role,
            content: m.content,
        }
    }
}

impl From<Prompt> for engine::Prompt {
    fn from(p: Prompt) -> Self {
        match p {
            Prompt::Chat { messages } => {
                engine::Prompt::Chat(messages.into_iter().map(Into::into).collect())
            }
            Prompt::Raw { text } => engine::Prompt::Raw(text),
        }
    }
}

impl From<CoreIterationMode> for IterationMode {
    fn from(m: CoreIterationMode) -> Self {
        match m {
            CoreIterationMode::Decider => IterationMode::Decider,
            CoreIterationMode::Never => IterationMode::Never,
            CoreIterationMode::Always => IterationMode::Always,
        }
    }
}

impl From<IterationMode> for CoreIterationMode {
    fn from(m: IterationMode) -> Self {
        match m {
            IterationMode::Decider => CoreIterationMode::Decider,
            IterationMode::Never => CoreIterationMode::Never,
            IterationMode::Always => CoreIterationMode::Always,
        }
    }
}

impl From<engine::GenerationConfig> for GenerationConfig {
    fn from(c: engine::GenerationConfig) -> Self {
        GenerationConfig {
            temperature: c.temperature,
            top_k: saturate(c.top_k),
            top_p: c.top_p,
            min_p: c.min_p,
            repetition_penalty: c.repetition_penalty,
            seed: c.seed,
            max_new_tokens: saturate(c.max_new_tokens),
            stop: c.stop,
            enable_thinking: c.enable_thinking,
            mode: c.mode.into(),
            threshold: c.threshold,
            hard_token_budget: c.hard_token_budget,
            prefill_chunk: saturate(c.prefill_chunk),
        }
    }
}

impl GenerationConfig {
    /// The engine's config, validated.
    pub(crate) fn to_engine(&self) -> Result<engine::GenerationConfig, TahError> {
        let config = engine::GenerationConfig {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            max_new_tokens: self.max_new_tokens as usize,
            stop: self.stop.clone(),
            enable_thinking: self.enable_thinking,
            mode: self.mode.into(),
            threshold: self.threshold,
            hard_token_budget: self.hard_token_budget,
            prefill_chunk: self.prefill_chunk as usize,
        };
        config.validate()?;
        Ok(config)
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<engine::TokenEvent> for TokenEvent {
    fn from(e: engine::TokenEvent) -> Self {
        TokenEvent {
            text: e.text,
            token_id: e.token_id,
            depth: e.depth,
            index: e.index,
        }
    }
}

impl From<engine::StopReason> for StopReason {
    fn from(r: engine::StopReason) -> Self {
        match r {
            engine::StopReason::Eos => StopReason::Eos,
            engine::StopReason::StopString => StopReason::StopString,
            engine::StopReason::MaxTokens => StopReason::MaxTokens,
            engine::StopReason::ContextFull => StopReason::ContextFull,
            engine::StopReason::Cancelled => StopReason::Cancelled,
        }
    }
}

impl From<engine::GenerationStats> for Stats {
    fn from(s: engine::GenerationStats) -> Self {
        Stats {
            load_ms: s.load_ms,
            time_to_first_token_ms: s.time_to_first_token_ms,
            prefill_tokens: s.prefill_tokens,
            reused_prefix_tokens: s.reused_prefix_tokens,
            prefill_tok_per_s: s.prefill_tok_per_s,
            decode_tokens: s.decode_tokens,
            decode_tok_per_s: s.decode_tok_per_s,
            passes_per_token: s.passes_per_token,
            hard_token_fraction: s.hard_token_fraction,
            depth2_kv_entries: s.depth2_kv_entries,
            peak_kv_bytes: s.peak_kv_bytes,
            device: s.device,
            device_notice: s.device_notice,
            threads: s.threads,
        }
    }
}

impl From<engine::GenerationResult> for GenerationResult {
    fn from(r: engine::GenerationResult) -> Self {
        GenerationResult {
            text: r.text,
            reasoning: r.reasoning,
            content: r.content,
            stop_reason: r.stop_reason.into(),
            token_ids: r.token_ids,
            stats: r.stats.into(),
        }
    }
}

/// The compute backends of this build of the library.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ComputeBackends {
    /// The library was built with the `gpu` feature (`Device.GPU` can load).
    pub gpu_compiled: bool,
    /// The GPU adapter a model on `Device.GPU` would use (`null`/`nil`
    /// without the feature or without a usable GPU).
    pub gpu_adapter: Option<String>,
}

impl From<tah_core::device::Backends> for ComputeBackends {
    fn from(b: tah_core::device::Backends) -> Self {
        ComputeBackends {
            gpu_compiled: b.gpu_compiled,
            gpu_adapter: b.gpu_adapter,
        }
    }
}

/// Which compute backends this build has and which one the model uses.
#[uniffi::export]
pub fn compute_backends() -> ComputeBackends {
    tah_core::device::backends().into()
}

/// The default generation settings (Qwen3's thinking-mode sampling).
#[uniffi::export]
pub fn default_generation_config() -> GenerationConfig {
    engine::GenerationConfig::default().into()
}

/// Deterministic greedy (argmax) decoding settings.
#[uniffi::export]
pub fn greedy_generation_config() -> GenerationConfig {
    engine::GenerationConfig::greedy().into()
}
