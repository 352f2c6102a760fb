//! Choosing the next token from a logits row: repetition penalty, then
//! temperature, top-k, top-p and min-p (Hugging Face's order), then a draw
//! from a seeded ChaCha8 generator (same seed, same tokens on every platform).

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::logits::{penalized_top_k, TopRequest};

/// Sampling settings (validated by `GenerationConfig::validate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = no top-k cut.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    /// 1 = off. Seen tokens' logits are divided (if positive) or multiplied
    /// (if negative) by it, as in HF's `RepetitionPenaltyLogitsProcessor`.
    pub repetition_penalty: f32,
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Ids `>= vocab` are embedding rows without a token: never sampled.
    vocab: usize,
    /// Tokens the repetition penalty applies to (prompt and output so far),
    /// sorted and distinct.
    seen: Vec<u32>,
}

impl Sampler {
    /// `seed: None` draws a seed from the OS. `prompt` seeds the repetition
    /// penalty's token set.
    pub fn new(params: SamplingParams, seed: Option<u64>, vocab: usize, prompt: &[u32]) -> Self {
        let rng = match seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        let mut seen = Vec::new();
        if params.repetition_penalty != 1.0 {
            seen.extend_from_slice(prompt);
            seen.sort_unstable();
            seen.dedup();
        }
        Self {
            params,
            rng,
            vocab,
            seen,
        }
    }

    /// Records a generated token (for the repetition penalty).
    pub fn observe(&mut self, id: u32) {
        if self.params.repetition_penalty != 1.0 {
            if let Err(at) = self.seen.binary_search(&id) {
                self.seen.insert(at, id);
            }
        }
    }

    /// The candidates [`sample_candidates`](Self::sample_candidates) reads
    /// from a logits row: one for greedy decoding, the top-k cut's, or every
    /// token without a cut.
    pub fn request(&self) -> TopRequest<'_> {
        let k = if self.params.temperature == 0.0 {
            1
        } else {
            match self.params.top_k {
                0 => self.vocab,
                k => k.min(self.vocab),
            }
        };
        TopRequest {
            k,
            limit: self.vocab,
            repetition_penalty: self.params.repetition_penalty,
            seen: &self.seen,
        }
    }

    /// Picks the next token from `logits` (modified in place by the penalty).
    /// `None` only for an empty row.
    pub fn sample(&mut self, logits: &mut [f32]) -> Option<u32> {
        let candidates = penalized_top_k(logits, &self.request());
        self.sample_candidates(&candidates)
    }

    /// Picks the next token from what [`request`](Self::request) asked for
    /// (`(id, logit)` pairs, descending). `None` only when there are none.
    pub fn sample_candidates(&mut self, candidates: &[(u32, f32)]) -> Option<u32> {
        let &(first, _) = candidates.first()?;
        if self.params.temperature == 0.0 {
            return Some(first);
        }
        let probs = filtered_probs(candidates, &self.params);
        let total: f64 = probs.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return Some(first); // NaN/inf logits: fall back to the top one
        }
        // Uniform in [0, total) from the top 53 bits.
        let mut u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        for (&(id, _), &p) in candidates.iter().zip(&probs) {
            if u < p {
                return Some(id);
            }
            u -= p;
        }
        // Rounding left `u` just above the last kept probability.
        let last = probs.iter().rposition(|&p| p > 0.0).unwrap_or(0);
        Some(candidates[last].0)
    }
}

/// Unnormalised probabilities of `candidates` (descending logits) after
/// temperature, top-p and min-p; filtered-out entries are 0. The top one is
/// always kept.
fn filtered_probs(candidates: &[(u32, f32)], params: &SamplingParams) -> Vec<f64> {
    let Some(&(_, max)) = candidates.first() else {
        return Vec::new();
    };
    let t = params.temperature as f64;
    let mut probs: Vec<f64> = candidates
        .iter()
        .map(|&(_, v)| ((v as f64 - max as f64) / t).exp())
        .collect();
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    // Top-p: the smallest prefix whose mass reaches top_p.
    if params.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, &p) in probs.iter().enumerate() {
            cum += p;
            if cum >= params.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        probs[keep..].iter_mut().for_each(|p| *p = 0.0);
    }
    // Min-p: drop what is less likely than min_p times the top probability.
    if params.min_p > 0.0 {
        let floor = params.min_p as f64 * probs[0];
        probs[1..]
            .iter_mut()
            .filter(|p| **p < floor)
            .for_each(|p| *p = 0.0);
    }
    probs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty: 1.0,
        }
    }

    /// Logits whose softmax (at temperature 1) is 0.5, 0.25, 0.125, 0.0625, 0.0625.
    fn row() -> Vec<f32> {
        [0.5f32, 0.25, 0.125, 0.0625, 0.0625]
            .iter()
            .map(|p| p.ln())
            .collect()
    }

    /// Empirical frequencies of `draws` samples from `row()`.
    fn frequencies(p: SamplingParams, draws: usize) -> Vec<f64> {
        let mut sampler = Sampler::new(p, Some(7), 5, &[]);
        let mut counts = [0usize; 5];
        for _ in 0..draws {
            counts[sampler.sample(&mut row()).unwrap() as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 0.015, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn unfiltered_sampling_follows_softmax() {
        assert_close(
            &frequencies(params(1.0, 0, 1.0, 0.0), 20_000),
            &[0.5, 0.25, 0.125, 0.0625, 0.0625],
        );
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_p() {
        // 0.5 + 0.25 = 0.75 >= 0.7: only the first two survive.
        assert_close(
            &frequencies(params(1.0, 0, 0.7, 0.0), 20_000),
            &[2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0, 0.0],
        );
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // Floor 0.3 * 0.5 = 0.15 keeps ids 0 and 1.
        assert_close(
            &frequencies(params(1.0, 0, 1.0, 0.3), 20_000),
            &[2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0, 0.0],
        );
        // Top-k 3 then renormalised.
        assert_close(
            &frequencies(params(1.0, 3, 1.0, 0.0), 20_000),
            &[4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 0.0, 0.0],
        );
    }

    #[test]
    fn greedy_and_top_k_one_pick_the_argmax() {
        for p in [params(0.0, 20, 0.95, 0.0), params(0.6, 1, 0.95, 0.0)] {
            let mut sampler = Sampler::new(p, None, 5, &[]);
            for _ in 0..50 {
                assert_eq!(sampler.sample(&mut row()), Some(0));
            }
        }
    }

    #[test]
    fn same_seed_same_draws() {
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0, 1.0, 0.0), Some(seed), 5, &[]);
            (0..64)
                .map(|_| s.sample(&mut row()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn repetition_penalty_and_vocab_limit() {
        let mut p = params(0.0, 0, 1.0, 0.0);
        p.repetition_penalty = 4.0;
        // id 0 (logit ln 0.5 < 0) is seen: multiplied by 4, it falls below id 1.
        let mut sampler = Sampler::new(p, None, 5, &[0]);
        assert_eq!(sampler.sample(&mut row()), Some(1));
        sampler.observe(1);
        assert_eq!(sampler.sample(&mut row()), Some(2));
        // Ids past the tokenizer's vocabulary are never chosen.
        let mut sampler = Sampler::new(params(0.0, 0, 1.0, 0.0), None, 2, &[]);
        assert_eq!(sampler.sample(&mut [0.0, 1.0, 9.0]), Some(1));
        assert_eq!(sampler.sample(&mut []), None);
    }

    #[test]
    fn non_finite_logits_do_not_panic() {
        let mut sampler = Sampler::new(params(0.7, 0, 0.9, 0.1), Some(3), 3, &[]);
        assert!(sampler.sample(&mut [f32::NAN, 1.0, 0.0]).is_some());
        assert!(sampler.sample(&mut [f32::INFINITY, 1.0, 0.0]).is_some());
    }
}
