//! `tah eval`: accuracy and compute of a model on GSM8K-style JSONL, per
//! iteration mode.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tah_core::eval::{read_jsonl, solve, EvalSummary};
use tah_core::{IterationMode, IterationPolicy};

use crate::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// JSONL with `question` and a numeric `answer` per line.
    #[arg(long)]
    data: PathBuf,
    /// Modes to run, comma-separated (default: never, decider, always; a
    /// model without a second pass runs `never` only).
    #[arg(long, value_delimiter = ',')]
    modes: Option<Vec<IterationMode>>,
    /// Evaluate only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Greedy tokens per answer at most.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let model = args.model.load().context("loading the model")?;
    let mut items = read_jsonl(&args.data)?;
    items.truncate(args.limit.unwrap_or(items.len()));
    let modes = match &args.modes {
        Some(m) => m.clone(),
        None if model.max_iter() > 1 => {
            vec![
                IterationMode::Never,
                IterationMode::Decider,
                IterationMode::Always,
            ]
        }
        None => vec![IterationMode::Never],
    };
    let style = ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")?
        .progress_chars("=> ");
    let mut rows = Vec::new();
    for mode in modes {
        let bar = ProgressBar::new(items.len() as u64)
            .with_style(style.clone())
            .with_prefix(format!("{mode:?}").to_lowercase());
        let policy = IterationPolicy {
            mode,
            ..Default::default()
        };
        let mut summary = EvalSummary::default();
        for item in &items {
            summary.add(&solve(&model, item, policy, args.max_new_tokens)?);
            bar.set_message(format!("acc {:.1}%", 100.0 * summary.accuracy()));
            bar.inc(1);
        }
        bar.finish();
        rows.push((mode, summary));
    }
    println!(
        "{:<8} {:>9} {:>13} {:>7}",
        "mode", "accuracy", "passes/token", "hard %"
    );
    for (mode, s) in rows {
        println!(
            "{:<8} {:>8.1}% {:>13.3} {:>6.1}%   ({}/{} correct)",
            format!("{mode:?}").to_lowercase(),
            100.0 * s.accuracy(),
            s.passes_per_token(),
            100.0 * s.hard_fraction(),
            s.correct,
            s.items
        );
    }
    Ok(())
}
