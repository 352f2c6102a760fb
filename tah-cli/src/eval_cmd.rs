//! `tah eval`: accuracy and compute of a model on GSM8K-style JSONL, per
//! iteration mode (and per decider threshold, for a sweep).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tah_core::eval::{evaluate, read_jsonl, EvalSummary};
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
    /// Decider thresholds, comma-separated: `decider` runs once per value
    /// (rounded to bf16 like the reference). Default: the model's own.
    #[arg(long, value_delimiter = ',')]
    threshold: Vec<f32>,
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
    let thresholds: Vec<Option<f32>> = if args.threshold.is_empty() {
        vec![None]
    } else {
        args.threshold.iter().copied().map(Some).collect()
    };
    let policies = modes.iter().flat_map(|&mode| {
        let per_mode = if mode == IterationMode::Decider {
            thresholds.clone()
        } else {
            vec![None]
        };
        per_mode.into_iter().map(move |threshold| IterationPolicy {
            mode,
            threshold,
            ..Default::default()
        })
    });
    let style = ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")?
        .progress_chars("=> ");
    let mut rows = Vec::new();
    for policy in policies {
        policy.validate()?;
        let bar = ProgressBar::new(items.len() as u64)
            .with_style(style.clone())
            .with_prefix(mode_name(policy.mode));
        let summary = evaluate(&model, &items, policy, args.max_new_tokens, |s| {
            bar.set_message(format!("acc {:.1}%", 100.0 * s.accuracy()));
            bar.inc(1);
        })?;
        bar.finish();
        rows.push((policy, summary));
    }
    println!(
        "{:<8} {:>10} {:>9} {:>13} {:>7}",
        "mode", "threshold", "accuracy", "passes/token", "hard %"
    );
    for (policy, s) in rows {
        print_row(&model, &policy, &s);
    }
    Ok(())
}

fn mode_name(mode: IterationMode) -> String {
    format!("{mode:?}").to_lowercase()
}

fn print_row(model: &tah_core::TahModel, policy: &IterationPolicy, s: &EvalSummary) {
    // `never` / `always` are thresholds 1 / -1 in the reference; show the
    // decider's actual (bf16) threshold only where it matters.
    let threshold = match policy.mode {
        IterationMode::Decider => format!("{}", model.effective_threshold(policy)),
        _ => "-".into(),
    };
    println!(
        "{:<8} {:>10} {:>8.1}% {:>13.3} {:>6.1}%   ({}/{} correct)",
        mode_name(policy.mode),
        threshold,
        100.0 * s.accuracy(),
        s.passes_per_token(),
        100.0 * s.hard_fraction(),
        s.correct,
        s.items
    );
}
