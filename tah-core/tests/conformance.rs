//! Conformance with the reference implementation: every case of every
//! fixture checkpoint's `expected.json`, through the same `trace` the CLI uses.

mod common;

use common::check::{check_case, MaxDiff};
use common::{fixture_dir, fixture_model, fixture_names};
use serde_json::Value;
use tah_core::trace::{trace, TraceInput, TraceRequest};
use tah_core::IterationPolicy;

#[test]
fn every_fixture_case_matches_the_reference() {
    let names = fixture_names();
    assert!(
        names.len() >= 2,
        "expected at least two fixture checkpoints"
    );
    for fixture in names {
        let model = fixture_model(&fixture);
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture_dir().join(&fixture).join("expected.json")).unwrap(),
        )
        .unwrap();
        let mut diff = MaxDiff::default();
        let cases = expected["cases"].as_array().unwrap();
        for case in cases {
            check_case(&model, case, &mut diff);
        }
        println!(
            "{fixture}: {} cases, largest differences {diff:?}",
            cases.len()
        );
    }
}

/// Chunked prefill gives the same results as one chunk, at every split.
#[test]
fn chunked_prefill_equals_single_chunk_at_every_split() {
    let model = fixture_model("tiny-d3-a");
    let ids: Vec<u32> = model
        .tokenizer()
        .unwrap()
        .encode("Chunked prefill must not change a single decision: 12 + 30 = 42.")
        .unwrap();
    let request = |split| TraceRequest {
        input: TraceInput::Ids(ids.clone()),
        new_tokens: 4,
        split,
        policy: IterationPolicy::default(),
    };
    let single = trace(&model, &request(None)).unwrap();
    for split in 1..ids.len() {
        let chunked = trace(&model, &request(Some(split))).unwrap();
        assert_eq!(
            chunked.prefill.iter_count, single.prefill.iter_count,
            "split {split}"
        );
        assert_eq!(chunked.decode.tokens, single.decode.tokens, "split {split}");
        for (a, b) in chunked.prefill.top.iter().zip(&single.prefill.top) {
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.0, y.0, "split {split}");
                assert!((x.1 - y.1).abs() < 1e-4, "split {split}");
            }
        }
    }
}
