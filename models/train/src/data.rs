//! The task: grade-school arithmetic with worked, digit-by-digit solutions.
//!
//! Each solution line is one column (right to left) so carries, borrows and
//! partial-product carries are separate tokens; those are the tokens a small
//! model gets wrong, i.e. the "hard" ones. The last line is GSM8K's
//! `#### <answer>`.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub question: String,
    pub answer: i64,
    pub solution: String,
}

fn digits(n: u64, width: usize) -> Vec<u64> {
    (0..width).map(|i| (n / 10u64.pow(i as u32)) % 10).collect()
}

fn width(n: u64) -> usize {
    n.to_string().len()
}

/// `347 + 589`: `7+9=16`, `4+8+1=13`, `3+5+1=9`, `#### 936`.
pub fn addition(a: u64, b: u64) -> Problem {
    let w = width(a.max(b));
    let (da, db) = (digits(a, w), digits(b, w));
    let mut carry = 0;
    let mut lines = Vec::new();
    for i in 0..w {
        let sum = da[i] + db[i] + carry;
        let c = if carry > 0 {
            format!("+{carry}")
        } else {
            String::new()
        };
        lines.push(format!("{}+{}{c}={sum}", da[i], db[i]));
        carry = sum / 10;
    }
    finish(format!("What is {a} + {b}?"), lines, (a + b) as i64)
}

/// `532 - 278` (a >= b): `12-8=4`, `12-7=5`, `4-2=2`, `#### 254`. A borrow
/// shows as the adjusted top digit (`1` + digit, or digit - 1).
pub fn subtraction(a: u64, b: u64) -> Problem {
    let (a, b) = (a.max(b), a.min(b));
    let w = width(a);
    let (da, db) = (digits(a, w), digits(b, w));
    let mut borrow = 0;
    let mut lines = Vec::new();
    for i in 0..w {
        let top = da[i] as i64 - borrow;
        let (top, next) = if top < db[i] as i64 {
            (top + 10, 1)
        } else {
            (top, 0)
        };
        lines.push(format!("{top}-{}={}", db[i], top - db[i] as i64));
        borrow = next;
    }
    finish(format!("What is {a} - {b}?"), lines, a as i64 - b as i64)
}

/// `47 * 6`: `7*6=42`, `4*6+4=28`, `#### 282`.
pub fn multiplication(a: u64, b: u64) -> Problem {
    let w = width(a);
    let da = digits(a, w);
    let mut carry = 0;
    let mut lines = Vec::new();
    for &d in &da {
        let p = d * b + carry;
        let c = if carry > 0 {
            format!("+{carry}")
        } else {
            String::new()
        };
        lines.push(format!("{d}*{b}{c}={p}"));
        carry = p / 10;
    }
    finish(format!("What is {a} * {b}?"), lines, (a * b) as i64)
}

const NAMES: [&str; 6] = ["Ann", "Ben", "Cara", "Dan", "Eva", "Sam"];
const ITEMS: [&str; 5] = ["apples", "pens", "cards", "coins", "books"];

/// Two steps: `Ann has 23 pens, gets 15, gives 9. How many now?` -> `23+15=38`, `38-9=29`, `#### 29`.
pub fn word_problem(rng: &mut Rng) -> Problem {
    let name = rng.pick(&NAMES);
    let item = rng.pick(&ITEMS);
    let a = rng.range(10, 60);
    let b = rng.range(5, 39);
    let c = rng.range(2, a + b - 1);
    let question = format!("{name} has {a} {item}, gets {b}, gives {c}. How many now?");
    let lines = vec![
        format!("{a}+{b}={}", a + b),
        format!("{}-{c}={}", a + b, a + b - c),
    ];
    finish(question, lines, (a + b - c) as i64)
}

fn finish(question: String, mut lines: Vec<String>, answer: i64) -> Problem {
    lines.push(format!("#### {answer}"));
    Problem {
        question,
        answer,
        solution: lines.join("\n"),
    }
}

/// One random problem: 3-digit +/-, 2-3 digit times 1 digit, or a word problem.
pub fn sample(rng: &mut Rng) -> Problem {
    match rng.range(0, 9) {
        0..=2 => addition(rng.range(10, 999), rng.range(10, 999)),
        3..=5 => subtraction(rng.range(10, 999), rng.range(10, 999)),
        6..=7 => multiplication(rng.range(12, 999), rng.range(2, 9)),
        _ => word_problem(rng),
    }
}

/// Seeds of the three splits.
pub const TRAIN_SEED: u64 = 1;
pub const VAL_SEED: u64 = 2;
pub const TEST_SEED: u64 = 3;

/// `n` distinct problems from `seed`, none of whose questions is in `exclude`.
pub fn split(seed: u64, n: usize, exclude: &HashSet<String>) -> Vec<Problem> {
    let mut rng = Rng::new(seed);
    let mut seen = exclude.clone();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let p = sample(&mut rng);
        if seen.insert(p.question.clone()) {
            out.push(p);
        }
    }
    out
}

/// Test and validation first, so training never sees their questions.
pub fn splits(n_train: usize, n_val: usize, n_test: usize) -> [Vec<Problem>; 3] {
    let test = split(TEST_SEED, n_test, &HashSet::new());
    let held: HashSet<String> = test.iter().map(|p| p.question.clone()).collect();
    let val = split(VAL_SEED, n_val, &held);
    let held: HashSet<String> = held
        .into_iter()
        .chain(val.iter().map(|p| p.question.clone()))
        .collect();
    let train = split(TRAIN_SEED, n_train, &held);
    [train, val, test]
}

pub fn write_jsonl(path: &Path, problems: &[Problem]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for p in problems {
        writeln!(f, "{}", serde_json::to_string(p)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_solutions() {
        assert_eq!(
            addition(347, 589).solution,
            "7+9=16\n4+8+1=13\n3+5+1=9\n#### 936"
        );
        assert_eq!(
            subtraction(532, 278).solution,
            "12-8=4\n12-7=5\n4-2=2\n#### 254"
        );
        assert_eq!(multiplication(47, 6).solution, "7*6=42\n4*6+4=28\n#### 282");
        assert_eq!(subtraction(100, 1).answer, 99);
    }

    #[test]
    fn splits_are_seeded_and_disjoint() {
        let [train, val, test] = splits(200, 50, 50);
        assert_eq!(splits(200, 50, 50)[0], train);
        let held: HashSet<_> = val.iter().chain(&test).map(|p| &p.question).collect();
        assert!(train.iter().all(|p| !held.contains(&p.question)));
        for p in train.iter().chain(&val).chain(&test) {
            assert!(p.solution.ends_with(&format!("#### {}", p.answer)));
        }
    }
}
