//! `tah convert`: a Hugging Face TaH checkpoint directory (or a GGUF file,
//! to change its type) -> one GGUF file.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use tah_core::gguf::{convert, ConvertOptions, ConvertSummary, Quant};

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint directory (Hugging Face layout), or a GGUF model file
    /// to rewrite with another --quant.
    #[arg(long)]
    from: PathBuf,
    /// The GGUF file to write.
    #[arg(long)]
    to: PathBuf,
    /// Type of the large base matrices: f32, f16, bf16, q8_0, q4_k or q4_0.
    #[arg(long, default_value = "q8_0")]
    quant: Quant,
    /// tokenizer.json to embed (default: FROM/tokenizer.json, or the one a
    /// GGUF input embeds).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Overwrite TO if it exists.
    #[arg(long)]
    force: bool,
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A progress bar over the bytes written, and the callback that drives it.
pub fn write_progress() -> anyhow::Result<(ProgressBar, impl FnMut(usize, usize, &str))> {
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {msg}",
    )?);
    let driven = bar.clone();
    Ok((bar, move |done: usize, total: usize, name: &str| {
        driven.set_length(total as u64);
        driven.set_position(done as u64);
        driven.set_message(name.to_string());
    }))
}

pub fn run(args: &ConvertArgs) -> anyhow::Result<()> {
    let options = ConvertOptions {
        quant: args.quant,
        tokenizer: args.tokenizer.clone(),
        force: args.force,
    };
    let (bar, mut progress) = write_progress()?;
    let summary = convert(&args.from, &args.to, &options, &mut progress);
    bar.finish_and_clear();
    print_summary(&args.to, &summary?, args.quant);
    Ok(())
}

/// What a GGUF writer wrote: size, parts with bits per weight, fallbacks.
pub fn print_summary(to: &std::path::Path, summary: &ConvertSummary, quant: Quant) {
    println!(
        "wrote {} ({}, {} tensors, quant {:?})",
        to.display(),
        mib(summary.file_bytes as usize),
        summary.tensors,
        quant
    );
    for (part, size) in &summary.parts {
        println!(
            "  {part:<12} {:>12}  {:>6.2} bits/weight  ({} weights)",
            mib(size.bytes),
            size.bits_per_weight(),
            size.elements
        );
    }
    println!(
        "  {:<12} {:>12}  (settings, tokenizer, chat template, tensor index)",
        "header",
        mib(summary.header_bytes)
    );
    let mut fallbacks = Vec::new();
    for (_, wanted, used) in &summary.fallbacks {
        match fallbacks
            .iter_mut()
            .find(|(w, u, _)| w == wanted && u == used)
        {
            Some((_, _, count)) => *count += 1,
            None => fallbacks.push((*wanted, *used, 1usize)),
        }
    }
    for (wanted, used, count) in fallbacks {
        println!(
            "  fallback {wanted:?} -> {used:?} for {count} tensors (rows are not whole {wanted:?} blocks)"
        );
    }
}
