//! The training stages: language-model training under an iteration policy,
//! oracle labelling, and decider training.

use std::time::Instant;

use candle_core::{Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::data_batch::{Batch, Example};
use crate::decider::{bce, Features, TrainDecider};
use crate::net::{token_ce, Depth2, Net};
use crate::rng::Rng;

/// Which tokens take the depth-2 pass while training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Plain Qwen3: depth 1 only, LoRA untouched.
    Never,
    /// The oracle's hard tokens (stored in each [`Example`]) take depth 2;
    /// their depth-1 logits are trained too.
    Oracle,
    /// Every token (AlwaysThink).
    Always,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Schedule {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
}

impl Schedule {
    /// Linear warm-up, then cosine decay to 10%.
    fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let t = (step - self.warmup) as f64 / (self.steps - self.warmup).max(1) as f64;
        self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }
}

fn sample_batch(rng: &mut Rng, examples: &[Example], n: usize) -> Vec<Example> {
    (0..n).map(|_| rng.pick(examples).clone()).collect()
}

/// The loop both trainers share: AdamW (weight decay 0.01) over `vars` with
/// `sched`'s learning rates; `step_loss` draws a batch from the run's RNG and
/// returns its loss. Returns the mean loss of the last 10% of steps.
fn optimise(
    vars: Vec<Var>,
    sched: &Schedule,
    seed: u64,
    label: &str,
    mut step_loss: impl FnMut(&mut Rng) -> anyhow::Result<Tensor>,
) -> anyhow::Result<f32> {
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: sched.lr,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let (mut tail_sum, mut tail_n) = (0.0, 0);
    for step in 0..sched.steps {
        opt.set_learning_rate(sched.lr_at(step));
        let loss = step_loss(&mut rng)?;
        opt.backward_step(&loss)?;
        let loss = loss.to_scalar::<f32>()?;
        if step >= sched.steps - sched.steps.div_ceil(10) {
            tail_sum += loss;
            tail_n += 1;
        }
        if step % 25 == 0 || step + 1 == sched.steps {
            eprintln!(
                "[{label}] step {step}/{} loss {loss:.4} ({:.0}s)",
                sched.steps,
                start.elapsed().as_secs_f32()
            );
        }
    }
    Ok(tail_sum / tail_n.max(1) as f32)
}

/// Trains `net` (backbone, plus LoRA unless `Never`) with next-token loss on
/// the answer tokens. Returns the mean loss of the last 10% of steps.
pub fn train_lm(
    net: &Net,
    examples: &[Example],
    policy: Policy,
    sched: &Schedule,
    seed: u64,
    label: &str,
) -> anyhow::Result<f32> {
    let mut vars = net.base.vars();
    if policy != Policy::Never {
        vars.extend(net.lora.vars());
    }
    optimise(vars, sched, seed, label, |rng| {
        let batch = Batch::new(&sample_batch(rng, examples, sched.batch))?;
        let all = vec![true; batch.b * batch.t];
        let depth2 = match policy {
            Policy::Never => Depth2::None,
            Policy::Oracle => Depth2::Hard(&batch.hard),
            Policy::Always => Depth2::Hard(&all),
        };
        let out = net.forward(&batch.inputs, depth2, &[])?;
        let mut loss = (token_ce(&out.logits, &batch.targets)? * &batch.mask)?;
        if policy == Policy::Oracle {
            // The depth-1 logits of hard tokens are trained to stand alone
            // too, so the network without its second pass stays as good as
            // the plain model: that is what runs where the decider misses a
            // hard token, and in `never` mode.
            let hard: Vec<f32> = batch.hard.iter().map(|&h| f32::from(u8::from(h))).collect();
            let hard = Tensor::from_vec(hard, (batch.b, batch.t), &Device::Cpu)?;
            loss = (loss + (token_ce(&out.logits1, &batch.targets)? * hard)?)?;
        }
        // Mean over the answer tokens.
        let answer_tokens = batch.mask.sum_all()?.to_scalar::<f32>()?.max(1.0);
        Ok((loss.sum_all()? / answer_tokens as f64)?)
    })
}

/// Oracle labels from a frozen reference: position p is hard iff it is in the
/// answer and the reference either predicts something other than `ids[p + 1]`
/// (the paper's oracle) or gives `ids[p + 1]` less than `min_prob`
/// probability (it is right, but unsure). Returns the hard fraction over
/// answer positions.
pub fn label_oracle(
    reference: &Net,
    examples: &mut [Example],
    batch: usize,
    min_prob: f32,
) -> anyhow::Result<f64> {
    let (mut hard, mut total) = (0usize, 0usize);
    for chunk in examples.chunks_mut(batch) {
        let b = Batch::new(chunk)?;
        let out = reference.forward(&b.inputs, Depth2::None, &[])?;
        let pred = out.logits1.argmax(D::Minus1)?.to_vec2::<u32>()?;
        let p_true = candle_nn::ops::softmax(&out.logits1, D::Minus1)?
            .gather(&b.targets.unsqueeze(D::Minus1)?, D::Minus1)?
            .squeeze(D::Minus1)?
            .to_vec2::<f32>()?;
        for (bi, ex) in chunk.iter_mut().enumerate() {
            for p in 0..ex.ids.len() - 1 {
                let wrong = pred[bi][p] != ex.ids[p + 1];
                ex.hard[p] = ex.in_answer(p) && (wrong || p_true[bi][p] < min_prob);
                if ex.in_answer(p) {
                    total += 1;
                    hard += usize::from(ex.hard[p]);
                }
            }
        }
    }
    Ok(hard as f64 / total.max(1) as f64)
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
    seed: u64,
) -> anyhow::Result<f32> {
    let pos = train.labels.iter().filter(|&&l| l).count().max(1);
    let pos_weight = (train.labels.len() - pos) as f64 / pos as f64;
    eprintln!("[decider] pos_weight {pos_weight:.1}");
    let labels = labels_tensor(&train.labels)?;
    let n = train.labels.len();
    optimise(decider.params.vars(), sched, seed, "decider", |rng| {
        let idx: Vec<u32> = (0..sched.batch)
            .map(|_| rng.range(0, n as u64 - 1) as u32)
            .collect();
        let idx = Tensor::from_vec(idx, sched.batch, &Device::Cpu)?;
        let logits = decider.forward(
            &train.hidden.index_select(&idx, 0)?,
            &train.top.index_select(&idx, 0)?,
        )?;
        bce(&logits, &labels.index_select(&idx, 0)?, pos_weight)
    })
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
        oracle_hard: oracle as f64 / n,
    })
}
