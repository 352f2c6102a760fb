//! The conformance checks of one `expected.json` case, shared by the HF
//! directory and GGUF tests.

use serde_json::Value;
use tah_core::logits::top_k;
use tah_core::trace::{trace, Trace, TraceInput, TraceRequest};
use tah_core::{ChunkOptions, IterationMode, IterationPolicy, KeepLogits, TahModel};

const PROB_TOL: f64 = 1e-4;
const LOGIT_TOL: f64 = 1e-3;
/// Two f32 implementations agree on logits to ~1e-5; when the soft
/// embedding's top-k boundary (ranks k and k + 1 of the pass-1 logits) is
/// closer than this, which token gets in is decided by rounding noise.
const TIE_GAP: f32 = 1e-5;
/// Tolerance after such a near-tie: the mixed-in row differs by one
/// low-weight embedding, which moves later logits by ~1e-2.
const TIE_LOGIT_TOL: f64 = 0.1;

/// Largest differences seen, reported at the end of each fixture.
#[derive(Default, Debug)]
pub struct MaxDiff {
    logit: f64,
    logsumexp: f64,
    prob: f64,
}

pub fn mode_of(case: &Value) -> IterationMode {
    match case["mode"].as_str() {
        Some("never") => IterationMode::Never,
        Some("always") => IterationMode::Always,
        _ => IterationMode::Decider,
    }
}

pub fn as_u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn as_usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// Checks top-k ids and logits. After a near-tie (`relaxed`), only the
/// argmax must agree and the other ids' logits within [`TIE_LOGIT_TOL`].
fn check_top(
    label: &str,
    expected: &Value,
    actual: &[(u32, f32)],
    relaxed: bool,
    diff: &mut MaxDiff,
) {
    let expected = expected.as_array().unwrap();
    assert_eq!(expected.len(), actual.len(), "{label}: top-k length");
    for (j, e) in expected.iter().enumerate() {
        let (e_id, e_logit) = (e[0].as_u64().unwrap() as u32, e[1].as_f64().unwrap());
        if relaxed {
            if j == 0 {
                assert_eq!(e_id, actual[0].0, "{label}: argmax");
            }
            if let Some(&(_, logit)) = actual.iter().find(|(id, _)| *id == e_id) {
                let d = (e_logit - logit as f64).abs();
                assert!(
                    d <= TIE_LOGIT_TOL,
                    "{label}: logit of {e_id} differs by {d} (after a near-tie)"
                );
            }
            continue;
        }
        let (id, logit) = actual[j];
        assert_eq!(e_id, id, "{label}: top id #{j}");
        let d = (e_logit - logit as f64).abs();
        diff.logit = diff.logit.max(d);
        assert!(d <= LOGIT_TOL, "{label}: logit #{j} differs by {d}");
    }
}

/// First position (prompt then decode) that took a second pass while its
/// pass-1 top-k boundary was a near-tie, found from our own pass-1 logits.
fn first_near_tie(model: &TahModel, ids: &[u32], iter_counts: &[usize]) -> Option<usize> {
    let k = model.soft_topk();
    let mut cache = model.new_cache();
    let opts = ChunkOptions {
        policy: IterationPolicy {
            mode: IterationMode::Never,
            ..Default::default()
        },
        keep: KeepLogits::All,
        max_hard: None,
        cancel: None,
        probe_decider: false,
    };
    let pass1 = model.forward_chunk(ids, &mut cache, &opts).unwrap().logits;
    (0..ids.len()).find(|&p| {
        let top = top_k(&pass1[p], k + 1);
        iter_counts[p] > 1 && top.len() > k && top[k - 1].1 - top[k].1 < TIE_GAP
    })
}

fn check_probs(label: &str, expected: &Value, actual: &[Vec<f32>], diff: &mut MaxDiff) {
    let expected = expected.as_array().unwrap();
    assert_eq!(expected.len(), actual.len(), "{label}: decider_prob length");
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        let e = e.as_array().unwrap();
        assert_eq!(
            e.len(),
            a.len(),
            "{label}: decider ran {} times at {i}, expected {}",
            a.len(),
            e.len()
        );
        for (ep, &ap) in e.iter().zip(a) {
            let d = (ep.as_f64().unwrap() - ap as f64).abs();
            diff.prob = diff.prob.max(d);
            assert!(d <= PROB_TOL, "{label}: decider prob at {i} differs by {d}");
        }
    }
}

fn check_logsumexp(label: &str, expected: &Value, actual: &[f64], diff: &mut MaxDiff) {
    let expected = expected.as_array().unwrap();
    assert_eq!(expected.len(), actual.len(), "{label}: logsumexp length");
    for (i, (e, &a)) in expected.iter().zip(actual).enumerate() {
        let d = (e.as_f64().unwrap() - a).abs();
        diff.logsumexp = diff.logsumexp.max(d);
        assert!(d <= LOGIT_TOL, "{label}: logsumexp at {i} differs by {d}");
    }
}

fn json_prefix(v: &Value, n: usize) -> Value {
    Value::Array(v.as_array().unwrap()[..n].to_vec())
}

pub fn check_case(model: &TahModel, case: &Value, diff: &mut MaxDiff) -> Trace {
    let name = case["name"].as_str().unwrap();
    let prefill = &case["prefill"];
    let decode = &case["decode"];
    let split = prefill
        .get("chunks")
        .map(|c| c[0][1].as_u64().unwrap() as usize);
    let request = TraceRequest {
        input: TraceInput::Chat(case["text"].as_str().unwrap().to_string()),
        new_tokens: decode["tokens"].as_array().unwrap().len(),
        split,
        policy: IterationPolicy {
            mode: mode_of(case),
            ..Default::default()
        },
    };
    let t = trace(model, &request).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_trace(model, case, &t, diff);
    t
}

/// A trace in `expected.json`'s form, named `name` (to compare another
/// trace of the same request with it through [`check_trace`]).
pub fn as_expected(name: &str, t: &Trace) -> Value {
    let mut v = serde_json::to_value(t).unwrap();
    v["name"] = name.into();
    v["prompt"] = t.prompt.clone().into();
    v
}

/// Checks trace `t` against `case` (the reference's expected outputs, or
/// [`as_expected`] of another trace) with the tolerances above. `model`
/// ran `t`; its own pass-1 logits find near-ties.
pub fn check_trace(model: &TahModel, case: &Value, t: &Trace, diff: &mut MaxDiff) {
    let name = case["name"].as_str().unwrap();
    let prefill = &case["prefill"];
    let decode = &case["decode"];
    let all_ids: Vec<u32> = t
        .input_ids
        .iter()
        .chain(&t.decode.tokens)
        .copied()
        .collect();
    let all_counts: Vec<usize> = t
        .prefill
        .iter_count
        .iter()
        .chain(&t.decode.iter_count)
        .copied()
        .collect();
    let tie = first_near_tie(model, &all_ids, &all_counts);
    if let Some(p) = tie {
        println!("{name}: near-tie at the soft-embedding top-k boundary at position {p}; later logits checked loosely");
    }
    let relaxed = |p: usize| tie.is_some_and(|t| p >= t);
    let n_prompt = t.input_ids.len();

    assert_eq!(
        t.prompt.as_deref(),
        case["prompt"].as_str(),
        "{name}: rendered prompt"
    );
    assert_eq!(
        t.input_ids,
        as_u32s(&case["input_ids"]),
        "{name}: input_ids"
    );

    assert_eq!(
        t.prefill.iter_count,
        as_usizes(&prefill["iter_count"]),
        "{name}: prefill iter_count"
    );
    check_probs(
        &format!("{name} prefill"),
        &prefill["decider_prob"],
        &t.prefill.decider_prob,
        diff,
    );
    for (i, top) in t.prefill.top.iter().enumerate() {
        check_top(
            &format!("{name} prefill[{i}]"),
            &prefill["top"][i],
            top,
            relaxed(i),
            diff,
        );
    }
    let lse_len = tie.map_or(n_prompt, |p| p.min(n_prompt));
    check_logsumexp(
        &format!("{name} prefill"),
        &json_prefix(&prefill["logsumexp"], lse_len),
        &t.prefill.logsumexp[..lse_len],
        diff,
    );

    assert_eq!(
        t.decode.tokens,
        as_u32s(&decode["tokens"]),
        "{name}: decode tokens"
    );
    assert_eq!(
        t.decode.iter_count,
        as_usizes(&decode["iter_count"]),
        "{name}: decode iter_count"
    );
    check_probs(
        &format!("{name} decode"),
        &decode["decider_prob"],
        &t.decode.decider_prob,
        diff,
    );
    for (i, top) in t.decode.top.iter().enumerate() {
        // decode.top[i] came from the forward at position n_prompt + i - 1.
        check_top(
            &format!("{name} decode[{i}]"),
            &decode["top"][i],
            top,
            relaxed(n_prompt + i - 1),
            diff,
        );
    }
    if tie.is_none() {
        check_logsumexp(
            &format!("{name} decode"),
            &decode["logsumexp"],
            &t.decode.logsumexp,
            diff,
        );
    }
}

/// How often a second model (quantized weights, a smaller KV cache, ...)
/// agrees with a reference on the fixture cases, teacher-forced on the
/// reference's tokens: top-1 at every prompt position, and the decider's
/// decisions (passes per position) in `tah` mode.
#[derive(Default, Debug)]
pub struct Agreement {
    pub top1: (usize, usize),
    pub decisions: (usize, usize),
    /// Where top-1 differs: how far below its own top-1 the reference put
    /// the other model's choice (None: outside the reference's top list).
    pub flip_margins: Vec<Option<f32>>,
    /// The reference's top-1 minus top-2 logit at every position.
    pub reference_gaps: Vec<f32>,
}

impl Agreement {
    pub fn add(&mut self, reference: &TahModel, other: &TahModel, expected: &Value) {
        for case in expected["cases"].as_array().unwrap() {
            let mut ids = as_u32s(&case["input_ids"]);
            ids.extend(as_u32s(&case["decode"]["tokens"]));
            let request = TraceRequest {
                input: TraceInput::Ids(ids),
                new_tokens: 0,
                split: None,
                policy: IterationPolicy {
                    mode: mode_of(case),
                    ..Default::default()
                },
            };
            self.add_request(reference, other, &request);
        }
    }

    /// Counts one teacher-forced input (decisions only in `decider` mode).
    pub fn add_request(&mut self, reference: &TahModel, other: &TahModel, request: &TraceRequest) {
        let (a, b) = (
            trace(reference, request).unwrap(),
            trace(other, request).unwrap(),
        );
        for (x, y) in a.prefill.top.iter().zip(&b.prefill.top) {
            self.top1.0 += usize::from(x[0].0 == y[0].0);
            self.top1.1 += 1;
            self.reference_gaps.push(x[0].1 - x[1].1);
            if x[0].0 != y[0].0 {
                let other_choice = x.iter().find(|(id, _)| *id == y[0].0);
                self.flip_margins
                    .push(other_choice.map(|(_, l)| x[0].1 - l));
            }
        }
        if request.policy.mode == IterationMode::Decider {
            for (x, y) in a.prefill.iter_count.iter().zip(&b.prefill.iter_count) {
                self.decisions.0 += usize::from(x == y);
                self.decisions.1 += 1;
            }
        }
    }

    /// Fails unless top-1 and decisions agree at these percentages or more.
    pub fn assert_at_least(&self, top1_pct: f64, decisions_pct: f64) {
        let (t, d) = (self.top1, self.decisions);
        assert!(
            t.0 as f64 * 100.0 >= t.1 as f64 * top1_pct,
            "top-1 agreement below {top1_pct}%: {t:?}"
        );
        assert!(
            d.0 as f64 * 100.0 >= d.1 as f64 * decisions_pct,
            "decision agreement below {decisions_pct}%: {d:?}"
        );
    }

    /// Prints and returns the figures as percentages.
    pub fn report(&self, label: &str) -> (f64, f64) {
        let pct = |(a, n): (usize, usize)| 100.0 * a as f64 / n.max(1) as f64;
        println!(
            "{label}: top-1 agrees at {}/{} positions ({:.2}%), decider decisions at {}/{} ({:.2}%)",
            self.top1.0,
            self.top1.1,
            pct(self.top1),
            self.decisions.0,
            self.decisions.1,
            pct(self.decisions)
        );
        if !self.flip_margins.is_empty() {
            let mut gaps = self.reference_gaps.clone();
            gaps.sort_by(f32::total_cmp);
            let within: Vec<f32> = self.flip_margins.iter().flatten().copied().collect();
            println!(
                "  {} top-1 flips: {} to a token in the reference's top list, at most {:.4} \
                 logits below its top-1; the reference's median top-1/top-2 gap is {:.4}",
                self.flip_margins.len(),
                within.len(),
                within.iter().copied().fold(0.0, f32::max),
                gaps[gaps.len() / 2],
            );
        }
        (pct(self.top1), pct(self.decisions))
    }
}

/// The first `problems` held-out problems of the trained model's test split
/// (`models/arith-test.jsonl`) as teacher-forced chat transcripts (question
/// and worked solution), `decider` mode, no new tokens.
pub fn arith_transcripts(problems: usize) -> Vec<TraceRequest> {
    let path = super::repo_root().join("models/arith-test.jsonl");
    let data = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    data.lines()
        .take(problems)
        .map(|line| {
            let p: Value = serde_json::from_str(line).unwrap();
            // A question, or the questions of a chat, each with its solution.
            let turns = p["turns"].as_array().cloned().unwrap_or_else(|| vec![p]);
            let text = turns
                .iter()
                .map(|t| {
                    format!(
                        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>",
                        t["question"].as_str().unwrap(),
                        t["solution"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            TraceRequest {
                input: TraceInput::Prompt(text),
                new_tokens: 0,
                split: None,
                policy: IterationPolicy::default(),
            }
        })
        .collect()
}
