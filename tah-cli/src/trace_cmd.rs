//! `tah trace`.

use anyhow::{bail, Context};
use tah_core::trace::{trace, Trace, TraceInput, TraceRequest};
use tah_core::{IterationMode, IterationPolicy, TahModel};

use crate::{colour, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', group = "input")]
    ids: Option<Vec<u32>>,
    /// Raw text, tokenized as is.
    #[arg(long, group = "input")]
    prompt: Option<String>,
    /// One user message, rendered with the model's chat template (thinking on).
    #[arg(long, group = "input")]
    chat: Option<String>,
    /// Greedy tokens to decode after the prefill.
    #[arg(long, default_value_t = 24)]
    new_tokens: usize,
    /// Prefill the first K tokens, then the rest as a second chunk.
    #[arg(long)]
    split: Option<usize>,
    /// decider (the model as trained), never (plain Qwen3) or always.
    #[arg(long, default_value = "decider")]
    mode: IterationMode,
    /// Decider threshold override (rounded to bf16 like the reference).
    #[arg(long)]
    threshold: Option<f32>,
    /// Print one JSON object instead of coloured text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let input = match (&args.ids, &args.prompt, &args.chat) {
        (Some(ids), None, None) => TraceInput::Ids(ids.clone()),
        (None, Some(p), None) => TraceInput::Prompt(p.clone()),
        (None, None, Some(c)) => TraceInput::Chat(c.clone()),
        _ => bail!("give exactly one of --ids, --prompt or --chat"),
    };
    // Traces are compared with the reference, which computes in f32.
    let mut model_args = args.model.clone();
    model_args
        .kv_precision
        .get_or_insert(tah_core::KvPrecision::F32);
    let model = model_args.load().context("loading the model")?;
    let request = TraceRequest {
        input,
        new_tokens: args.new_tokens,
        split: args.split,
        policy: IterationPolicy {
            mode: args.mode,
            threshold: args.threshold,
            forced_hard_rate: None,
        },
    };
    let result = trace(&model, &request)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print_for_people(&model, &result)?;
    }
    Ok(())
}

fn print_for_people(model: &TahModel, t: &Trace) -> anyhow::Result<()> {
    let colour = colour::enabled();
    let text_of = |id: u32| -> String {
        model
            .tokenizer()
            .and_then(|tok| tok.decode(&[id]))
            .unwrap_or_else(|_| format!("[{id}]"))
    };
    let mut out = String::new();
    for (&id, &depth) in t.input_ids.iter().zip(&t.prefill.iter_count) {
        out.push_str(&colour::by_depth(&text_of(id), depth, colour));
    }
    out.push_str(if colour { "\x1b[2m│\x1b[0m" } else { "│" });
    for (&id, &depth) in t.decode.tokens.iter().zip(&t.decode.iter_count) {
        out.push_str(&colour::by_depth(&text_of(id), depth, colour));
    }
    println!("{out}");
    println!(
        "{} prompt + {} generated tokens, {:.3} passes/token, {:.1}% hard (max {} passes; highlighted tokens took more than one)",
        t.input_ids.len(),
        t.decode.tokens.len(),
        t.passes_per_token(),
        100.0 * t.hard_fraction(),
        model.max_iter(),
    );
    Ok(())
}
