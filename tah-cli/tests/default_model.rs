//! The committed default model (`models/arith-tah.gguf`) through the real
//! `tah` binary, with no `--model`: it loads and actually does arithmetic.

use std::process::Command;

fn tah(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tah"))
        .args(args)
        .output()
        .expect("running tah");
    assert!(
        out.status.success(),
        "tah {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn generate_without_model_works_the_readme_question() {
    let answer = tah(&["generate", "What is 347 + 589?", "--temperature", "0"]);
    assert_eq!(answer.trim_end(), "7+9=16\n4+8+1=13\n3+5+1=9\n#### 936");
}

#[test]
fn eval_without_model_solves_held_out_problems() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/arith-test.jsonl");
    let table = tah(&[
        "eval",
        "--data",
        data,
        "--limit",
        "50",
        "--modes",
        "never,decider",
    ]);
    // Rows end in `(N/50 correct)`. The model scores ~70% on the full split;
    // a model that no longer loads right or lost its training scores ~0%.
    let correct: Vec<usize> = table
        .lines()
        .filter_map(|l| l.split('(').nth(1)?.split('/').next()?.parse().ok())
        .collect();
    assert_eq!(correct.len(), 2, "{table}");
    for c in correct {
        assert!(c >= 25, "only {c}/50 correct:\n{table}");
    }
}
