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
    /// Override the stage-0 steps (default 800: the shipped model).
    #[arg(long)]
    stage0_steps: Option<usize>,
    /// Override the stage-1 steps of TaH and both baselines (default 300).
    #[arg(long)]
    stage1_steps: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let recipe = if args.smoke {
        Recipe::smoke()
    } else {
        Recipe::full()
    };
    let results = run(&recipe, &args.out)?;
    println!("| model | mode | accuracy | passes/token | hard % |");
    println!("| --- | --- | --- | --- | --- |");
    for r in &results.eval {
        println!(
            "| {} | {} | {:.1}% | {:.3} | {:.1}% |",
            r.model,
            r.mode,
            100.0 * r.accuracy,
            r.passes_per_token,
            100.0 * r.hard_fraction
        );
    }
    Ok(())
}
