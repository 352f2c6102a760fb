//! `tah`: the command-line tool of the TaH SDK.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_cmd;
mod colour;
mod convert_cmd;
mod eval_cmd;
mod generate_cmd;
mod init_random_cmd;
mod trace_cmd;

#[derive(Parser)]
#[command(
    name = "tah",
    version,
    about = "Run Think-at-Hard (TaH) models on the CPU or the GPU"
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
    /// Measure prefill / decode speed, passes per token, peak RSS and load
    /// time per iteration mode (like llama-bench).
    Bench(bench_cmd::BenchArgs),
    /// Generate an answer, streamed token by token (tokens that took more
    /// than one pass highlighted), then a stats line.
    Generate(generate_cmd::GenerateArgs),
    /// Interactive multi-turn chat (Ctrl-C stops the current answer).
    Chat(generate_cmd::ChatArgs),
    /// Convert a checkpoint directory into one quantized, memory-mapped
    /// GGUF model file.
    Convert(convert_cmd::ConvertArgs),
    /// Write a random-weight model with real shapes (Qwen3-0.6B + the
    /// released TaH recipe) for benchmarks, or its plain-Qwen3 twin.
    InitRandom(init_random_cmd::InitRandomArgs),
    /// Accuracy, passes per token and hard-token share on GSM8K-style JSONL,
    /// per iteration mode.
    Eval(eval_cmd::EvalArgs),
}

/// The model trained by `models/train` and committed with the SDK (as the
/// GGUF file `tah convert` writes), found through the source tree this binary
/// was built from.
const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/arith-tah.gguf");

/// Options shared by every command that loads a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a TaH checkpoint directory (Hugging Face layout) or a `.gguf`
    /// file written by `tah convert` (or a plain Qwen3 GGUF). Default: the
    /// arithmetic model shipped in the repository (`models/arith-tah.gguf`).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// tokenizer.json to use instead of the one next to the model.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Context length in tokens (default: the model's maximum).
    #[arg(long)]
    pub context_length: Option<usize>,
    /// KV cache precision: f32, f16 or q8 (8-bit, about a quarter of f32).
    /// Default: f16, except `tah trace`, which compares with the reference
    /// and uses f32.
    #[arg(long = "kv")]
    pub kv_precision: Option<tah_core::KvPrecision>,
    /// Where the model runs: cpu or gpu (needs a build with the `gpu`
    /// feature: `cargo build -p tah-cli --features gpu`).
    #[arg(long, default_value = "cpu")]
    pub device: tah_core::ComputeDevice,
    /// GPU: use only an adapter whose name contains this.
    #[arg(long)]
    pub gpu_adapter: Option<String>,
    /// GPU: run on the CPU (with a notice) when the GPU cannot run the model.
    #[arg(long)]
    pub gpu_fallback: bool,
}

impl ModelArgs {
    /// The model path, or the shipped default.
    pub fn path(&self) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL))
    }

    /// The KV cache precision asked for, else the library's default.
    pub fn kv_precision(&self) -> tah_core::KvPrecision {
        self.kv_precision.unwrap_or_default()
    }

    pub fn load(&self) -> anyhow::Result<tah_core::TahModel> {
        let options = tah_core::LoadOptions {
            tokenizer: self.tokenizer.clone(),
            context_length: self.context_length,
            kv_precision: self.kv_precision(),
            device: self.device,
            gpu: tah_core::GpuOptions {
                adapter: self.gpu_adapter.clone(),
                fallback_to_cpu: self.gpu_fallback,
                ..Default::default()
            },
        };
        let model = tah_core::TahModel::load(&self.path(), &options)?;
        for notice in [model.notice(), model.device_notice()]
            .into_iter()
            .flatten()
        {
            eprintln!("note: {notice}");
        }
        Ok(model)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => trace_cmd::run(&args),
        Command::Bench(args) => bench_cmd::run(&args),
        Command::Generate(args) => generate_cmd::run_generate(&args),
        Command::Chat(args) => generate_cmd::run_chat(&args),
        Command::Convert(args) => convert_cmd::run(&args),
        Command::InitRandom(args) => init_random_cmd::run(&args),
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
