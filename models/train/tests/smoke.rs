//! The whole recipe at smoke size (what CI runs): data, stage 0, oracle
//! labels, stage 1 + baselines, decider, checkpoints, runtime evaluation.

use tah_core::{LoadOptions, TahModel};
use tah_train::pipeline::{run, Recipe};

#[test]
fn smoke_recipe_runs_end_to_end() {
    let out = std::env::temp_dir().join(format!("tah-train-smoke-{}", std::process::id()));
    let results = run(&Recipe::smoke(), &out).unwrap();
    assert_eq!(results.eval.len(), 5);
    for r in &results.eval {
        assert_eq!(r.summary.items, Recipe::smoke().n_test);
        let passes = r.summary.passes_per_token();
        assert!((1.0..=2.0).contains(&passes), "{r:?}");
        // Every kind of the curriculum is evaluated, conversations too.
        assert_eq!(r.summary.kinds.len(), 6, "{r:?}");
        assert!(r.summary.later_turns.questions > 0, "{r:?}");
    }
    assert_eq!(results.comparisons.len(), 3);
    assert!(results.oracle_hard_fraction > 0.0);
    for model in ["tah", "base", "always"] {
        TahModel::load(&out.join(model), &LoadOptions::default()).unwrap();
    }
    for file in [
        "data/val.jsonl",
        "data/test.jsonl",
        "tah/iter_decider.safetensors",
        "results.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let _ = std::fs::remove_dir_all(&out);
}
