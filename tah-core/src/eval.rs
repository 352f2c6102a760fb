//! Accuracy on GSM8K-style data, greedy, through the runtime, with the
//! compute spent: passes per generated token and the share of hard tokens.
//!
//! One JSONL object per line: `{"question": ..., "answer": ...}`, or a
//! conversation `{"turns": [{"question": ..., "answer": ...}, ...]}` whose
//! questions are asked one after another in one chat, each answered with
//! the model's own earlier answers in its history (as `TahSession::chat`
//! keeps them). An optional `"kind"` groups the results. An answer is a
//! number, or a division's quotient and remainder written `12 r 3`; the
//! model's answer is read from its final `#### ...` (else `\boxed{}`, else
//! the last number of the last line).

use std::collections::BTreeMap;
use std::path::Path;

use crate::chat_template::ChatMessage;
use crate::error::{Error, Result};
use crate::iteration::IterationPolicy;
use crate::tah_model::TahModel;
use crate::trace::{trace, TraceInput, TraceRequest};

/// A number, and for a division with remainder the remainder (`12 r 3`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Answer {
    pub value: f64,
    pub remainder: Option<f64>,
}

impl Answer {
    pub fn number(value: f64) -> Self {
        Answer {
            value,
            remainder: None,
        }
    }

    /// Reads `12`, `1,234`, `$5`, `12 r 3`, `12 R 3` or `12 remainder 3`
    /// at the start of `text` (what follows is ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let value = parse_number(words.next()?)?;
        let remainder = match words.next() {
            Some("r" | "R" | "remainder") => words.next().and_then(parse_number),
            _ => None,
        };
        Some(Answer { value, remainder })
    }

    /// The same number and remainder (no remainder = remainder 0).
    pub fn matches(&self, other: &Answer) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        close(self.value, other.value)
            && close(
                self.remainder.unwrap_or(0.0),
                other.remainder.unwrap_or(0.0),
            )
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.remainder {
            Some(r) if r != 0.0 => write!(f, "{} r {r}", self.value),
            _ => write!(f, "{}", self.value),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EvalTurn {
    pub question: String,
    pub answer: Answer,
}

/// One line of the data: a question, or the questions of one chat.
#[derive(Clone, Debug)]
pub struct EvalItem {
    pub kind: Option<String>,
    pub turns: Vec<EvalTurn>,
}

/// Reads a JSONL file (see the module documentation). `answer` may be a
/// number or a string (`"12 r 3"`, or GSM8K's `"... #### 72"`).
pub fn read_jsonl(path: &Path) -> Result<Vec<EvalItem>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut items = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |why: &str| Error::malformed(path, format!("line {}: {why}", n + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let turn = |v: &serde_json::Value| -> Result<EvalTurn> {
            let question = v["question"]
                .as_str()
                .ok_or_else(|| bad("no `question` string"))?;
            let answer = match &v["answer"] {
                serde_json::Value::Number(x) => x.as_f64().map(Answer::number),
                serde_json::Value::String(s) if s.contains("####") => extract_answer(s),
                serde_json::Value::String(s) => Answer::parse(s),
                _ => None,
            }
            .ok_or_else(|| bad("no numeric `answer`"))?;
            Ok(EvalTurn {
                question: question.to_string(),
                answer,
            })
        };
        let turns = match &v["turns"] {
            serde_json::Value::Array(turns) if !turns.is_empty() => {
                turns.iter().map(turn).collect::<Result<Vec<_>>>()?
            }
            serde_json::Value::Null => vec![turn(&v)?],
            _ => return Err(bad("`turns` is not a list of questions")),
        };
        items.push(EvalItem {
            kind: v["kind"].as_str().map(str::to_string),
            turns,
        });
    }
    Ok(items)
}

fn parse_number(s: &str) -> Option<f64> {
    let cleaned: String = s.chars().filter(|c| *c != ',' && *c != '$').collect();
    cleaned.trim().trim_end_matches('.').parse().ok()
}

/// The answer in a model's output: after the last `####` (with a
/// remainder if one is written), inside the last `\boxed{}`, or the last
/// number on the last non-empty line.
pub fn extract_answer(text: &str) -> Option<Answer> {
    if let Some(i) = text.rfind("####") {
        let rest = &text[i + 4..];
        return Answer::parse(rest.lines().next().unwrap_or(""));
    }
    if let Some(i) = text.rfind("\\boxed{") {
        let rest = &text[i + 7..];
        return rest.find('}').and_then(|end| Answer::parse(&rest[..end]));
    }
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    last.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == ','))
        .filter_map(parse_number)
        .next_back()
        .map(Answer::number)
}

/// One answered question.
#[derive(Clone, Debug)]
pub struct Solved {
    pub output: String,
    pub predicted: Option<Answer>,
    pub correct: bool,
    /// Passes of each forward that produced a generated token.
    pub passes: Vec<usize>,
}

/// Greedy chat decoding of the last user message of `messages` (thinking
/// on, as the model was trained), within the model's context: a chat that
/// no longer fits gets no answer.
fn answer(
    model: &TahModel,
    messages: &[ChatMessage],
    policy: IterationPolicy,
    max_new_tokens: usize,
) -> Result<(String, Vec<usize>)> {
    let prompt = model.chat_template()?.render(messages, true, true)?;
    let room = model
        .context_length()
        .saturating_sub(model.tokenizer()?.encode(&prompt)?.len());
    if room == 0 {
        return Ok((String::new(), Vec::new()));
    }
    let request = TraceRequest {
        input: TraceInput::Messages(messages.to_vec()),
        new_tokens: max_new_tokens.min(room),
        split: None,
        policy,
    };
    let t = trace(model, &request)?;
    let output = model.tokenizer()?.decode(&t.decode.tokens)?;
    // The last prompt position produced the first token; each decode forward
    // the next one (or the EOS that ended the answer).
    let passes = t
        .prefill
        .iter_count
        .last()
        .into_iter()
        .chain(&t.decode.iter_count)
        .copied()
        .collect();
    Ok((output, passes))
}

/// One answered question as a JSON object: kind, turn, question, expected
/// and predicted answer, right or not, and the model's output.
pub fn answer_record(item: &EvalItem, turn: usize, solved: &Solved) -> serde_json::Value {
    serde_json::json!({
        "kind": item.kind, "turn": turn, "question": item.turns[turn].question,
        "expected": item.turns[turn].answer.to_string(),
        "predicted": solved.predicted.map(|p| p.to_string()),
        "correct": solved.correct, "output": solved.output,
    })
}

/// Asks an item's questions in order in one chat, each with the model's
/// own earlier answers as its history.
pub fn solve(
    model: &TahModel,
    item: &EvalItem,
    policy: IterationPolicy,
    max_new_tokens: usize,
) -> Result<Vec<Solved>> {
    let mut messages = Vec::new();
    let mut solved = Vec::with_capacity(item.turns.len());
    for turn in &item.turns {
        messages.push(ChatMessage::user(turn.question.clone()));
        let (output, passes) = answer(model, &messages, policy, max_new_tokens)?;
        let predicted = extract_answer(&output);
        messages.push(ChatMessage::assistant(output.clone()));
        solved.push(Solved {
            correct: predicted.is_some_and(|p| p.matches(&turn.answer)),
            output,
            predicted,
            passes,
        });
    }
    Ok(solved)
}

/// Solves every item under `policy`; `progress` sees each item's answers
/// and the totals so far.
pub fn evaluate(
    model: &TahModel,
    items: &[EvalItem],
    policy: IterationPolicy,
    max_new_tokens: usize,
    mut progress: impl FnMut(&EvalItem, &[Solved], &EvalSummary),
) -> Result<EvalSummary> {
    let mut summary = EvalSummary::default();
    for item in items {
        let solved = solve(model, item, policy, max_new_tokens)?;
        summary.add(item, &solved);
        progress(item, &solved, &summary);
    }
    Ok(summary)
}

/// Questions asked and answered correctly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub questions: usize,
    pub correct: usize,
}

impl Tally {
    fn add(&mut self, correct: bool) {
        self.questions += 1;
        self.correct += usize::from(correct);
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.questions)
    }
}

/// Running totals over a data set; every question of a conversation counts.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EvalSummary {
    pub items: usize,
    pub all: Tally,
    /// Per item kind (the questions of a conversation under its kind).
    pub kinds: BTreeMap<String, Tally>,
    /// Items of several questions: their first questions, the later ones,
    /// and whole conversations answered right throughout.
    pub first_turns: Tally,
    pub later_turns: Tally,
    pub conversations: Tally,
    pub tokens: usize,
    pub passes: usize,
    pub hard_tokens: usize,
    /// Per question, in data order: answered right? (for paired comparisons)
    #[serde(skip)]
    pub outcomes: Vec<bool>,
}

impl EvalSummary {
    pub fn add(&mut self, item: &EvalItem, solved: &[Solved]) {
        self.items += 1;
        for (i, s) in solved.iter().enumerate() {
            self.all.add(s.correct);
            if let Some(kind) = &item.kind {
                self.kinds.entry(kind.clone()).or_default().add(s.correct);
            }
            if solved.len() > 1 {
                let turns = if i == 0 {
                    &mut self.first_turns
                } else {
                    &mut self.later_turns
                };
                turns.add(s.correct);
            }
            self.tokens += s.passes.len();
            self.passes += s.passes.iter().sum::<usize>();
            self.hard_tokens += s.passes.iter().filter(|&&p| p > 1).count();
            self.outcomes.push(s.correct);
        }
        if solved.len() > 1 {
            self.conversations.add(solved.iter().all(|s| s.correct));
        }
    }

    /// Over every question.
    pub fn accuracy(&self) -> f64 {
        self.all.accuracy()
    }

    pub fn passes_per_token(&self) -> f64 {
        ratio(self.passes, self.tokens)
    }

    pub fn hard_fraction(&self) -> f64 {
        ratio(self.hard_tokens, self.tokens)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Two runs on the same questions, question by question: where only `a`
/// is right (wins), only `b` (losses), an exact two-sided sign test on
/// those, and a paired bootstrap 95% interval of `a`'s accuracy minus `b`'s.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Paired {
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
    pub difference: f64,
    pub sign_test_p: f64,
    pub interval: (f64, f64),
}

impl Paired {
    /// Panics if the runs are of different lengths (not the same questions).
    pub fn new(a: &[bool], b: &[bool]) -> Self {
        assert_eq!(a.len(), b.len(), "paired runs over different questions");
        let n = a.len();
        let wins = a.iter().zip(b).filter(|(&x, &y)| x && !y).count();
        let losses = a.iter().zip(b).filter(|(&x, &y)| !x && y).count();
        let diff = |pick: &mut dyn FnMut() -> usize| -> f64 {
            let mut d = 0i64;
            for _ in 0..n {
                let i = pick();
                d += i64::from(a[i]) - i64::from(b[i]);
            }
            d as f64 / n.max(1) as f64
        };
        // Bootstrap over questions, seeded (SplitMix64): 10,000 resamples.
        let mut state = 0x5EED_u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % n.max(1) as u64) as usize
        };
        let mut samples: Vec<f64> = (0..10_000).map(|_| diff(&mut next)).collect();
        samples.sort_by(f64::total_cmp);
        Paired {
            wins,
            losses,
            ties: n - wins - losses,
            difference: (wins as f64 - losses as f64) / n.max(1) as f64,
            sign_test_p: sign_test(wins, losses),
            interval: (samples[250], samples[9_749]),
        }
    }
}

/// Exact two-sided binomial test of `wins` vs `losses` at p = 1/2.
fn sign_test(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    if n == 0 {
        return 1.0;
    }
    let k = wins.min(losses);
    // ln C(n, i) - n ln 2, summed for i <= k.
    let ln_fact = |m: usize| (1..=m).map(|j| (j as f64).ln()).sum::<f64>();
    let (ln_n, ln2) = (ln_fact(n), n as f64 * std::f64::consts::LN_2);
    let tail: f64 = (0..=k)
        .map(|i| (ln_n - ln_fact(i) - ln_fact(n - i) - ln2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(x: f64) -> Option<Answer> {
        Some(Answer::number(x))
    }

    #[test]
    fn extracts_answers() {
        assert_eq!(extract_answer("7+9=16\n#### 936"), number(936.0));
        assert_eq!(extract_answer("so \\boxed{1,234}."), number(1234.0));
        assert_eq!(extract_answer("It is 12.\nThe answer is -5."), number(-5.0));
        assert_eq!(extract_answer("no number"), None);
        assert_eq!(extract_answer("#### "), None);
        let division = extract_answer("1278/7=182 r 4\n#### 182 r 4").unwrap();
        assert_eq!(division.remainder, Some(4.0));
        assert!(division.matches(&Answer::parse("182 remainder 4").unwrap()));
        assert!(!division.matches(&Answer::number(182.0)));
        // No remainder written = remainder 0.
        assert!(Answer::parse("201 r 0")
            .unwrap()
            .matches(&Answer::number(201.0)));
        assert_eq!(Answer::parse("182 r 4").unwrap().to_string(), "182 r 4");
    }

    #[test]
    fn summaries_count_questions_and_conversations() {
        let turn = |q: &str| EvalTurn {
            question: q.into(),
            answer: Answer::number(1.0),
        };
        let solved = |correct: bool| Solved {
            output: String::new(),
            predicted: None,
            correct,
            passes: vec![1, 2],
        };
        let mut s = EvalSummary::default();
        let chat = EvalItem {
            kind: Some("conversation".into()),
            turns: vec![turn("a"), turn("b"), turn("c")],
        };
        s.add(&chat, &[solved(true), solved(false), solved(true)]);
        let single = EvalItem {
            kind: Some("add".into()),
            turns: vec![turn("d")],
        };
        s.add(&single, &[solved(true)]);
        assert_eq!((s.items, s.all.questions, s.all.correct), (2, 4, 3));
        assert_eq!(
            s.kinds["conversation"],
            Tally {
                questions: 3,
                correct: 2
            }
        );
        assert_eq!(
            s.first_turns,
            Tally {
                questions: 1,
                correct: 1
            }
        );
        assert_eq!(
            s.later_turns,
            Tally {
                questions: 2,
                correct: 1
            }
        );
        assert_eq!(
            s.conversations,
            Tally {
                questions: 1,
                correct: 0
            }
        );
        assert_eq!(s.outcomes, vec![true, false, true, true]);
        assert_eq!((s.passes_per_token(), s.hard_fraction()), (1.5, 0.5));
    }

    #[test]
    fn paired_comparison() {
        // 6 wins, 1 loss, 3 ties: two-sided sign test p = 2 * (1 + 7) / 2^7.
        let a = [
            true, true, true, true, true, true, false, true, false, false,
        ];
        let b = [
            false, false, false, false, false, false, true, true, false, false,
        ];
        let p = Paired::new(&a, &b);
        assert_eq!((p.wins, p.losses, p.ties), (6, 1, 3));
        assert!((p.sign_test_p - 16.0 / 128.0).abs() < 1e-12);
        assert!((p.difference - 0.5).abs() < 1e-12);
        assert!(p.interval.0 <= 0.5 && 0.5 <= p.interval.1 && p.interval.0 > 0.0);
        let same = Paired::new(&a, &a);
        assert_eq!((same.sign_test_p, same.interval), (1.0, (0.0, 0.0)));
    }
}
