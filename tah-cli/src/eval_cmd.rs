//! `tah eval`: accuracy and compute of a model on GSM8K-style JSONL, per
//! iteration mode (and per decider threshold, for a sweep), per kind of
//! question and for conversations, with each row compared question by
//! question with the first.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tah_core::eval::{
    answer_record, evaluate, read_jsonl, EvalItem, EvalSummary, Paired, Solved, Tally,
};
use tah_core::{IterationMode, IterationPolicy};

use crate::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// JSONL: `question` and `answer` (a number, or `"12 r 3"`) per line,
    /// or a conversation's `turns`; an optional `kind` groups the results.
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
    /// Write every answer here (JSONL: mode, threshold, kind, question,
    /// expected and predicted answer, right or not, the output).
    #[arg(long)]
    outputs: Option<PathBuf>,
    /// Greedy tokens per answer at most.
    #[arg(long, default_value_t = 384)]
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
    let mut outputs = match &args.outputs {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let mut rows = Vec::new();
    for policy in policies {
        policy.validate()?;
        let bar = ProgressBar::new(items.len() as u64)
            .with_style(style.clone())
            .with_prefix(mode_name(policy.mode));
        let threshold =
            (policy.mode == IterationMode::Decider).then(|| model.effective_threshold(&policy));
        let mut written = Ok(());
        let summary = evaluate(
            &model,
            &items,
            policy,
            args.max_new_tokens,
            |item, solved, s| {
                bar.set_message(format!("acc {:.1}%", 100.0 * s.accuracy()));
                bar.inc(1);
                if let (Some(out), Ok(())) = (&mut outputs, &written) {
                    written = write_answers(out, policy.mode, threshold, item, solved);
                }
            },
        )?;
        written.context("writing --outputs")?;
        bar.finish();
        rows.push((policy, summary));
    }
    if let Some(out) = &mut outputs {
        std::io::Write::flush(out).context("writing --outputs")?;
    }
    println!(
        "{:<8} {:>10} {:>9} {:>13} {:>7}",
        "mode", "threshold", "accuracy", "passes/token", "hard %"
    );
    for (i, (policy, s)) in rows.iter().enumerate() {
        print_row(&model, policy, s);
        print_kinds(s);
        if i > 0 {
            print_paired(&Paired::new(&s.outcomes, &rows[0].1.outcomes), &rows[0].0);
        }
    }
    Ok(())
}

fn write_answers(
    out: &mut impl std::io::Write,
    mode: IterationMode,
    threshold: Option<f32>,
    item: &EvalItem,
    solved: &[Solved],
) -> std::io::Result<()> {
    for (turn, s) in solved.iter().enumerate() {
        let mut record = answer_record(item, turn, s);
        record["mode"] = mode_name(mode).into();
        record["threshold"] = threshold.into();
        writeln!(out, "{record}")?;
    }
    Ok(())
}

fn fraction(t: &Tally) -> String {
    format!(
        "{:.1}% ({}/{})",
        100.0 * t.accuracy(),
        t.correct,
        t.questions
    )
}

/// Per kind, and for conversations the first against the later questions.
fn print_kinds(s: &EvalSummary) {
    for (kind, t) in &s.kinds {
        println!("  {kind:<14} {}", fraction(t));
    }
    if s.conversations.questions > 0 {
        println!(
            "  conversations: first questions {}, later questions {}, whole chats right {}",
            fraction(&s.first_turns),
            fraction(&s.later_turns),
            fraction(&s.conversations)
        );
    }
}

fn print_paired(p: &Paired, against: &IterationPolicy) {
    println!(
        "  vs {}: {:+.1} points, {} won / {} lost / {} tied, sign test p = {:.3}, \
         95% bootstrap interval [{:+.1}, {:+.1}]",
        mode_name(against.mode),
        100.0 * p.difference,
        p.wins,
        p.losses,
        p.ties,
        p.sign_test_p,
        100.0 * p.interval.0,
        100.0 * p.interval.1
    );
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
        s.all.correct,
        s.all.questions
    );
}
