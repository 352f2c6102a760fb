//! Accuracy on GSM8K-style data (`{"question": ..., "answer": <number>}` per
//! line): greedy chat decoding, answer taken from the final `#### N` or
//! `\boxed{N}` (else the last number of the last line), plus the compute
//! spent: passes per generated token and the share of hard tokens.

use std::path::Path;

use crate::error::{Error, Result};
use crate::iteration::IterationPolicy;
use crate::tah_model::TahModel;
use crate::trace::{trace, TraceInput, TraceRequest};

#[derive(Clone, Debug)]
pub struct EvalItem {
    pub question: String,
    pub answer: f64,
}

/// Reads a JSONL file; `answer` may be a number or a numeric string
/// (GSM8K's `... #### 72` strings are accepted too).
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
        let question = v["question"]
            .as_str()
            .ok_or_else(|| bad("no `question` string"))?;
        let answer = match &v["answer"] {
            serde_json::Value::Number(x) => x.as_f64(),
            serde_json::Value::String(s) => extract_answer(s),
            _ => None,
        }
        .ok_or_else(|| bad("no numeric `answer`"))?;
        items.push(EvalItem {
            question: question.to_string(),
            answer,
        });
    }
    Ok(items)
}

fn parse_number(s: &str) -> Option<f64> {
    let cleaned: String = s.chars().filter(|c| *c != ',' && *c != '$').collect();
    cleaned.trim().trim_end_matches('.').parse().ok()
}

/// The answer in a model's output: after the last `####`, inside the last
/// `\boxed{}`, or the last number on the last non-empty line.
pub fn extract_answer(text: &str) -> Option<f64> {
    if let Some(i) = text.rfind("####") {
        return text[i + 4..]
            .split_whitespace()
            .next()
            .and_then(parse_number);
    }
    if let Some(i) = text.rfind("\\boxed{") {
        let rest = &text[i + 7..];
        return rest.find('}').and_then(|end| parse_number(&rest[..end]));
    }
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    last.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == ','))
        .filter_map(parse_number)
        .next_back()
}

/// One solved item.
#[derive(Clone, Debug)]
pub struct Solved {
    pub output: String,
    pub predicted: Option<f64>,
    pub correct: bool,
    /// Passes of each forward that produced a generated token.
    pub passes: Vec<usize>,
}

/// Greedy chat decoding of one question (thinking on, as the model was trained).
pub fn solve(
    model: &TahModel,
    item: &EvalItem,
    policy: IterationPolicy,
    max_new_tokens: usize,
) -> Result<Solved> {
    let request = TraceRequest {
        input: TraceInput::Chat(item.question.clone()),
        new_tokens: max_new_tokens,
        split: None,
        policy,
    };
    let t = trace(model, &request)?;
    let output = model.tokenizer()?.decode(&t.decode.tokens)?;
    let predicted = extract_answer(&output);
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
    Ok(Solved {
        correct: predicted.is_some_and(|p| (p - item.answer).abs() < 1e-6),
        output,
        predicted,
        passes,
    })
}

/// Solves every item under `policy`; `progress` sees the totals after each.
pub fn evaluate(
    model: &TahModel,
    items: &[EvalItem],
    policy: IterationPolicy,
    max_new_tokens: usize,
    mut progress: impl FnMut(&EvalSummary),
) -> Result<EvalSummary> {
    let mut summary = EvalSummary::default();
    for item in items {
        summary.add(&solve(model, item, policy, max_new_tokens)?);
        progress(&summary);
    }
    Ok(summary)
}

/// Running totals over a data set.
#[derive(Clone, Debug, Default)]
pub struct EvalSummary {
    pub items: usize,
    pub correct: usize,
    pub tokens: usize,
    pub passes: usize,
    pub hard_tokens: usize,
}

impl EvalSummary {
    pub fn add(&mut self, s: &Solved) {
        self.items += 1;
        self.correct += usize::from(s.correct);
        self.tokens += s.passes.len();
        self.passes += s.passes.iter().sum::<usize>();
        self.hard_tokens += s.passes.iter().filter(|&&p| p > 1).count();
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.items)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_answers() {
        assert_eq!(extract_answer("7+9=16\n#### 936"), Some(936.0));
        assert_eq!(extract_answer("so \\boxed{1,234}."), Some(1234.0));
        assert_eq!(extract_answer("It is 12.\nThe answer is -5."), Some(-5.0));
        assert_eq!(extract_answer("no number"), None);
        assert_eq!(extract_answer("#### "), None);
    }
}
