//! The GGUF model file: HF -> GGUF -> run reproduces the reference, quantized
//! files keep the decisions, hostile files give typed errors, and plain
//! Qwen3 GGUF files run in `never` mode.

mod common;

use std::path::Path;

use common::check::{arith_transcripts, check_case, Agreement, MaxDiff};
use common::gguf::{GgufParts, TempFile};
use common::{fixture_dir, fixture_names, repo_root, tokenizer_path};
use serde_json::Value as Json;
use tah_core::gguf::{convert, ConvertOptions, ConvertSummary, GgufFile, Quant, Value};
use tah_core::trace::{trace, TraceInput, TraceRequest};
use tah_core::{
    Error, GgufProblem, IterationMode, IterationPolicy, KvPrecision, LoadOptions, TahModel,
};

fn convert_fixture(name: &str, quant: Quant) -> (TempFile, ConvertSummary) {
    let out = TempFile::new(&format!("{name}-{quant:?}"));
    let options = ConvertOptions {
        quant,
        tokenizer: Some(tokenizer_path()),
        force: false,
    };
    let summary = convert(
        &fixture_dir().join(name),
        &out.0,
        &options,
        &mut |_, _, _| {},
    )
    .unwrap_or_else(|e| panic!("converting {name}: {e}"));
    (out, summary)
}

/// Loads with the tokenizer and chat template embedded in the file, and the
/// f32 KV cache the reference's tolerances assume.
fn load(path: &Path) -> TahModel {
    let options = LoadOptions {
        kv_precision: KvPrecision::F32,
        ..Default::default()
    };
    TahModel::load(path, &options).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn expected(fixture: &str) -> Json {
    let text = std::fs::read_to_string(fixture_dir().join(fixture).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn f32_and_f16_gguf_match_the_reference() {
    for fixture in fixture_names() {
        let expected = expected(&fixture);
        for quant in [Quant::F32, Quant::F16] {
            let (file, summary) = convert_fixture(&fixture, quant);
            println!("{fixture} {quant:?}: {summary:?}");
            let model = load(&file.0);
            let mut diff = MaxDiff::default();
            for case in expected["cases"].as_array().unwrap() {
                check_case(&model, case, &mut diff);
            }
            println!("{fixture} {quant:?}: largest differences {diff:?}");
        }
    }
}

/// Per-position agreement of a quantized file with the f32 file, teacher
/// forced on the f32 run's tokens so every position sees the same input.
fn agreement(quant: Quant) -> Agreement {
    let mut total = Agreement::default();
    for fixture in fixture_names() {
        let (f32_file, _) = convert_fixture(&fixture, Quant::F32);
        let (q_file, summary) = convert_fixture(&fixture, quant);
        println!("{fixture} {quant:?}: {summary:?}");
        let (reference, quantized) = (load(&f32_file.0), load(&q_file.0));
        assert!(quantized.embedding().is_some_and(|e| e.is_mapped()));
        total.add(&reference, &quantized, &expected(&fixture));
    }
    total.report(&format!("{quant:?} vs f32"));
    total
}

#[test]
fn q8_0_on_the_random_fixtures() {
    let a = agreement(Quant::Q8_0);
    // Reported, with a floor against regressions: the issue's 99% top-1
    // target is for trained weights (the trained-model test below). These
    // random-weight fixtures have nearly flat logits over 151,936 tokens, so
    // the top two are often within q8_0's error; the report shows how close
    // the flipped-to tokens were in the f32 run.
    a.assert_at_least(85.0, 98.0);
}

#[test]
fn q4_k_figures() {
    // Reported, not asserted: 4-bit weights on a hidden size of 64 (every
    // row one Q5_0 fallback block) are a stress test, not a product setting.
    agreement(Quant::Q4K);
}

/// The shipped trained model (`models/arith-tah.gguf`, f16) rewritten at f32
/// and at `quant` by `convert`, teacher-forced on held-out problems (chat
/// transcripts of questions and worked solutions) in `decider` mode.
fn trained_agreement(quant: Quant, problems: usize) -> Agreement {
    let models = repo_root().join("models");
    let rewrite = |quant: Quant| {
        let out = TempFile::new(&format!("arith-{quant:?}"));
        let options = ConvertOptions {
            quant,
            tokenizer: None,
            force: false,
        };
        convert(
            &models.join("arith-tah.gguf"),
            &out.0,
            &options,
            &mut |_, _, _| {},
        )
        .unwrap_or_else(|e| panic!("rewriting the default model at {quant:?}: {e}"));
        out
    };
    let (f32_file, q_file) = (rewrite(Quant::F32), rewrite(quant));
    let (reference, quantized) = (load(&f32_file.0), load(&q_file.0));
    let mut total = Agreement::default();
    for request in arith_transcripts(problems) {
        total.add_request(&reference, &quantized, &request);
    }
    total.report(&format!(
        "trained model, {problems} problems, {quant:?} vs f32"
    ));
    total
}

#[test]
fn q8_0_keeps_top1_and_decisions_of_the_trained_model() {
    trained_agreement(Quant::Q8_0, 100).assert_at_least(99.0, 98.0);
}

#[test]
fn q4_k_figures_of_the_trained_model() {
    // Reported, not asserted (hidden size 64: Q5_0 fallback blocks).
    trained_agreement(Quant::Q4K, 100);
}

#[test]
fn rewriting_a_gguf_equals_converting_the_directory() {
    // The f32 file holds the checkpoint's bf16 values exactly, so rewriting
    // it at q8_0 must give the bytes of a direct q8_0 conversion.
    let (f32_file, _) = convert_fixture("tiny-d2-a", Quant::F32);
    let (direct, _) = convert_fixture("tiny-d2-a", Quant::Q8_0);
    let rewritten = TempFile::new("tiny-d2-a-rewritten");
    let options = ConvertOptions {
        quant: Quant::Q8_0,
        tokenizer: None,
        force: false,
    };
    convert(&f32_file.0, &rewritten.0, &options, &mut |_, _, _| {}).unwrap();
    let (a, b) = (
        GgufFile::open(&direct.0).unwrap(),
        GgufFile::open(&rewritten.0).unwrap(),
    );
    let mut names: Vec<&str> = a.tensor_names().collect();
    names.sort_unstable();
    let mut other: Vec<&str> = b.tensor_names().collect();
    other.sort_unstable();
    assert_eq!(names, other);
    for name in names {
        let (x, y) = (a.tensor_info(name).unwrap(), b.tensor_info(name).unwrap());
        assert_eq!((x.dtype, &x.shape), (y.dtype, &y.shape), "{name}");
        assert!(
            a.tensor_bytes(name) == b.tensor_bytes(name),
            "{name} differs"
        );
    }
    for (key, value) in a.metadata() {
        if key != "general.name" {
            assert_eq!(b.metadata().get(key), Some(value), "{key}");
        }
    }
    // Refuses to overwrite, like a directory conversion.
    let again = convert(&f32_file.0, &rewritten.0, &options, &mut |_, _, _| {});
    assert!(matches!(again, Err(Error::InvalidArgument(_))), "{again:?}");
}

#[test]
fn convert_refuses_to_overwrite_without_force() {
    let (file, _) = convert_fixture("tiny-d2-a", Quant::Q8_0);
    let options = |force| ConvertOptions {
        quant: Quant::Q8_0,
        tokenizer: Some(tokenizer_path()),
        force,
    };
    let from = fixture_dir().join("tiny-d2-a");
    let err = convert(&from, &file.0, &options(false), &mut |_, _, _| {}).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    convert(&from, &file.0, &options(true), &mut |_, _, _| {}).unwrap();
}

/// Rewrites `src` into `dst` with metadata and tensors filtered/changed.
fn rewrite(
    src: &Path,
    dst: &Path,
    keep_key: impl Fn(&str) -> bool,
    extra: Vec<(String, Value)>,
    keep_tensor: impl Fn(&str) -> bool,
) {
    let mut parts = GgufParts::read(src);
    parts.remove_keys(|k| !keep_key(k));
    for (key, value) in extra {
        parts.set(&key, value);
    }
    parts.remove_tensors(|n| !keep_tensor(n));
    parts.write(dst);
}

#[test]
fn plain_qwen3_gguf_runs_in_never_mode() {
    let (tah_file, _) = convert_fixture("tiny-d2-a", Quant::F32);
    let plain = TempFile::new("plain");
    rewrite(
        &tah_file.0,
        &plain.0,
        |k| !k.starts_with("tah."),
        vec![],
        |n| !n.starts_with("tah.") && !n.contains(".lora_"),
    );
    let model = load(&plain.0);
    assert_eq!(model.max_iter(), 1);
    assert!(model.notice().unwrap().contains("never mode"));
    // The plain model is the TaH model in `never` mode (checked against the
    // reference above), minus the decider it no longer has.
    let tah_model = load(&tah_file.0);
    let request = |mode| TraceRequest {
        input: TraceInput::Chat("What is 347 + 589?".into()),
        new_tokens: 16,
        split: None,
        policy: IterationPolicy {
            mode,
            ..Default::default()
        },
    };
    let plain_trace = trace(&model, &request(IterationMode::Decider)).unwrap();
    let never = trace(&tah_model, &request(IterationMode::Never)).unwrap();
    assert_eq!(plain_trace.decode.tokens, never.decode.tokens);
    assert!(plain_trace.prefill.iter_count.iter().all(|&c| c == 1));
    for (a, b) in plain_trace.prefill.top.iter().zip(&never.prefill.top) {
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.0, y.0);
            assert!((x.1 - y.1).abs() < 1e-5);
        }
    }

    // A plain file can be rewritten at another type too; without an
    // embedded tokenizer.json it needs one passed in.
    let options = |tokenizer| ConvertOptions {
        quant: Quant::Q8_0,
        tokenizer,
        force: true,
    };
    let rewritten = TempFile::new("plain-q8_0");
    convert(&plain.0, &rewritten.0, &options(None), &mut |_, _, _| {}).unwrap();
    assert_eq!(load(&rewritten.0).max_iter(), 1);
    let bare = TempFile::new("plain-no-tokenizer");
    rewrite(
        &plain.0,
        &bare.0,
        |k| k != "tokenizer.huggingface.json",
        vec![],
        |_| true,
    );
    let refused = convert(&bare.0, &rewritten.0, &options(None), &mut |_, _, _| {});
    assert!(matches!(refused, Err(Error::Gguf { .. })), "{refused:?}");
    let tokenizer = Some(tokenizer_path());
    convert(
        &bare.0,
        &rewritten.0,
        &options(tokenizer),
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(load(&rewritten.0).max_iter(), 1);
}

fn load_err(bytes: &[u8]) -> Error {
    let file = TempFile::new("hostile");
    std::fs::write(&file.0, bytes).unwrap();
    match TahModel::load(&file.0, &LoadOptions::default()) {
        Ok(_) => panic!("a hostile file loaded"),
        Err(e) => e,
    }
}

fn problem(e: Error) -> GgufProblem {
    match e {
        Error::Gguf { problem, .. } => problem,
        other => panic!("expected a GGUF error, got {other}"),
    }
}

/// A hand-made header: magic, version, one tensor `x` of `dims` (GGUF
/// order), type `type_id` at `offset`, and the given raw metadata bytes.
fn header(version: u32, n_tensors: u64, dims: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b'x');
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&type_id.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + 64, 0);
    b
}

#[test]
fn hostile_files_give_typed_errors() {
    let (good, _) = convert_fixture("tiny-d2-a", Quant::Q8_0);
    let bytes = std::fs::read(&good.0).unwrap();

    // Wrong magic, unknown container version.
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(problem(load_err(&bad)), GgufProblem::BadMagic(_)));
    let mut bad = bytes.clone();
    bad[4..8].copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(problem(load_err(&bad)), GgufProblem::UnsupportedVersion(99));

    // Truncated anywhere: in the header, or in the tensor data.
    let parsed = GgufFile::open(&good.0).unwrap();
    let data_end = parsed
        .tensor_names()
        .map(|n| {
            let info = parsed.tensor_info(n).unwrap();
            info.offset + info.len
        })
        .max()
        .unwrap();
    for cut in [0, 3, 10, 23, 24, 100, 5000, bytes.len() / 2, data_end - 1] {
        let p = problem(load_err(&bytes[..cut]));
        assert!(
            matches!(
                p,
                GgufProblem::Truncated(_)
                    | GgufProblem::TensorOutOfBounds(_)
                    | GgufProblem::TooLarge(_)
            ),
            "cut at {cut}: {p:?}"
        );
    }

    // Counts, offsets and dimensions that do not fit.
    assert!(matches!(
        problem(load_err(&header(3, u64::MAX, &[4], 0, 0))),
        GgufProblem::TooLarge(_)
    ));
    assert_eq!(
        problem(load_err(&header(3, 1, &[4], 0, 1 << 40))),
        GgufProblem::TensorOutOfBounds("x".into())
    );
    assert_eq!(
        problem(load_err(&header(3, 1, &[4], 0, u64::MAX))),
        GgufProblem::TensorOutOfBounds("x".into())
    );
    assert_eq!(
        problem(load_err(&header(3, 1, &[1 << 40, 1 << 40], 0, 0))),
        GgufProblem::TooLarge("tensor `x`".into())
    );
    assert!(matches!(
        problem(load_err(&header(3, 1, &[4, 1, 1, 1, 1], 0, 0))),
        GgufProblem::TooLarge(_)
    ));
    assert!(matches!(
        problem(load_err(&header(3, 1, &[4], 99, 0))),
        GgufProblem::UnsupportedType { type_id: 99, .. }
    ));
    // A valid header with no metadata is not a qwen3 model.
    assert!(matches!(
        problem(load_err(&header(3, 1, &[4], 0, 0))),
        GgufProblem::Metadata { .. }
    ));

    // Unknown TaH version; metadata that disagrees with the tensors.
    let file = TempFile::new("bad-version");
    let version = |v| vec![("tah.format_version".to_string(), Value::U32(v))];
    rewrite(&good.0, &file.0, |_| true, version(2), |_| true);
    let err = TahModel::load(&file.0, &LoadOptions::default())
        .err()
        .unwrap();
    assert_eq!(
        problem(err),
        GgufProblem::UnsupportedTahVersion {
            found: 2,
            supported: 1
        }
    );
    let wide = vec![("qwen3.embedding_length".to_string(), Value::U32(128))];
    rewrite(&good.0, &file.0, |_| true, wide, |_| true);
    let err = TahModel::load(&file.0, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch { .. } | Error::InvalidConfig { .. }
        ),
        "{err}"
    );
    let lora_r = vec![("tah.lora.r".to_string(), Value::U32(8))];
    rewrite(&good.0, &file.0, |_| true, lora_r, |_| true);
    let err = TahModel::load(&file.0, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let absurd = vec![("qwen3.block_count".to_string(), Value::U64(u64::MAX))];
    rewrite(&good.0, &file.0, |_| true, absurd, |_| true);
    let err = TahModel::load(&file.0, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
}

#[test]
fn quantized_embedding_stays_mapped() {
    let (file, summary) = convert_fixture("tiny-d2-a", Quant::Q8_0);
    let model = load(&file.0);
    assert!(model.embedding().is_some_and(|e| e.is_mapped()));
    let bpw = summary
        .parts
        .iter()
        .find(|(p, _)| *p == "embedding")
        .unwrap()
        .1
        .bits_per_weight();
    assert!(
        (bpw - 8.5).abs() < 1e-9,
        "q8_0 embedding at {bpw} bits/weight"
    );
}
