//! The training stages: the base / TaH run (its second stage training the
//! LoRA adapter on the hard tokens of the base's own depth 1, and
//! AlwaysThink's adapter on every token, over the same depth-1 pass), and
//! the decider.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::data::{Item, TrainStream};
use crate::data_batch::{Batch, Example};
use crate::decider::{bce, Features, TrainDecider};
use crate::net::{token_ce, Depth1, Net};
use crate::rng::Rng;
use crate::vocab::Codec;

/// Learning-rate schedule: linear warm-up, then cosine decay to 10%.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Schedule {
    pub steps: usize,
    pub lr: f64,
    pub warmup: usize,
}

impl Schedule {
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let t = (step - self.warmup) as f64 / (self.steps - self.warmup).max(1) as f64;
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }
}

/// The language-model training of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LmTraining {
    /// The backbone's schedule over the whole run.
    pub backbone: Schedule,
    /// Where the second stage starts: the LoRA adapter learns from here on
    /// (its own schedule over the remaining steps), and AlwaysThink forks.
    pub stage1_from: usize,
    pub lora: Schedule,
    /// Chats drawn per step; grouped into batches of similar length of at
    /// most `max_tokens` padded positions.
    pub items_per_step: usize,
    pub max_tokens: usize,
    /// Share of transcripts rendered with thinking disabled (Qwen3's empty
    /// think block before the last answer).
    pub no_think: f64,
    /// Kind weights of the training stream ([`crate::data::Kind::ALL`] order).
    pub kind_weights: [f64; 6],
    pub oracle: Oracle,
    /// Train the AlwaysThink baseline (pilot runs may skip it).
    pub always_think: bool,
    pub seed: u64,
}

/// Which answer tokens are hard: the reference (depth 1) predicts another
/// token (the paper's oracle) or gives the right one less than `min_prob`.
/// While the adapter learns, `easy_share` of the other answer tokens take
/// depth 2 too, so a decider's false alarm costs little.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Oracle {
    pub min_prob: f32,
    pub easy_share: f64,
}

impl Oracle {
    /// Hard flags of every position of `batch` from its depth-1 logits.
    pub fn label(&self, logits1: &Tensor, batch: &Batch) -> anyhow::Result<Vec<bool>> {
        let (b, t, v) = logits1.dims3()?;
        let rows = logits1.detach().reshape((b * t, v))?.to_vec2::<f32>()?;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                if !batch.answer[i] {
                    return false;
                }
                let target = batch.target_ids[i] as usize;
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = row.iter().map(|x| (x - max).exp()).sum();
                let p_true = (row[target] - max).exp() / sum;
                row[target] < max || p_true < self.min_prob
            })
            .collect())
    }
}

/// Draws one step's transcripts.
pub struct Draw<'a> {
    codec: &'a Codec,
    stream: TrainStream,
    rng: Rng,
    training: &'a LmTraining,
}

impl<'a> Draw<'a> {
    pub fn new(
        codec: &'a Codec,
        held: std::collections::HashSet<String>,
        training: &'a LmTraining,
    ) -> Self {
        Draw {
            codec,
            stream: TrainStream::new(held, training.kind_weights),
            rng: Rng::new(training.seed + 7),
            training,
        }
    }

    pub fn items(&mut self, n: usize) -> Vec<Item> {
        self.stream.take(n)
    }

    pub fn examples(&mut self, items: &[Item]) -> anyhow::Result<Vec<Example>> {
        items
            .iter()
            .map(|it| {
                let thinking = self.rng.unit() >= self.training.no_think;
                Example::new(self.codec, it, thinking)
            })
            .collect()
    }
}

fn to_tensor(flags: &[bool], shape: (usize, usize)) -> anyhow::Result<Tensor> {
    let v: Vec<f32> = flags.iter().map(|&f| f32::from(u8::from(f))).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Sum of the cross-entropy of `logits` (`[b, n, vocab]`) against
/// `targets` where `weights` (`[b, n]`) say.
fn weighted_ce(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> anyhow::Result<Tensor> {
    Ok((token_ce(logits, targets)? * weights)?.sum_all()?)
}

/// The depth-2 loss of the answer positions among those `iterate` marks
/// (summed).
fn depth2_loss(
    net: &Net,
    d1: &Depth1,
    batch: &Batch,
    iterate: &[bool],
) -> anyhow::Result<Option<Tensor>> {
    let Some(out) = net.depth2(d1, iterate)? else {
        return Ok(None);
    };
    let (b, n, _) = out.logits.dims3()?;
    let targets = Tensor::from_vec(out.gather(&batch.target_ids, 0), (b, n), &Device::Cpu)?;
    let weights = to_tensor(&out.gather(&batch.answer, false), (b, n))?;
    Ok(Some(weighted_ce(&out.logits, &targets, &weights)?))
}

/// What [`train_lm`] produces: one backbone, the base model, and two
/// adapters over it.
pub struct Trained {
    /// The backbone with the adapter trained on its hard tokens: TaH's
    /// depth 1 is exactly the base model.
    pub tah: Net,
    /// The same backbone with an adapter trained with every token taking
    /// depth 2 (unless skipped).
    pub always: Option<Net>,
    /// Mean loss over the last 10% of steps: base, TaH's adapter (on the
    /// tokens that took depth 2), AlwaysThink.
    pub final_loss: [f32; 3],
    /// Share of answer tokens the oracle called hard, over the second stage.
    pub oracle_hard: f64,
}

#[derive(Default)]
struct Tally {
    sum: f64,
    n: usize,
}

impl Tally {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }
    fn mean(&self) -> f32 {
        (self.sum / self.n.max(1) as f64) as f32
    }
}

fn adamw(vars: Vec<candle_core::Var>) -> anyhow::Result<AdamW> {
    Ok(AdamW::new(
        vars,
        ParamsAdamW {
            weight_decay: 0.01,
            ..Default::default()
        },
    )?)
}

/// The base / TaH run. The backbone learns from its depth-1 loss only, so
/// it is the base model trained alone (same batches, same updates). From
/// `stage1_from` on, over the same depth-1 pass, TaH's adapter learns from
/// the depth-2 loss of the oracle's hard tokens (plus a few easy ones), and
/// AlwaysThink's from that of every token.
pub fn train_lm(
    net: Net,
    draw: &mut Draw,
    training: &LmTraining,
    mut log: impl FnMut(String),
) -> anyhow::Result<Trained> {
    let always = if training.always_think {
        Some(net.with_shared_backbone(training.seed + 1)?)
    } else {
        None
    };
    let mut backbone = adamw(net.base.vars())?;
    let mut lora = adamw(net.lora.vars())?;
    let mut always_lora = match &always {
        Some(a) => Some(adamw(a.lora.vars())?),
        None => None,
    };
    let mut rng = Rng::new(training.seed + 11);
    let steps = training.backbone.steps;
    let tail = steps - steps.div_ceil(10);
    let mut losses: [Tally; 3] = Default::default();
    let (mut hard, mut answer_total) = (0usize, 0usize);
    let start = Instant::now();
    for step in 0..steps {
        let stage1 = step >= training.stage1_from;
        backbone.set_learning_rate(training.backbone.lr_at(step));
        let lora_lr = training
            .lora
            .lr_at(step.saturating_sub(training.stage1_from));
        lora.set_learning_rate(lora_lr);
        if let Some(opt) = &mut always_lora {
            opt.set_learning_rate(lora_lr);
        }
        let items = draw.items(training.items_per_step);
        let examples = draw.examples(&items)?;
        let answer_tokens: usize = examples
            .iter()
            .map(|e| e.answer.iter().filter(|&&a| a).count())
            .sum();
        let norm = 1.0 / answer_tokens.max(1) as f64;
        let groups = Batch::packed(&examples, training.max_tokens);

        let mut grads: Option<candle_core::backprop::GradStore> = None;
        let mut step_loss = [0.0; 3];
        let mut tah_tokens = 0usize;
        for group in &groups {
            let batch = Batch::new(group)?;
            let d1 = net.depth1(&batch.inputs, &[])?;
            let mut loss = weighted_ce(&d1.logits, &batch.targets, &batch.mask)?;
            step_loss[0] += loss.to_scalar::<f32>()? as f64;
            if stage1 {
                let labels = training.oracle.label(&d1.logits, &batch)?;
                hard += labels.iter().filter(|&&h| h).count();
                answer_total += batch.answer.iter().filter(|&&a| a).count();
                let iterate: Vec<bool> = labels
                    .iter()
                    .zip(&batch.answer)
                    .map(|(&h, &a)| h || (a && rng.unit() < training.oracle.easy_share))
                    .collect();
                tah_tokens += iterate.iter().filter(|&&i| i).count();
                if let Some(l) = depth2_loss(&net, &d1, &batch, &iterate)? {
                    step_loss[1] += l.to_scalar::<f32>()? as f64;
                    loss = (loss + l)?;
                }
                if let Some(always) = &always {
                    // Every real position, prompt included, as at inference.
                    let real: Vec<bool> = (0..batch.b * batch.t)
                        .map(|i| i % batch.t < group[i / batch.t].len())
                        .collect();
                    if let Some(l) = depth2_loss(always, &d1, &batch, &real)? {
                        step_loss[2] += l.to_scalar::<f32>()? as f64;
                        loss = (loss + l)?;
                    }
                }
            }
            let g = (loss * norm)?.backward()?;
            match &mut grads {
                Some(all) => all.extend(g)?,
                None => grads = Some(g),
            }
        }
        let grads = grads.ok_or_else(|| anyhow::anyhow!("a step without batches"))?;
        backbone.step(&grads)?;
        if stage1 {
            lora.step(&grads)?;
            if let Some(opt) = &mut always_lora {
                opt.step(&grads)?;
            }
        }

        let [base_loss, tah_loss, always_loss] = step_loss;
        let (base_loss, always_loss) = (base_loss * norm, always_loss * norm);
        let tah_loss = tah_loss / tah_tokens.max(1) as f64;
        if step >= tail {
            losses[0].add(base_loss);
            losses[1].add(tah_loss);
            losses[2].add(always_loss);
        }
        if step % 25 == 0 || step + 1 == steps {
            log(format!(
                "step {step}/{steps} base {base_loss:.4} tah-depth2 {tah_loss:.4} ({tah_tokens} tok) \
                 always {always_loss:.4} | {} batches, lr {:.2e} ({:.0}s)",
                groups.len(),
                backbone.learning_rate(),
                start.elapsed().as_secs_f32()
            ));
        }
    }
    Ok(Trained {
        tah: net,
        always,
        final_loss: losses.map(|l| l.mean()),
        oracle_hard: hard as f64 / answer_total.max(1) as f64,
    })
}

fn labels_tensor(labels: &[bool]) -> anyhow::Result<Tensor> {
    let v: Vec<f32> = labels.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
    Ok(Tensor::from_vec(v, labels.len(), &Device::Cpu)?)
}

/// Stage 2: BCE with `pos_weight` = negatives / positives on frozen features.
/// Returns the mean loss of the last 10% of steps.
pub fn train_decider(
    decider: &TrainDecider,
    train: &Features,
    sched: &Schedule,
    batch: usize,
    seed: u64,
) -> anyhow::Result<f32> {
    let pos = train.labels.iter().filter(|&&l| l).count().max(1);
    let pos_weight = (train.labels.len() - pos) as f64 / pos as f64;
    eprintln!("[decider] pos_weight {pos_weight:.1}");
    let labels = labels_tensor(&train.labels)?;
    let n = train.labels.len();
    let mut opt = adamw(decider.params.vars())?;
    let mut rng = Rng::new(seed);
    let tail = sched.steps - sched.steps.div_ceil(10);
    let mut last = Tally::default();
    for step in 0..sched.steps {
        opt.set_learning_rate(sched.lr_at(step));
        let idx: Vec<u32> = (0..batch)
            .map(|_| rng.range(0, n as u64 - 1) as u32)
            .collect();
        let idx = Tensor::from_vec(idx, batch, &Device::Cpu)?;
        let logits = decider.forward(
            &train.hidden.index_select(&idx, 0)?,
            &train.top.index_select(&idx, 0)?,
        )?;
        let loss = bce(&logits, &labels.index_select(&idx, 0)?, pos_weight)?;
        opt.backward_step(&loss)?;
        if step >= tail {
            last.add(loss.to_scalar::<f32>()? as f64);
        }
    }
    Ok(last.mean())
}

/// Token-level quality of the decider on held-out features at `threshold`.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct DeciderScore {
    pub threshold: f32,
    pub f1: f64,
    pub predicted_hard: f64,
    pub oracle_hard: f64,
}

pub fn decider_score(
    decider: &TrainDecider,
    val: &Features,
    threshold: f32,
) -> anyhow::Result<DeciderScore> {
    let logits = decider.forward(&val.hidden, &val.top)?.to_vec1::<f32>()?;
    let n = logits.len() as f64;
    let oracle = val.labels.iter().filter(|&&l| l).count();
    let (mut tp, mut predicted) = (0usize, 0usize);
    for (&z, &l) in logits.iter().zip(&val.labels) {
        if 1.0 / (1.0 + (-z).exp()) > threshold {
            predicted += 1;
            tp += usize::from(l);
        }
    }
    Ok(DeciderScore {
        threshold,
        f1: 2.0 * tp as f64 / (predicted + oracle).max(1) as f64,
        predicted_hard: predicted as f64 / n,
        oracle_hard: val.oracle_hard(),
    })
}
