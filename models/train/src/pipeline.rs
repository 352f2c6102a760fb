//! The whole recipe: data, stage 0, oracle labels, stage 1 (TaH and the two
//! baselines with the same budget), stage 2 (decider), checkpoints, and the
//! held-out evaluation through the real runtime.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tah_core::config::{
    DeciderConfig, EosTokenIds, LoraConfig, LoraTargets, Qwen3Config, LINEAR_MODULES,
};
use tah_core::eval::{evaluate, read_jsonl, EvalItem};
use tah_core::{IterationMode, IterationPolicy, LoadOptions, TahModel};

use crate::checkpoint;
use crate::data::{splits, write_jsonl};
use crate::data_batch::Example;
use crate::decider::{features, TrainDecider};
use crate::net::{Net, NetConfig};
use crate::train::{
    decider_score, label_oracle, train_decider, train_lm, DeciderScore, Policy, Schedule,
};
use crate::vocab::{self, Codec};

/// Sizes and budgets of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Recipe {
    pub net: NetConfig,
    pub decider: DeciderConfig,
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    pub stage0: Schedule,
    pub stage1: Schedule,
    pub stage2: Schedule,
    /// Oracle: a token is also hard when the reference gives the true next
    /// token less than this probability (0 = only its mistakes, the paper's).
    pub oracle_min_prob: f32,
    /// Decider thresholds tried on the validation split (bf16-exact); the
    /// most accurate one is shipped (ties: the fewest passes).
    pub threshold_candidates: Vec<f32>,
    pub seed: u64,
    pub max_new_tokens: usize,
}

impl Recipe {
    pub fn full() -> Self {
        let net = NetConfig {
            qwen: Qwen3Config {
                vocab_size: vocab::vocab_size(),
                hidden_size: 64,
                intermediate_size: 192,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 16,
                rope_theta: 10000.0,
                rms_norm_eps: 1e-6,
                max_position_embeddings: 512,
                tie_word_embeddings: true,
                eos_token_id: Some(EosTokenIds::One(vocab::IM_END)),
            },
            lora: LoraConfig {
                r: 8,
                lora_alpha: 16.0,
                target_modules: LoraTargets::Named(
                    LINEAR_MODULES.iter().map(|m| m.to_string()).collect(),
                ),
                use_rslora: false,
                use_dora: false,
            },
            soft_topk: 8,
        };
        let decider = DeciderConfig {
            topk: 8,
            hidden_states_size: net.qwen.hidden_size,
            hidden_states_layer_nums: vec![0, 2, 4],
            hidden_dims: vec![32, 32],
            expansion_factor: 2,
            normalize_input: true,
            threshold: 0.5,
        };
        Recipe {
            net,
            decider,
            n_train: 20000,
            n_val: 500,
            n_test: 1000,
            stage0: Schedule {
                steps: 2000,
                batch: 16,
                lr: 3e-3,
                warmup: 50,
            },
            stage1: Schedule {
                steps: 500,
                batch: 16,
                lr: 1e-3,
                warmup: 20,
            },
            stage2: Schedule {
                steps: 600,
                batch: 256,
                lr: 1e-3,
                warmup: 50,
            },
            oracle_min_prob: 0.9,
            // 1 - 2^-k, k = 1..=8: the decider's probabilities crowd near 1
            // (BCE with a large positive weight).
            threshold_candidates: (1..=8).map(|k| 1.0 - 0.5f32.powi(k)).collect(),
            seed: 42,
            max_new_tokens: 64,
        }
    }

    /// A 1-2 minute end-to-end run of the same code (CI).
    pub fn smoke() -> Self {
        let mut r = Recipe::full();
        r.net.qwen.hidden_size = 32;
        r.net.qwen.intermediate_size = 64;
        r.net.qwen.num_hidden_layers = 2;
        r.net.qwen.head_dim = 8;
        r.net.lora.r = 4;
        r.net.lora.lora_alpha = 8.0;
        r.decider.hidden_states_size = 32;
        r.decider.hidden_states_layer_nums = vec![0, 2];
        r.decider.hidden_dims = vec![16];
        r.n_train = 500;
        r.n_val = 30;
        r.n_test = 8;
        r.stage0 = Schedule {
            steps: 30,
            batch: 8,
            lr: 3e-3,
            warmup: 5,
        };
        r.stage1 = Schedule {
            steps: 10,
            batch: 8,
            lr: 1e-3,
            warmup: 2,
        };
        r.stage2 = Schedule {
            steps: 30,
            batch: 128,
            lr: 1e-3,
            warmup: 5,
        };
        r.threshold_candidates = vec![0.5, 0.9375];
        r.max_new_tokens = 40;
        r
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeResult {
    pub model: String,
    pub mode: String,
    /// The decider threshold in effect (`decider` mode only).
    pub threshold: Option<f32>,
    pub accuracy: f64,
    pub passes_per_token: f64,
    pub hard_fraction: f64,
    pub items: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub recipe: Recipe,
    pub params_backbone: usize,
    pub params_lora: usize,
    pub params_decider: usize,
    pub oracle_hard_fraction: f64,
    /// Token-level quality of the shipped decider on the validation split.
    pub decider: DeciderScore,
    /// `decider` mode on the validation split at every candidate threshold.
    pub threshold_sweep: Vec<ModeResult>,
    pub final_loss: Vec<(String, f32)>,
    pub seconds: Vec<(String, f64)>,
    pub eval: Vec<ModeResult>,
}

fn examples(codec: &Codec, problems: &[crate::data::Problem]) -> anyhow::Result<Vec<Example>> {
    problems.iter().map(|p| Example::new(codec, p)).collect()
}

/// A fresh net (same seed, so the same LoRA init) holding `from`'s backbone.
fn fork(from: &Net, seed: u64) -> anyhow::Result<Net> {
    let net = Net::new(from.cfg.clone(), seed)?;
    net.base.load_from(&from.base)?;
    Ok(net)
}

/// Greedy accuracy and compute of `model` in `mode` through the runtime.
fn measure(
    model: &TahModel,
    name: &str,
    items: &[EvalItem],
    policy: IterationPolicy,
    max_new_tokens: usize,
) -> anyhow::Result<ModeResult> {
    let summary = evaluate(model, items, policy, max_new_tokens, |_| {})?;
    let r = ModeResult {
        model: name.into(),
        mode: format!("{:?}", policy.mode).to_lowercase(),
        threshold: (policy.mode == IterationMode::Decider)
            .then(|| model.effective_threshold(&policy)),
        accuracy: summary.accuracy(),
        passes_per_token: summary.passes_per_token(),
        hard_fraction: summary.hard_fraction(),
        items: summary.items,
    };
    eprintln!("{r:?}");
    Ok(r)
}

/// The candidate with the best validation accuracy (ties: fewest passes).
fn pick_threshold(sweep: &[ModeResult]) -> anyhow::Result<f32> {
    sweep
        .iter()
        .max_by(|a, b| {
            a.accuracy
                .total_cmp(&b.accuracy)
                .then(b.passes_per_token.total_cmp(&a.passes_per_token))
        })
        .and_then(|r| r.threshold)
        .ok_or_else(|| anyhow::anyhow!("no threshold candidates"))
}

/// Runs the recipe, writing `out/{data,tah,base,always}` and `out/results.json`.
pub fn run(recipe: &Recipe, out: &Path) -> anyhow::Result<Results> {
    let codec = Codec::new()?;
    let mut seconds = Vec::new();
    let mut final_loss = Vec::new();
    let mut timed =
        |name: &str, t: Instant| seconds.push((name.to_string(), t.elapsed().as_secs_f64()));

    // Data.
    let data_dir = out.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let [train, val, test] = splits(recipe.n_train, recipe.n_val, recipe.n_test);
    for (name, split) in [("train", &train), ("val", &val), ("test", &test)] {
        write_jsonl(&data_dir.join(format!("{name}.jsonl")), split)?;
    }
    let mut train_ex = examples(&codec, &train)?;
    let mut val_ex = examples(&codec, &val)?;

    // Stage 0: the base model from scratch.
    let t = Instant::now();
    let stage0 = Net::new(recipe.net.clone(), recipe.seed)?;
    final_loss.push((
        "stage0".into(),
        train_lm(
            &stage0,
            &train_ex,
            Policy::Never,
            &recipe.stage0,
            recipe.seed,
            "stage0",
        )?,
    ));
    timed("stage0", t);

    // Oracle labels from the frozen stage-0 model.
    let batch = 64;
    let oracle_hard_fraction = label_oracle(&stage0, &mut train_ex, batch, recipe.oracle_min_prob)?;
    label_oracle(&stage0, &mut val_ex, batch, recipe.oracle_min_prob)?;
    eprintln!(
        "oracle: {:.1}% of answer tokens are hard",
        100.0 * oracle_hard_fraction
    );

    // Stage 1 and the two baselines, same steps and data order.
    let s1 = recipe.seed + 1;
    let mut nets = Vec::new();
    for (name, policy) in [
        ("tah", Policy::Oracle),
        ("base", Policy::Never),
        ("always", Policy::Always),
    ] {
        let t = Instant::now();
        let net = fork(&stage0, recipe.seed)?;
        final_loss.push((
            name.into(),
            train_lm(&net, &train_ex, policy, &recipe.stage1, s1, name)?,
        ));
        timed(&format!("stage1-{name}"), t);
        nets.push(net);
    }
    let [tah, base, always]: [Net; 3] =
        nets.try_into().map_err(|_| anyhow::anyhow!("three nets"))?;

    // Stage 2: the decider imitates the oracle on the frozen TaH backbone.
    let t = Instant::now();
    let mut decider = TrainDecider::new(recipe.decider.clone(), recipe.seed + 2)?;
    let n_feat = train_ex.len().min(2000);
    let train_feat = features(&tah, &recipe.decider, &train_ex[..n_feat], batch)?;
    let val_feat = features(&tah, &recipe.decider, &val_ex, batch)?;
    final_loss.push((
        "decider".into(),
        train_decider(&decider, &train_feat, &recipe.stage2, recipe.seed + 2)?,
    ));
    timed("stage2", t);

    // The threshold: greedy accuracy on the validation split, per candidate.
    let t = Instant::now();
    let tah_dir = out.join("tah");
    checkpoint::write_tah(&tah, &decider, &tah_dir)?;
    let val_items = read_jsonl(&data_dir.join("val.jsonl"))?;
    let threshold_sweep = {
        let model = TahModel::load(&tah_dir, &LoadOptions::default())?;
        recipe
            .threshold_candidates
            .iter()
            .map(|&t| {
                let policy = IterationPolicy {
                    mode: IterationMode::Decider,
                    threshold: Some(t),
                    ..Default::default()
                };
                measure(&model, "tah", &val_items, policy, recipe.max_new_tokens)
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    decider.cfg.threshold = pick_threshold(&threshold_sweep)?;
    let score = decider_score(&decider, &val_feat, decider.cfg.threshold)?;
    eprintln!("decider: {score:?}");
    timed("threshold", t);

    // Checkpoints. AlwaysThink keeps an untrained decider with threshold 0
    // (sigmoid > 0 always holds), so even `decider` mode iterates every token.
    checkpoint::write_tah(&tah, &decider, &tah_dir)?;
    checkpoint::write_base(&base, &out.join("base"))?;
    let mut always_decider = TrainDecider::new(recipe.decider.clone(), recipe.seed + 2)?;
    always_decider.cfg.threshold = 0.0;
    checkpoint::write_tah(&always, &always_decider, &out.join("always"))?;

    // Held-out accuracy through the runtime.
    let t = Instant::now();
    let items = read_jsonl(&data_dir.join("test.jsonl"))?;
    let mut eval = Vec::new();
    for (name, mode) in [
        ("base", IterationMode::Never),
        ("tah", IterationMode::Never),
        ("tah", IterationMode::Decider),
        ("tah", IterationMode::Always),
        ("always", IterationMode::Always),
    ] {
        let model = TahModel::load(&out.join(name), &LoadOptions::default())?;
        let policy = IterationPolicy {
            mode,
            ..Default::default()
        };
        eval.push(measure(
            &model,
            name,
            &items,
            policy,
            recipe.max_new_tokens,
        )?);
    }
    timed("eval", t);

    let results = Results {
        recipe: recipe.clone(),
        params_backbone: tah.base.count(),
        params_lora: tah.lora.count(),
        params_decider: decider.params.count(),
        oracle_hard_fraction,
        decider: score,
        threshold_sweep,
        final_loss,
        seconds,
        eval,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    Ok(results)
}
