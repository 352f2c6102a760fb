//! The whole recipe: data, stage 0, oracle labels, stage 1 (TaH and the two
//! baselines with the same budget), stage 2 (decider), checkpoints, and the
//! held-out evaluation through the real runtime.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tah_core::config::DeciderConfig;
use tah_core::eval::{read_jsonl, solve, EvalSummary};
use tah_core::{IterationMode, IterationPolicy, LoadOptions, TahModel};

use crate::checkpoint;
use crate::data::{splits, write_jsonl};
use crate::data_batch::Example;
use crate::decider::{features, TrainDecider};
use crate::net::{Net, NetConfig};
use crate::train::{
    label_oracle, pick_threshold, train_decider, train_lm, DeciderScore, Policy, Schedule,
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
    pub seed: u64,
    pub max_new_tokens: usize,
}

impl Recipe {
    pub fn full() -> Self {
        let net = NetConfig {
            vocab_size: vocab::vocab_size(),
            hidden_size: 64,
            intermediate_size: 192,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            lora_r: 8,
            lora_alpha: 16.0,
            soft_topk: 8,
        };
        let decider = DeciderConfig {
            topk: 8,
            hidden_states_size: net.hidden_size,
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
            n_val: 300,
            n_test: 200,
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
            seed: 42,
            max_new_tokens: 64,
        }
    }

    /// A 1-2 minute end-to-end run of the same code (CI).
    pub fn smoke() -> Self {
        let mut r = Recipe::full();
        r.net.hidden_size = 32;
        r.net.intermediate_size = 64;
        r.net.num_hidden_layers = 2;
        r.net.head_dim = 8;
        r.net.lora_r = 4;
        r.net.lora_alpha = 8.0;
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
        r.max_new_tokens = 40;
        r
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeResult {
    pub model: String,
    pub mode: String,
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
    pub decider: DeciderScore,
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
    let oracle_hard_fraction = label_oracle(&stage0, &mut train_ex, batch)?;
    label_oracle(&stage0, &mut val_ex, batch)?;
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
    train_decider(&decider, &train_feat, &recipe.stage2, recipe.seed + 2)?;
    let score = pick_threshold(&decider, &val_feat)?;
    decider.cfg.threshold = score.threshold;
    eprintln!("decider: {score:?}");
    timed("stage2", t);

    // Checkpoints. AlwaysThink keeps an untrained decider with threshold 0
    // (sigmoid > 0 always holds), so even `decider` mode iterates every token.
    checkpoint::write_tah(&tah, &decider, &out.join("tah"))?;
    checkpoint::write_base(&base, &out.join("base"))?;
    let mut always_decider = TrainDecider::new(recipe.decider.clone(), recipe.seed + 2)?;
    always_decider.cfg.threshold = 0.0;
    checkpoint::write_tah(&always, &always_decider, &out.join("always"))?;

    // Held-out accuracy through the runtime.
    let t = Instant::now();
    let mut eval = Vec::new();
    let runs = [
        ("base", IterationMode::Never),
        ("tah", IterationMode::Never),
        ("tah", IterationMode::Decider),
        ("tah", IterationMode::Always),
        ("always", IterationMode::Always),
    ];
    let items = read_jsonl(&data_dir.join("test.jsonl"))?;
    for (model, mode) in runs {
        let m = TahModel::load(&out.join(model), &LoadOptions::default())?;
        let policy = IterationPolicy {
            mode,
            ..Default::default()
        };
        let mut summary = EvalSummary::default();
        for item in &items {
            summary.add(&solve(&m, item, policy, recipe.max_new_tokens)?);
        }
        let r = ModeResult {
            model: model.into(),
            mode: format!("{mode:?}").to_lowercase(),
            accuracy: summary.accuracy(),
            passes_per_token: summary.passes_per_token(),
            hard_fraction: summary.hard_fraction(),
            items: summary.items,
        };
        eprintln!("{r:?}");
        eval.push(r);
    }
    timed("eval", t);

    let results = Results {
        recipe: recipe.clone(),
        params_backbone: tah.base.count(),
        params_lora: tah.lora.count(),
        params_decider: decider.params.count(),
        oracle_hard_fraction,
        decider: score,
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
