//! The curriculum a primary-school tutor is asked: addition and subtraction
//! of 1- to 4-digit numbers, long multiplication up to 2 by 2 digits (and 3
//! by 1), long division by one digit with remainder, two-step word problems
//! over these, each asked several ways, and chats of several questions.
//!
//! Every answer is a worked solution (`worked`) ending with GSM8K's
//! `#### <answer>` (`#### 182 r 4` for a division with remainder). The
//! test and validation splits are fixed by their seeds; training draws an
//! endless seeded stream that skips every problem of the held-out splits
//! (the same numbers asked another way included).

pub mod phrasing;
pub mod worked;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::rng::Rng;
use worked::{work, Answer, Op};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Add,
    Sub,
    Mul,
    Div,
    Word,
    /// Several questions in one chat.
    Conversation,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Add,
        Kind::Sub,
        Kind::Mul,
        Kind::Div,
        Kind::Word,
        Kind::Conversation,
    ];
    /// The kinds of a single question.
    pub const SINGLE: [Kind; 5] = [Kind::Add, Kind::Sub, Kind::Mul, Kind::Div, Kind::Word];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Sub => "sub",
            Kind::Mul => "mul",
            Kind::Div => "div",
            Kind::Word => "word",
            Kind::Conversation => "conversation",
        }
    }
}

/// One question and its worked answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    pub kind: Kind,
    pub question: String,
    pub answer: Answer,
    /// The worked solution, ending with `#### <answer>`.
    pub solution: String,
    /// The problem itself (operation and numbers), whatever the phrasing:
    /// what the held-out splits keep out of training.
    pub key: String,
}

impl Turn {
    fn to_json(&self) -> Value {
        // A plain number where there is no remainder (GSM8K's form).
        let answer = if self.answer.remainder == 0 {
            json!(self.answer.value)
        } else {
            json!(self.answer.to_string())
        };
        json!({"kind": self.kind.name(), "question": self.question,
               "answer": answer, "solution": self.solution})
    }
}

/// A test item: one question, or a conversation of several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    pub turns: Vec<Turn>,
}

impl Item {
    /// One JSONL line: a question's fields, or `{"kind": "conversation",
    /// "turns": [...]}`.
    pub fn to_json(&self) -> Value {
        match self.kind {
            Kind::Conversation => json!({
                "kind": self.kind.name(),
                "turns": self.turns.iter().map(Turn::to_json).collect::<Vec<_>>(),
            }),
            _ => self.turns[0].to_json(),
        }
    }
}

fn solution(lines: Vec<String>, answer: Answer) -> String {
    let mut lines = lines;
    lines.push(format!("#### {answer}"));
    lines.join("\n")
}

/// A number of exactly `digits` digits (0-9 for one digit).
fn number(rng: &mut Rng, digits: u32) -> u64 {
    if digits == 1 {
        rng.range(0, 9)
    } else {
        rng.range(10u64.pow(digits - 1), 10u64.pow(digits) - 1)
    }
}

/// The numbers of a bare `op` question, in the order asked.
fn operands(rng: &mut Rng, op: Op) -> (u64, u64) {
    match op {
        Op::Add => {
            let (da, db) = (rng.range(1, 4) as u32, rng.range(1, 4) as u32);
            (number(rng, da), number(rng, db))
        }
        Op::Sub => {
            let da = rng.range(1, 4) as u32;
            let a = number(rng, da);
            let db = rng.range(1, u64::from(da)) as u32;
            let b = number(rng, db).min(a);
            (a, b)
        }
        Op::Mul => {
            // 1x1, 2x1, 3x1 and (most often, the longest working) 2x2, in
            // either order.
            let (da, db) = match rng.range(0, 5) {
                0 => (1, 1),
                1 => (2, 1),
                2 => (3, 1),
                _ => (2, 2),
            };
            let (a, b) = (number(rng, da), number(rng, db));
            if rng.unit() < 0.5 {
                (a, b)
            } else {
                (b, a)
            }
        }
        Op::Div => {
            let digits = rng.range(1, 4) as u32;
            let divisor = if rng.unit() < 0.06 {
                1
            } else {
                rng.range(2, 9)
            };
            (number(rng, digits), divisor)
        }
    }
}

fn bare(rng: &mut Rng, kind: Kind, op: Op) -> Turn {
    let (a, b) = operands(rng, op);
    let w = work(op, a, b);
    Turn {
        kind,
        question: phrasing::question(rng, op, a, b),
        answer: w.answer,
        solution: solution(w.lines, w.answer),
        key: format!("{}{a}:{b}", op.symbol()),
    }
}

/// One question of `kind` (not a conversation).
pub fn turn(rng: &mut Rng, kind: Kind) -> Turn {
    match kind {
        Kind::Add => bare(rng, kind, Op::Add),
        Kind::Sub => bare(rng, kind, Op::Sub),
        Kind::Mul => bare(rng, kind, Op::Mul),
        Kind::Div => bare(rng, kind, Op::Div),
        Kind::Word => {
            let p = phrasing::word_problem(rng);
            let mut lines = Vec::new();
            let mut answer = Answer::whole(0);
            for (op, a, b) in p.steps {
                let w = work(op, a, b);
                lines.extend(w.lines);
                answer = w.answer;
            }
            let [a, b, c] = p.numbers;
            Turn {
                kind,
                question: p.question,
                answer,
                solution: solution(lines, answer),
                key: format!("w{}:{a}:{b}:{c}", p.template),
            }
        }
        Kind::Conversation => unreachable!("a conversation is several turns"),
    }
}

/// Questions per conversation, and the most characters one may have (it
/// must fit the context the model is trained on with room to spare).
const CONVERSATION_TURNS: (u64, u64) = (2, 3);
const CONVERSATION_MAX_CHARS: usize = 900;

/// A chat of 2-3 questions of any single kind; later ones sometimes open
/// with a follow-up phrase ("And what is ...").
fn conversation(rng: &mut Rng) -> Vec<Turn> {
    loop {
        let n = rng.range(CONVERSATION_TURNS.0, CONVERSATION_TURNS.1);
        let mut turns = Vec::new();
        for i in 0..n {
            let kind = *rng.pick(&Kind::SINGLE);
            let mut t = turn(rng, kind);
            if i > 0 {
                t.question = phrasing::follow_up(rng, &t.question);
            }
            turns.push(t);
        }
        let chars: usize = turns
            .iter()
            .map(|t| t.question.len() + t.solution.len() + 40)
            .sum();
        if chars <= CONVERSATION_MAX_CHARS {
            return turns;
        }
    }
}

pub fn item(rng: &mut Rng, kind: Kind) -> Item {
    let turns = match kind {
        Kind::Conversation => conversation(rng),
        _ => vec![turn(rng, kind)],
    };
    Item { kind, turns }
}

/// Seeds of the three splits.
pub const TRAIN_SEED: u64 = 1;
pub const VAL_SEED: u64 = 2;
pub const TEST_SEED: u64 = 3;

/// `n` items from `seed`, the kinds in turn (equal shares), no problem in
/// `held` and no problem twice.
pub fn split(seed: u64, n: usize, held: &HashSet<String>) -> Vec<Item> {
    let mut rng = Rng::new(seed);
    let mut seen = held.clone();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let kind = Kind::ALL[out.len() % Kind::ALL.len()];
        let it = item(&mut rng, kind);
        // Keys are checked before any is inserted: a conversation that
        // repeats a problem is drawn again.
        let keys: HashSet<&String> = it.turns.iter().map(|t| &t.key).collect();
        if keys.len() == it.turns.len() && keys.iter().all(|k| !seen.contains(*k)) {
            seen.extend(it.turns.iter().map(|t| t.key.clone()));
            out.push(it);
        }
    }
    out
}

fn keys(items: &[Item]) -> impl Iterator<Item = String> + '_ {
    items
        .iter()
        .flat_map(|i| i.turns.iter().map(|t| t.key.clone()))
}

/// The problems of the README's examples and of
/// `tah-cli/tests/default_model.rs` (keys as [`Turn::key`]; sums and
/// products in both orders): never trained on, so the examples show the
/// model working problems it has not seen.
pub const SHOWCASE: &[&str] = &[
    "+2:3",
    "+347:589",
    "+4096:785",
    "-4096:1278",
    "-703:48",
    "*27:14",
    "/1278:7",
    "/96:4",
    // "Ann has 23 pens. Ann gets 15 more and then gives away 9. ..."
    "w0:23:15:9",
    // "Ben buys 6 packs of cards with 12 in each pack, and already has 30. ..."
    "w4:6:12:30",
];

fn showcase() -> impl Iterator<Item = String> {
    SHOWCASE.iter().flat_map(|k| {
        let swapped = match k.split_once(':') {
            Some((a, b)) if k.starts_with(['+', '*']) => format!("{}{b}:{}", &a[..1], &a[1..]),
            _ => k.to_string(),
        };
        [k.to_string(), swapped]
    })
}

/// The held-out splits (test first, then validation without the test's
/// problems) and the set of every problem in them and in [`SHOWCASE`].
pub fn held_out(n_val: usize, n_test: usize) -> (Vec<Item>, Vec<Item>, HashSet<String>) {
    let test = split(TEST_SEED, n_test, &HashSet::new());
    let mut held: HashSet<String> = keys(&test).chain(showcase()).collect();
    let val = split(VAL_SEED, n_val, &held);
    held.extend(keys(&val));
    (val, test, held)
}

/// Training items: an endless seeded stream, kinds drawn with `weights`
/// (in [`Kind::ALL`] order), never a held-out problem.
pub struct TrainStream {
    rng: Rng,
    held: HashSet<String>,
    weights: [f64; 6],
}

impl TrainStream {
    pub fn new(held: HashSet<String>, weights: [f64; 6]) -> Self {
        TrainStream {
            rng: Rng::new(TRAIN_SEED),
            held,
            weights,
        }
    }

    fn kind(&mut self) -> Kind {
        let total: f64 = self.weights.iter().sum();
        let mut x = self.rng.unit() * total;
        for (kind, w) in Kind::ALL.iter().zip(self.weights) {
            if x < w {
                return *kind;
            }
            x -= w;
        }
        Kind::Conversation
    }

    pub fn take(&mut self, n: usize) -> Vec<Item> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let kind = self.kind();
            let it = item(&mut self.rng, kind);
            if it.turns.iter().all(|t| !self.held.contains(&t.key)) {
                out.push(it);
            }
        }
        out
    }
}

pub fn write_jsonl(path: &Path, items: &[Item]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for it in items {
        writeln!(f, "{}", it.to_json())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_end_with_their_answer() {
        let mut rng = Rng::new(7);
        for _ in 0..500 {
            for kind in Kind::ALL {
                for t in item(&mut rng, kind).turns {
                    assert!(
                        t.solution.ends_with(&format!("\n#### {}", t.answer))
                            || t.solution.starts_with(&format!("#### {}", t.answer)),
                        "{t:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn word_problems_chain_their_steps() {
        let mut rng = Rng::new(9);
        let t = (0..50)
            .map(|_| turn(&mut rng, Kind::Word))
            .find(|t| t.key.starts_with("w0:"))
            .unwrap();
        // "{n} has {a} {i}. {n} gets {b} more and then gives away {c}."
        let n: Vec<u64> = t.key[3..].split(':').map(|x| x.parse().unwrap()).collect();
        assert_eq!(t.answer, Answer::whole(n[0] + n[1] - n[2]));
        assert!(t.solution.contains(&format!("{}-{}=", n[0] + n[1], n[2])));
    }

    #[test]
    fn splits_are_seeded_balanced_and_held_out() {
        let (val, test, held) = held_out(60, 120);
        assert_eq!(held_out(60, 120).1, test);
        for kind in Kind::ALL {
            assert_eq!(test.iter().filter(|i| i.kind == kind).count(), 20);
        }
        let test_keys: HashSet<String> = keys(&test).collect();
        assert!(keys(&val).all(|k| !test_keys.contains(&k)));
        assert!(held.contains("*14:27") && held.contains("w0:23:15:9"));
        let train = TrainStream::new(held.clone(), [1.0; 6]).take(2000);
        assert!(keys(&train).all(|k| !held.contains(&k)));
        assert!(train.iter().any(|i| i.kind == Kind::Conversation));
    }
}
