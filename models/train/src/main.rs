//! `tah-train`: runs the recipe of `models/README.md`.

use std::path::PathBuf;

use clap::Parser;
use tah_train::pipeline::{run, Recipe};

#[derive(Parser)]
#[command(
    name = "tah-train",
    about = "Train the default TaH arithmetic model from scratch"
)]
struct Args {
    /// Output directory (data/, tah/, base/, always/, results.json).
    #[arg(long, default_value = "target/tah-train")]
    out: PathBuf,
    /// Tiny sizes and budgets: the whole pipeline in about a minute.
    #[arg(long)]
    smoke: bool,
    /// Override the stage-0 steps (default: the shipped model's 2000).
    #[arg(long)]
    stage0_steps: Option<usize>,
    /// Override the stage-1 steps of TaH and both baselines (default 500).
    #[arg(long)]
    stage1_steps: Option<usize>,
    /// Override the oracle's confidence bar (default 0.9; 0 = only the
    /// reference's mistakes are hard, the paper's oracle).
    #[arg(long)]
    oracle_min_prob: Option<f32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut recipe = if args.smoke {
        Recipe::smoke()
    } else {
        Recipe::full()
    };
    recipe.stage0.steps = args.stage0_steps.unwrap_or(recipe.stage0.steps);
    recipe.stage1.steps = args.stage1_steps.unwrap_or(recipe.stage1.steps);
    recipe.oracle_min_prob = args.oracle_min_prob.unwrap_or(recipe.oracle_min_prob);
    let results = run(&recipe, &args.out)?;
    println!("| model | mode | threshold | accuracy | passes/token | hard % |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &results.eval {
        println!(
            "| {} | {} | {} | {:.1}% | {:.3} | {:.1}% |",
            r.model,
            r.mode,
            r.threshold.map_or("-".into(), |t| t.to_string()),
            100.0 * r.accuracy,
            r.passes_per_token,
            100.0 * r.hard_fraction
        );
    }
    Ok(())
}
