//! `tah`: the command-line tool of the TaH SDK.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod colour;
mod eval_cmd;
mod trace_cmd;

#[derive(Parser)]
#[command(
    name = "tah",
    version,
    about = "Run Think-at-Hard (TaH) models on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prefill a prompt, decode greedily and show what every token cost
    /// (passes, decider probabilities, top logits).
    Trace(trace_cmd::TraceArgs),
    /// Accuracy, passes per token and hard-token share on GSM8K-style JSONL,
    /// per iteration mode.
    Eval(eval_cmd::EvalArgs),
}

/// The model trained by `models/train` and committed with the SDK, found
/// through the source tree this binary was built from.
const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/arith-tah");

/// Options shared by every command that loads a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a TaH checkpoint directory (Hugging Face layout). Default: the
    /// arithmetic model shipped in the repository (`models/arith-tah`).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// tokenizer.json to use instead of the one next to the model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<tah_core::TahModel> {
        let options = tah_core::LoadOptions {
            tokenizer: self.tokenizer.clone(),
            context_length: None,
        };
        let default = || PathBuf::from(DEFAULT_MODEL);
        let model = self.model.clone().unwrap_or_else(default);
        Ok(tah_core::TahModel::load(&model, &options)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => trace_cmd::run(&args),
        Command::Eval(args) => eval_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
