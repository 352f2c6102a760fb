//! `tah generate` and `tah chat`: streaming generation through a `TahSession`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use tah_core::{
    CancelHandle, ChatMessage, GenerationConfig, GenerationResult, IterationMode, Prompt,
    StopReason, TahModel, TahSession, TokenEvent,
};

use crate::{colour, ModelArgs};

/// Sampling and policy options shared by `generate` and `chat`.
#[derive(clap::Args, Debug)]
pub struct GenerationArgs {
    /// 0 = greedy. Default: Qwen3's thinking-mode 0.6.
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    min_p: Option<f32>,
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Same seed, same output.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Stop at this string (not printed); repeatable.
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// decider (the model as trained), never (plain Qwen3) or always.
    #[arg(long, default_value = "decider")]
    mode: IterationMode,
    /// Decider threshold override (rounded to bf16 like the reference).
    #[arg(long)]
    threshold: Option<f32>,
    /// At most this many tokens per 100 take a second pass.
    #[arg(long)]
    hard_budget: Option<u32>,
    /// Chat template with thinking disabled (Qwen3's empty think block).
    #[arg(long)]
    no_think: bool,
}

impl GenerationArgs {
    fn config(&self) -> GenerationConfig {
        let d = GenerationConfig::default();
        GenerationConfig {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repetition_penalty: self.repeat_penalty.unwrap_or(d.repetition_penalty),
            seed: self.seed,
            max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
            stop: self.stop.clone(),
            enable_thinking: !self.no_think,
            mode: self.mode,
            threshold: self.threshold,
            hard_token_budget: self.hard_budget,
            ..d
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// One user message, rendered with the model's chat template.
    #[arg(long, group = "input")]
    chat: Option<String>,
    /// Raw text, tokenized as is (no template).
    #[arg(long, group = "input")]
    prompt: Option<String>,
    /// Same as --chat.
    #[arg(group = "input")]
    message: Option<String>,
    /// A system message before the user message (chat input only).
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    generation: GenerationArgs,
    /// One JSON object per token, then one with the result and stats.
    #[arg(long)]
    json_events: bool,
}

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message for the whole conversation.
    #[arg(long)]
    system: Option<String>,
    /// Continue the conversation saved in FILE when it exists (a damaged
    /// file is an error and is left as it is), and save it there after
    /// every answer.
    #[arg(long, value_name = "FILE")]
    session: Option<PathBuf>,
    #[command(flatten)]
    generation: GenerationArgs,
}

/// Ctrl-C cancels the running generation instead of ending the program.
fn install_ctrl_c(cancel: &CancelHandle, busy: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let (cancel, busy) = (cancel.clone(), Arc::clone(busy));
    ctrlc::set_handler(move || {
        if busy.load(Ordering::Relaxed) {
            cancel.cancel();
        } else {
            eprint!("\n(Ctrl-D or /exit to quit)\n> ");
        }
    })
    .context("installing the Ctrl-C handler")
}

pub fn run_generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let prompt = match (&args.chat, &args.message, &args.prompt) {
        (Some(text), None, None) | (None, Some(text), None) => {
            let mut messages: Vec<ChatMessage> =
                args.system.iter().map(ChatMessage::system).collect();
            messages.push(ChatMessage::user(text.clone()));
            Prompt::Chat(messages)
        }
        (None, None, Some(text)) if args.system.is_none() => Prompt::Raw(text.clone()),
        (None, None, Some(_)) => bail!("--system needs a chat message, not --prompt"),
        _ => bail!("give a message, --chat or --prompt"),
    };
    let config = args.generation.config();
    config.validate()?;
    let model = Arc::new(args.model.load().context("loading the model")?);
    let mut session = TahSession::new(model);
    let cancel = CancelHandle::new();
    install_ctrl_c(&cancel, &Arc::new(AtomicBool::new(true)))?;

    let result = if args.json_events {
        let mut stdout = std::io::stdout().lock();
        let result = session.generate(&prompt, &config, &cancel, &mut |e| {
            // A closed pipe is not worth aborting the generation for.
            let _ = writeln!(stdout, "{}", serde_json::to_string(e).unwrap_or_default());
        })?;
        writeln!(stdout, "{}", serde_json::to_string(&result)?)?;
        return Ok(());
    } else {
        let mut printer = Printer::new();
        session.generate(&prompt, &config, &cancel, &mut |e| printer.print(e))?
    };
    println!();
    eprintln!("{}", stats_line(&result));
    Ok(())
}

pub fn run_chat(args: &ChatArgs) -> anyhow::Result<()> {
    let config = args.generation.config();
    config.validate()?;
    let model = Arc::new(args.model.load().context("loading the model")?);
    let opening: Vec<ChatMessage> = args.system.iter().map(ChatMessage::system).collect();
    let mut session = open_session(model, args.session.as_deref(), &opening)?;
    let save = |session: &TahSession| {
        if let Some(path) = &args.session {
            if let Err(e) = session.save_state(path) {
                eprintln!("error: the conversation was not saved: {e}");
            }
        }
    };
    let cancel = CancelHandle::new();
    let busy = Arc::new(AtomicBool::new(false));
    install_ctrl_c(&cancel, &busy)?;
    eprintln!(
        "Chatting. Ctrl-C stops an answer; /reset clears the conversation; Ctrl-D or /exit quits."
    );

    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                session.reset();
                session.set_history(opening.clone());
                save(&session);
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        let mut printer = Printer::new();
        cancel.reset();
        busy.store(true, Ordering::Relaxed);
        let result = session.chat(input, &config, &cancel, &mut |e| printer.print(e));
        busy.store(false, Ordering::Relaxed);
        println!();
        match result {
            Ok(result) => {
                eprintln!("{}", stats_line(&result));
                save(&session);
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

/// The session `tah chat` continues: the one saved in `path` when it
/// exists, else a new one opened by `opening`.
fn open_session(
    model: Arc<TahModel>,
    path: Option<&Path>,
    opening: &[ChatMessage],
) -> anyhow::Result<TahSession> {
    let Some(path) = path.filter(|p| p.exists()) else {
        let mut session = TahSession::new(model);
        session.set_history(opening.to_vec());
        return Ok(session);
    };
    let session = TahSession::restore(model, path).with_context(|| {
        format!(
            "cannot continue the conversation saved in {} (the file was left as it is; \
             remove it or choose another --session to start a new one)",
            path.display()
        )
    })?;
    eprintln!(
        "(continuing the conversation saved in {}: {} messages, {} tokens cached)",
        path.display(),
        session.history().len(),
        session.cached_tokens()
    );
    if !opening.is_empty() && session.history().first() != opening.first() {
        eprintln!("note: --system is ignored: the saved conversation has its own opening");
    }
    Ok(session)
}

/// Streams token text to stdout, coloured by depth.
struct Printer {
    colour: bool,
    stdout: std::io::Stdout,
}

impl Printer {
    fn new() -> Self {
        Self {
            colour: colour::enabled(),
            stdout: std::io::stdout(),
        }
    }

    fn print(&mut self, event: &TokenEvent) {
        let text = colour::by_depth(&event.text, event.depth as usize, self.colour);
        let mut out = self.stdout.lock();
        // Best effort: a closed terminal should not abort the generation.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

fn stats_line(r: &GenerationResult) -> String {
    let s = &r.stats;
    let stop = match r.stop_reason {
        StopReason::Eos => "eos",
        StopReason::StopString => "stop string",
        StopReason::MaxTokens => "max tokens",
        StopReason::ContextFull => "context full",
        StopReason::Cancelled => "cancelled",
    };
    format!(
        "[{stop}] load {:.0} ms | ttft {:.1} ms | prefill {} tok ({} reused) {:.1} tok/s | \
         decode {} tok {:.1} tok/s | {:.3} passes/tok, {:.1}% hard | depth-2 KV {} | peak KV {:.1} KiB",
        s.load_ms,
        s.time_to_first_token_ms,
        s.prefill_tokens,
        s.reused_prefix_tokens,
        s.prefill_tok_per_s,
        s.decode_tokens,
        s.decode_tok_per_s,
        s.passes_per_token,
        100.0 * s.hard_token_fraction,
        s.depth2_kv_entries,
        s.peak_kv_bytes as f64 / 1024.0,
    )
}
