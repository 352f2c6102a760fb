//! `tah init-random` files: a random model with every TaH part loads through
//! the real loader and runs (the decider on every token), its base-only twin
//! has byte-identical base tensors and llama.cpp's tokenizer keys, and the
//! same seed gives the same bytes.

mod common;

use candle_core::quantized::GgmlDType;
use common::gguf::TempFile;
use common::tokenizer_path;
use tah_core::gguf::{write_random, GgufFile, Quant, RandomModelOptions, RandomShape, Value};
use tah_core::trace::{trace, Trace, TraceInput, TraceRequest};
use tah_core::{IterationMode, IterationPolicy, LoadOptions, TahModel};

fn write(label: &str, quant: Quant, seed: u64, base_only: bool) -> TempFile {
    let out = TempFile::new(label);
    let options = RandomModelOptions {
        shape: RandomShape::tiny(),
        quant,
        seed,
        base_only,
        tokenizer_json: std::fs::read_to_string(tokenizer_path()).unwrap(),
        chat_template: None,
        force: false,
    };
    write_random(&out.0, &options, &mut |_, _, _| {})
        .unwrap_or_else(|e| panic!("writing {label}: {e}"));
    out
}

fn run(file: &TempFile, mode: IterationMode) -> Trace {
    let model = TahModel::load(&file.0, &LoadOptions::default()).unwrap();
    let request = TraceRequest {
        input: TraceInput::Ids((1000..1012).collect()),
        new_tokens: 6,
        split: None,
        policy: IterationPolicy {
            mode,
            ..Default::default()
        },
    };
    trace(&model, &request).unwrap()
}

#[test]
fn random_tah_model_loads_and_runs_with_the_decider_on_every_token() {
    let file = write("q4k", Quant::Q4K, 7, false);
    let gguf = GgufFile::open(&file.0).unwrap();
    let dtype = |name: &str| gguf.tensor_info(name).unwrap().dtype;
    assert_eq!(dtype("token_embd.weight"), GgmlDType::Q6K);
    assert_eq!(dtype("blk.0.attn_q.weight"), GgmlDType::Q4K);
    assert_eq!(dtype("blk.3.ffn_down.weight"), GgmlDType::Q4K);
    assert!(gguf.tensor_info("blk.3.ffn_down.weight.lora_b").is_some());
    assert!(gguf
        .tensor_info("tah.decider.backbone.blocks.1.mlp.3.weight")
        .is_some());
    assert_eq!(gguf.metadata()["tah.lora.r"], Value::U32(4));

    let t = run(&file, IterationMode::Decider);
    let decider_probs: Vec<&Vec<f32>> = t
        .prefill
        .decider_prob
        .iter()
        .chain(&t.decode.decider_prob)
        .collect();
    assert_eq!(decider_probs.len(), 12 + 6);
    for probs in decider_probs {
        // One decision per token, and (by construction) "easy".
        assert_eq!(probs.len(), 1);
        assert!(probs[0] > 0.0 && probs[0] < 0.1, "decider p = {}", probs[0]);
    }
    assert!(t.prefill.iter_count.iter().all(|&c| c == 1));
    let logits_ok = |top: &[(u32, f32)]| top.iter().all(|(_, l)| l.is_finite());
    assert!(t.prefill.top.iter().all(|top| logits_ok(top)));

    let always = run(&file, IterationMode::Always);
    assert!(always.prefill.iter_count.iter().all(|&c| c == 2));
    assert!(always.decode.top.iter().all(|top| logits_ok(top)));
}

#[test]
fn base_only_twin_has_the_same_base_tensors_and_llama_cpp_keys() {
    let tah = write("twin-tah", Quant::Q8_0, 3, false);
    let base = write("twin-base", Quant::Q8_0, 3, true);
    let (tah_file, base_file) = (
        GgufFile::open(&tah.0).unwrap(),
        GgufFile::open(&base.0).unwrap(),
    );
    let base_names: Vec<&str> = base_file.tensor_names().collect();
    assert_eq!(base_names.len(), 1 + 4 * 11 + 1);
    for name in &base_names {
        assert_eq!(
            base_file.tensor_bytes(name),
            tah_file.tensor_bytes(name),
            "{name} differs"
        );
    }
    assert!(!base_names
        .iter()
        .any(|n| n.contains("lora") || n.starts_with("tah.")));
    assert!(!base_file.metadata().keys().any(|k| k.starts_with("tah.")));
    match &base_file.metadata()["tokenizer.ggml.tokens"] {
        Value::Array(tokens) => assert_eq!(tokens.len(), 151_936),
        other => panic!("tokens: {other:?}"),
    }
    assert_eq!(
        base_file.metadata()["tokenizer.ggml.model"],
        Value::String("gpt2".into())
    );

    // Same base weights: `never` mode is the same computation on both files.
    let (a, b) = (
        run(&tah, IterationMode::Never),
        run(&base, IterationMode::Never),
    );
    assert_eq!(a.decode.tokens, b.decode.tokens);
    assert_eq!(a.prefill.top, b.prefill.top);
    // Distinct top logits: 32-value blocks make no repeated embedding rows.
    assert!(a.prefill.top.iter().all(|top| top[0].1 > top[1].1));
}

#[test]
fn same_seed_same_bytes_and_no_silent_overwrite() {
    let a = write("seed-a", Quant::F16, 11, false);
    let b = write("seed-b", Quant::F16, 11, false);
    let c = write("seed-c", Quant::F16, 12, false);
    let bytes = |f: &TempFile| std::fs::read(&f.0).unwrap();
    assert!(bytes(&a) == bytes(&b), "same seed, different files");
    let embd = |f: &TempFile| {
        GgufFile::open(&f.0)
            .unwrap()
            .tensor_bytes("token_embd.weight")
            .unwrap()
            .to_vec()
    };
    assert_ne!(embd(&a), embd(&c));
    assert_eq!(
        GgufFile::open(&a.0)
            .unwrap()
            .tensor_info("blk.0.attn_q.weight")
            .unwrap()
            .dtype,
        GgmlDType::F16
    );
    // f16 weights run too.
    let t = run(&a, IterationMode::Decider);
    assert!(t.decode.top.iter().all(|top| top[0].1.is_finite()));

    let options = RandomModelOptions {
        shape: RandomShape::tiny(),
        quant: Quant::F16,
        seed: 11,
        base_only: false,
        tokenizer_json: std::fs::read_to_string(tokenizer_path()).unwrap(),
        chat_template: None,
        force: false,
    };
    let err = write_random(&a.0, &options, &mut |_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
}
