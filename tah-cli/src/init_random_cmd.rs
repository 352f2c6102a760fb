//! `tah init-random`: a random-weight model file with real shapes, for
//! benchmarks (see `tah_core::gguf::random` for what the weights are).

use std::path::PathBuf;
use std::time::Instant;

use tah_core::gguf::{read_embedded_texts, write_random, Quant, RandomModelOptions, RandomShape};

use crate::convert_cmd::{print_summary, write_progress};

/// The real Qwen3 tokenizer, committed with the test fixtures.
const DEFAULT_TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tah-core/tests/fixtures/qwen3-tokenizer/tokenizer.json"
);

#[derive(clap::Args, Debug)]
pub struct InitRandomArgs {
    /// Model shape: qwen3-0.6b (with the released TaH recipe) or tiny.
    #[arg(long, default_value = "qwen3-0.6b")]
    shape: RandomShape,
    /// Type of the large base matrices: f32, f16, bf16, q8_0, q4_k or q4_0
    /// (q4_k: Q6_K tied embedding, Q4_K projections).
    #[arg(long, default_value = "q4_k")]
    quant: Quant,
    /// The GGUF file to write.
    #[arg(long)]
    out: PathBuf,
    /// Seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write a plain Qwen3 file (same base tensors as the TaH file of the same
    /// seed, no TaH parts, llama.cpp's tokenizer keys) that llama.cpp can run.
    #[arg(long)]
    base_only: bool,
    /// tokenizer.json to embed (default: the repository's Qwen3 tokenizer);
    /// the chat template comes from tokenizer_config.json next to it, if any.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &InitRandomArgs) -> anyhow::Result<()> {
    let tokenizer = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKENIZER));
    let (tokenizer_json, chat_template) = read_embedded_texts(
        &tokenizer,
        &tokenizer.with_file_name("tokenizer_config.json"),
    )?;
    let options = RandomModelOptions {
        shape: args.shape.clone(),
        quant: args.quant,
        seed: args.seed,
        base_only: args.base_only,
        tokenizer_json,
        chat_template,
        force: args.force,
    };
    let start = Instant::now();
    let (bar, mut progress) = write_progress()?;
    let summary = write_random(&args.out, &options, &mut progress);
    bar.finish_and_clear();
    print_summary(&args.out, &summary?, args.quant);
    println!(
        "  random {} {} model, seed {}, written in {:.1?}",
        args.shape.name,
        if args.base_only { "base-only" } else { "TaH" },
        args.seed,
        start.elapsed()
    );
    Ok(())
}
