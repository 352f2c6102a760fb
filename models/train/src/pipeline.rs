//! The whole recipe: data, the base / TaH / AlwaysThink run (one backbone,
//! two adapters), the decider, checkpoints, the decider threshold on the
//! validation split, and the held-out evaluation through the real runtime,
//! with paired comparisons.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tah_core::config::{
    DeciderConfig, EosTokenIds, LoraConfig, LoraTargets, Qwen3Config, LINEAR_MODULES,
};
use tah_core::eval::{answer_record, evaluate, read_jsonl, EvalItem, EvalSummary, Paired};
use tah_core::{IterationMode, IterationPolicy, LoadOptions, TahModel};

use crate::checkpoint;
use crate::data::{held_out, write_jsonl, Item};
use crate::data_batch::Example;
use crate::decider::{features, TrainDecider};
use crate::net::{Net, NetConfig};
use crate::train::{
    decider_score, train_decider, train_lm, DeciderScore, Draw, LmTraining, Oracle, Schedule,
};
use crate::vocab::{self, Codec};

/// Sizes and budgets of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Recipe {
    pub net: NetConfig,
    pub decider: DeciderConfig,
    pub n_val: usize,
    pub n_test: usize,
    pub training: LmTraining,
    /// Training transcripts (fresh from the stream) the decider learns on.
    pub decider_transcripts: usize,
    pub stage2: Schedule,
    pub decider_batch: usize,
    /// Decider thresholds tried on the validation split (bf16-exact); the
    /// most accurate one is shipped (ties: `pick_threshold`).
    pub threshold_candidates: Vec<f32>,
    pub max_new_tokens: usize,
}

impl Recipe {
    pub fn full() -> Self {
        let net = NetConfig {
            qwen: Qwen3Config {
                vocab_size: vocab::vocab_size(),
                hidden_size: 128,
                intermediate_size: 384,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 32,
                rope_theta: 10000.0,
                rms_norm_eps: 1e-6,
                max_position_embeddings: 1024,
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
        let steps = 3400;
        let stage1_from = 2040;
        Recipe {
            net,
            decider,
            n_val: 300,
            n_test: 1500,
            training: LmTraining {
                backbone: Schedule {
                    steps,
                    lr: 3e-3,
                    warmup: 60,
                },
                stage1_from,
                lora: Schedule {
                    steps: steps - stage1_from,
                    lr: 2e-3,
                    warmup: 20,
                },
                items_per_step: 24,
                max_tokens: 2048,
                no_think: 0.1,
                kind_weights: [1.0, 2.0, 1.5, 1.5, 1.5, 1.0],
                oracle: Oracle {
                    min_prob: 0.9,
                    easy_share: 0.05,
                },
                always_think: true,
                seed: 42,
            },
            decider_transcripts: 1500,
            stage2: Schedule {
                steps: 800,
                lr: 1e-3,
                warmup: 50,
            },
            decider_batch: 256,
            // 1 - 2^-k, k = 1..=9: the decider's probabilities crowd near 1
            // (BCE with a large positive weight).
            threshold_candidates: (1..=9).map(|k| 1.0 - 0.5f32.powi(k)).collect(),
            max_new_tokens: 320,
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
        r.n_val = 12;
        r.n_test = 12;
        r.training.backbone = Schedule {
            steps: 24,
            lr: 3e-3,
            warmup: 4,
        };
        r.training.stage1_from = 16;
        r.training.lora = Schedule {
            steps: 8,
            lr: 1e-3,
            warmup: 2,
        };
        r.training.items_per_step = 6;
        r.decider_transcripts = 40;
        r.stage2 = Schedule {
            steps: 30,
            lr: 1e-3,
            warmup: 5,
        };
        r.decider_batch = 128;
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
    pub summary: EvalSummary,
}

impl ModeResult {
    pub fn accuracy(&self) -> f64 {
        self.summary.accuracy()
    }
}

/// `a` against `b`, question by question, on the test split.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub paired: Paired,
}

/// Wall-clock and CPU seconds of one stage.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub stage: String,
    pub wall: f64,
    pub cpu: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub recipe: Recipe,
    pub params_backbone: usize,
    pub params_lora: usize,
    pub params_decider: usize,
    /// Share of answer tokens the oracle called hard during the second stage.
    pub oracle_hard_fraction: f64,
    /// Token-level quality of the shipped decider on the validation split.
    pub decider: DeciderScore,
    /// `decider` mode on the validation split at every candidate threshold.
    pub threshold_sweep: Vec<ModeResult>,
    /// Mean training loss over the last 10% of steps.
    pub final_loss: Vec<(String, f32)>,
    pub timings: Vec<Timing>,
    pub eval: Vec<ModeResult>,
    pub comparisons: Vec<Comparison>,
}

/// CPU seconds this process has used (all threads), where the OS says.
fn cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0 {
            // SAFETY: initialised by the successful call above.
            let u = unsafe { usage.assume_init() };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            return secs(u.ru_utime) + secs(u.ru_stime);
        }
    }
    f64::NAN
}

struct Clock {
    timings: Vec<Timing>,
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            timings: Vec::new(),
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    /// Closes the stage that ran since the last call.
    fn lap(&mut self, stage: &str) {
        let cpu = cpu_seconds();
        self.timings.push(Timing {
            stage: stage.into(),
            wall: self.wall.elapsed().as_secs_f64(),
            cpu: cpu - self.cpu,
        });
        eprintln!("[{stage}] done: {:?}", self.timings.last());
        self.wall = Instant::now();
        self.cpu = cpu;
    }
}

/// Greedy accuracy and compute of `model` in `mode` through the runtime;
/// every answer written to `answers` (JSONL) if given.
fn measure(
    model: &TahModel,
    name: &str,
    items: &[EvalItem],
    policy: IterationPolicy,
    max_new_tokens: usize,
    answers: Option<&Path>,
) -> anyhow::Result<ModeResult> {
    let mut records = Vec::new();
    let summary = evaluate(model, items, policy, max_new_tokens, |item, solved, _| {
        if answers.is_some() {
            records.extend((0..solved.len()).map(|t| answer_record(item, t, &solved[t])));
        }
    })?;
    if let Some(path) = answers {
        let lines: Vec<String> = records.iter().map(|r| r.to_string() + "\n").collect();
        std::fs::write(path, lines.concat())?;
    }
    let r = ModeResult {
        model: name.into(),
        mode: format!("{:?}", policy.mode).to_lowercase(),
        threshold: (policy.mode == IterationMode::Decider)
            .then(|| model.effective_threshold(&policy)),
        summary,
    };
    eprintln!(
        "{name} {} {:?}: {:.2}% ({}/{}), {:.3} passes/token, {:.1}% hard, kinds {:?}",
        r.mode,
        r.threshold,
        100.0 * r.accuracy(),
        r.summary.all.correct,
        r.summary.all.questions,
        r.summary.passes_per_token(),
        100.0 * r.summary.hard_fraction(),
        r.summary
            .kinds
            .iter()
            .map(|(k, t)| format!("{k} {:.1}%", 100.0 * t.accuracy()))
            .collect::<Vec<_>>()
    );
    Ok(r)
}

/// The candidate with the best validation accuracy. Ties go to the share of
/// hard tokens closest to `oracle_hard`, the share the decider was trained
/// to predict (then to the fewest passes): breaking them by passes alone
/// picks a threshold at which the decider never fires whenever the second
/// pass changes no validation answer.
fn pick_threshold(sweep: &[ModeResult], oracle_hard: f64) -> anyhow::Result<f32> {
    let best = sweep
        .iter()
        .map(ModeResult::accuracy)
        .max_by(f64::total_cmp)
        .ok_or_else(|| anyhow::anyhow!("no threshold candidates"))?;
    let off_oracle = |r: &ModeResult| (r.summary.hard_fraction() - oracle_hard).abs();
    sweep
        .iter()
        .filter(|r| r.accuracy() == best)
        .min_by(|a, b| {
            off_oracle(a).total_cmp(&off_oracle(b)).then(
                a.summary
                    .passes_per_token()
                    .total_cmp(&b.summary.passes_per_token()),
            )
        })
        .and_then(|r| r.threshold)
        .ok_or_else(|| anyhow::anyhow!("no threshold candidates"))
}

fn examples(codec: &Codec, items: &[Item]) -> anyhow::Result<Vec<Example>> {
    items.iter().map(|i| Example::new(codec, i, true)).collect()
}

/// Runs the recipe, writing `out/{data,tah,base,always}` and `out/results.json`.
pub fn run(recipe: &Recipe, out: &Path) -> anyhow::Result<Results> {
    let codec = Codec::new()?;
    let mut clock = Clock::new();
    let mut final_loss = Vec::new();

    // Data: the held-out splits; training draws from a stream without them.
    let data_dir = out.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let (val, test, held) = held_out(recipe.n_val, recipe.n_test);
    for (name, split) in [("val", &val), ("test", &test)] {
        write_jsonl(&data_dir.join(format!("{name}.jsonl")), split)?;
    }
    let mut draw = Draw::new(&codec, held, &recipe.training);
    clock.lap("data");

    // The base / TaH run, AlwaysThink in lockstep from its fork.
    let trained = train_lm(
        Net::new(recipe.net.clone(), recipe.training.seed)?,
        &mut draw,
        &recipe.training,
        |line| eprintln!("[train] {line}"),
    )?;
    let [base_loss, tah_loss, always_loss] = trained.final_loss;
    final_loss.push(("base".to_string(), base_loss));
    final_loss.push(("tah-depth2".to_string(), tah_loss));
    final_loss.push(("always".to_string(), always_loss));
    eprintln!(
        "oracle: {:.1}% of answer tokens hard in stage 1",
        100.0 * trained.oracle_hard
    );
    clock.lap("train");
    let tah = trained.tah;

    // The decider imitates the oracle on the final depth 1.
    let oracle = recipe.training.oracle;
    let seed = recipe.training.seed + 2;
    let mut decider = TrainDecider::new(recipe.decider.clone(), seed)?;
    let items = draw.items(recipe.decider_transcripts);
    let max_tokens = recipe.training.max_tokens;
    let train_feat = features(
        &tah,
        &recipe.decider,
        &examples(&codec, &items)?,
        &oracle,
        max_tokens,
    )?;
    let val_feat = features(
        &tah,
        &recipe.decider,
        &examples(&codec, &val)?,
        &oracle,
        max_tokens,
    )?;
    final_loss.push((
        "decider".into(),
        train_decider(
            &decider,
            &train_feat,
            &recipe.stage2,
            recipe.decider_batch,
            seed,
        )?,
    ));
    clock.lap("decider");

    // The threshold: greedy accuracy on the validation split, per candidate.
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
                measure(
                    &model,
                    "tah",
                    &val_items,
                    policy,
                    recipe.max_new_tokens,
                    None,
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    decider.cfg.threshold = pick_threshold(&threshold_sweep, val_feat.oracle_hard())?;
    let score = decider_score(&decider, &val_feat, decider.cfg.threshold)?;
    eprintln!("decider: {score:?}");
    clock.lap("threshold");

    // Checkpoints. AlwaysThink keeps an untrained decider with threshold 0
    // (sigmoid > 0 always holds), so even `decider` mode iterates every token.
    checkpoint::write_tah(&tah, &decider, &tah_dir)?;
    checkpoint::write_base(&tah, &out.join("base"))?;
    if let Some(always) = &trained.always {
        let mut always_decider = TrainDecider::new(recipe.decider.clone(), seed)?;
        always_decider.cfg.threshold = 0.0;
        checkpoint::write_tah(always, &always_decider, &out.join("always"))?;
    }

    // Held-out accuracy through the runtime.
    let items = read_jsonl(&data_dir.join("test.jsonl"))?;
    let mut eval = Vec::new();
    let runs: &[(&str, IterationMode)] = &[
        ("base", IterationMode::Never),
        ("tah", IterationMode::Never),
        ("tah", IterationMode::Decider),
        ("tah", IterationMode::Always),
        ("always", IterationMode::Always),
    ];
    for &(name, mode) in runs {
        if name == "always" && trained.always.is_none() {
            continue;
        }
        let model = TahModel::load(&out.join(name), &LoadOptions::default())?;
        let policy = IterationPolicy {
            mode,
            ..Default::default()
        };
        let answers = out.join(format!("answers-{name}-{mode:?}.jsonl").to_lowercase());
        eval.push(measure(
            &model,
            name,
            &items,
            policy,
            recipe.max_new_tokens,
            Some(&answers),
        )?);
    }
    clock.lap("eval");

    let find = |model: &str, mode: &str| {
        eval.iter()
            .find(|r| r.model == model && r.mode == mode)
            .map(|r| (format!("{model} {mode}"), &r.summary.outcomes))
    };
    let mut comparisons = Vec::new();
    let tah_decider = find("tah", "decider");
    for other in [
        find("base", "never"),
        find("always", "always"),
        find("tah", "never"),
    ] {
        if let (Some((a, oa)), Some((b, ob))) = (&tah_decider, other) {
            comparisons.push(Comparison {
                a: a.clone(),
                b,
                paired: Paired::new(oa, ob),
            });
        }
    }
    for c in &comparisons {
        eprintln!("{} vs {}: {:?}", c.a, c.b, c.paired);
    }

    let results = Results {
        recipe: recipe.clone(),
        params_backbone: tah.base.count(),
        params_lora: tah.lora.count(),
        params_decider: decider.params.count(),
        oracle_hard_fraction: trained.oracle_hard,
        decider: score,
        threshold_sweep,
        final_loss,
        timings: clock.timings,
        eval,
        comparisons,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tah_core::eval::Tally;

    /// A sweep row: `correct` of 100 questions, `hard` of 10,000 tokens.
    fn row(threshold: f32, correct: usize, hard: usize) -> ModeResult {
        ModeResult {
            model: "tah".into(),
            mode: "decider".into(),
            threshold: Some(threshold),
            summary: EvalSummary {
                all: Tally {
                    questions: 100,
                    correct,
                },
                tokens: 10_000,
                passes: 10_000 + hard,
                hard_tokens: hard,
                ..Default::default()
            },
        }
    }

    #[test]
    fn threshold_ties_go_to_the_oracle_share() {
        // 0.5 is less accurate; of the tied rest, 0.9375 calls 0.4% hard,
        // nearest the oracle's 0.5%; 1.0 (never fires) would win on passes.
        let sweep = [
            row(0.5, 90, 600),
            row(0.875, 95, 1_000),
            row(0.9375, 95, 40),
            row(1.0, 95, 0),
        ];
        assert_eq!(pick_threshold(&sweep, 0.005).unwrap(), 0.9375);
        // With the oracle calling nothing hard, the fewest passes win.
        assert_eq!(pick_threshold(&sweep, 0.0).unwrap(), 1.0);
        // Accuracy comes first.
        assert_eq!(pick_threshold(&sweep[..1], 0.005).unwrap(), 0.5);
        assert!(pick_threshold(&[], 0.005).is_err());
    }
}
