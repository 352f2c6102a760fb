//! The training forward and the runtime compute the same TaH: a checkpoint
//! written by `tah-train` is loaded by `tah_core` (as written, and converted
//! to an f32 GGUF file the way the shipped model is) and its per-position
//! logits (never / always / decider modes) and decider probabilities match
//! the autograd forward's.

use candle_core::{Device, Tensor, D};
use tah_core::gguf::{convert, ConvertOptions, Quant};
use tah_core::trace::{trace, TraceInput, TraceRequest};
use tah_core::{IterationMode, IterationPolicy, KvPrecision, LoadOptions, TahModel};
use tah_train::checkpoint::write_tah;
use tah_train::data::{item, Kind};
use tah_train::data_batch::Example;
use tah_train::decider::TrainDecider;
use tah_train::net::Net;
use tah_train::pipeline::Recipe;
use tah_train::rng::Rng;
use tah_train::train::{train_lm, Draw, Schedule};
use tah_train::vocab::Codec;

fn runtime(model: &TahModel, ids: &[u32], mode: IterationMode) -> tah_core::trace::Trace {
    let request = TraceRequest {
        input: TraceInput::Ids(ids.to_vec()),
        new_tokens: 0,
        split: None,
        policy: IterationPolicy {
            mode,
            ..Default::default()
        },
    };
    trace(model, &request).unwrap()
}

/// Largest |runtime - training| over the runtime's recorded top-20 logits.
fn max_diff(t: &tah_core::trace::Trace, logits: &Tensor) -> f32 {
    let logits = logits.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    let mut worst = 0f32;
    for (p, top) in t.prefill.top.iter().enumerate() {
        for &(id, v) in top {
            worst = worst.max((logits[p][id as usize] - v).abs());
        }
    }
    worst
}

/// The training decider's probabilities at every position of `ids`.
fn probs(net: &Net, decider: &TrainDecider, ids: &Tensor) -> Vec<f32> {
    let cfg = &decider.cfg;
    let out = net
        .forward(ids, None, &cfg.hidden_states_layer_nums)
        .unwrap();
    let hidden = Tensor::cat(&out.hidden, D::Minus1)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let logits = out.logits1.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    let top: Vec<f32> = logits
        .iter()
        .flat_map(|r| {
            tah_core::logits::top_k(r, cfg.topk)
                .into_iter()
                .map(|(_, v)| v)
        })
        .collect();
    let top = Tensor::from_vec(top, (logits.len(), cfg.topk), &Device::Cpu).unwrap();
    let z = decider
        .forward(&hidden, &top)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    z.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
}

#[test]
fn runtime_matches_training_forward() {
    let recipe = Recipe::smoke();
    let codec = Codec::new().unwrap();
    let mut rng = Rng::new(7);
    let examples: Vec<Example> = [Kind::Add, Kind::Sub, Kind::Mul, Kind::Div]
        .into_iter()
        .map(|kind| Example::new(&codec, &item(&mut rng, kind), true).unwrap())
        .collect();
    // A few real training steps, the adapter learning from the second, so
    // it is not a no-op.
    let mut training = recipe.training.clone();
    training.backbone = Schedule {
        steps: 4,
        lr: 1e-2,
        warmup: 1,
    };
    training.stage1_from = 1;
    training.lora = Schedule {
        steps: 3,
        lr: 1e-2,
        warmup: 1,
    };
    training.always_think = false;
    training.oracle.easy_share = 0.5;
    let mut draw = Draw::new(&codec, Default::default(), &training);
    let net = train_lm(
        Net::new(recipe.net.clone(), 3).unwrap(),
        &mut draw,
        &training,
        |_| {},
    )
    .unwrap()
    .tah;

    // Decider threshold at the median probability, so both depths occur.
    let mut decider = TrainDecider::new(recipe.decider.clone(), 11).unwrap();
    let ids = Tensor::new(examples[0].ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut sorted = probs(&net, &decider, &ids);
    sorted.sort_by(f32::total_cmp);
    decider.cfg.threshold = tah_core::decider::bf16_threshold(sorted[sorted.len() / 2]);

    let dir = std::env::temp_dir().join(format!("tah-train-agreement-{}", std::process::id()));
    write_tah(&net, &decider, &dir).unwrap();
    // The GGUF file carries the decider read from `iter_decider.safetensors`.
    let gguf = dir.join("model.gguf");
    let options = ConvertOptions {
        quant: Quant::F32,
        tokenizer: None,
        force: false,
    };
    convert(&dir, &gguf, &options, &mut |_, _, _| {}).unwrap();

    let mut worst = 0f32;
    let mut mixed = 0;
    for path in [&dir, &gguf] {
        // The training forward computes in f32; so must the runtime's cache.
        let options = LoadOptions {
            kv_precision: KvPrecision::F32,
            ..Default::default()
        };
        let model = TahModel::load(path, &options).unwrap();
        for ex in &examples {
            let ids = Tensor::new(ex.ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let n = ex.ids.len();
            // never: depth 1 only.
            let t = runtime(&model, &ex.ids, IterationMode::Never);
            worst = worst.max(max_diff(
                &t,
                &net.forward(&ids, None, &[]).unwrap().logits().unwrap(),
            ));
            // always: every position takes depth 2.
            let t = runtime(&model, &ex.ids, IterationMode::Always);
            let all = vec![true; n];
            worst = worst.max(max_diff(
                &t,
                &net.forward(&ids, Some(&all), &[])
                    .unwrap()
                    .logits()
                    .unwrap(),
            ));
            // decider: the runtime's own choice of hard tokens, and its probabilities.
            let t = runtime(&model, &ex.ids, IterationMode::Decider);
            let hard: Vec<bool> = t.prefill.iter_count.iter().map(|&c| c == 2).collect();
            mixed += usize::from(hard.iter().any(|&h| h) && hard.iter().any(|&h| !h));
            worst = worst.max(max_diff(
                &t,
                &net.forward(&ids, Some(&hard), &[])
                    .unwrap()
                    .logits()
                    .unwrap(),
            ));
            for (p, q) in probs(&net, &decider, &ids)
                .iter()
                .zip(&t.prefill.decider_prob)
            {
                worst = worst.max((p - q[0]).abs());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("max |runtime - training| = {worst:e}");
    assert!(mixed >= 4, "decider mode should mix easy and hard tokens");
    assert!(
        worst < 1e-4,
        "runtime and training forward disagree by {worst}"
    );
}
