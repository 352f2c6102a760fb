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
    /// Training steps of the base / TaH run (the second stage scales along).
    #[arg(long)]
    steps: Option<usize>,
    /// Hidden size (head_dim = hidden / heads, MLP = 3 x hidden).
    #[arg(long)]
    hidden: Option<usize>,
    /// Layers.
    #[arg(long)]
    layers: Option<usize>,
    /// The oracle's confidence bar (0 = only the reference's mistakes are
    /// hard, the paper's oracle).
    #[arg(long)]
    oracle_min_prob: Option<f32>,
    /// Test problems (the shipped split: the default).
    #[arg(long)]
    n_test: Option<usize>,
    /// Validation problems (the threshold's choice).
    #[arg(long)]
    n_val: Option<usize>,
    /// Pilot runs: no AlwaysThink baseline.
    #[arg(long)]
    no_always_think: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut recipe = if args.smoke {
        Recipe::smoke()
    } else {
        Recipe::full()
    };
    if let Some(steps) = args.steps {
        let t = &mut recipe.training;
        let share = t.stage1_from as f64 / t.backbone.steps as f64;
        t.backbone.steps = steps;
        t.stage1_from = (steps as f64 * share).round() as usize;
        t.lora.steps = steps - t.stage1_from;
    }
    let q = &mut recipe.net.qwen;
    if let Some(h) = args.hidden {
        q.hidden_size = h;
        q.head_dim = h / q.num_attention_heads;
        q.intermediate_size = 3 * h;
        recipe.decider.hidden_states_size = h;
    }
    if let Some(l) = args.layers {
        q.num_hidden_layers = l;
        recipe.decider.hidden_states_layer_nums = vec![0, l / 2, l];
    }
    if let Some(p) = args.oracle_min_prob {
        recipe.training.oracle.min_prob = p;
    }
    recipe.n_test = args.n_test.unwrap_or(recipe.n_test);
    recipe.n_val = args.n_val.unwrap_or(recipe.n_val);
    recipe.training.always_think &= !args.no_always_think;
    let results = run(&recipe, &args.out)?;
    println!("| model | mode | threshold | accuracy | passes/token | hard % |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &results.eval {
        println!(
            "| {} | {} | {} | {:.1}% | {:.3} | {:.1}% |",
            r.model,
            r.mode,
            r.threshold.map_or("-".into(), |t| t.to_string()),
            100.0 * r.accuracy(),
            r.summary.passes_per_token(),
            100.0 * r.summary.hard_fraction()
        );
    }
    Ok(())
}
