#![no_main]
//! Generation settings from arbitrary JSON: validation, then (when valid)
//! sampling from a logits row made of the remaining bytes.

use libfuzzer_sys::fuzz_target;
use tah_core::generation::GenerationConfig;
use tah_core::sampling::{Sampler, SamplingParams};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(config) = serde_json::from_slice::<GenerationConfig>(&data[..split]) else { return };
    if config.validate().is_err() {
        return;
    }
    let params = SamplingParams {
        temperature: config.temperature,
        top_k: config.top_k,
        top_p: config.top_p,
        min_p: config.min_p,
        repetition_penalty: config.repetition_penalty,
    };
    let mut logits: Vec<f32> = data[split..].iter().map(|&b| b as f32 / 16.0 - 8.0).collect();
    if logits.is_empty() {
        return;
    }
    let vocab = logits.len();
    let mut sampler = Sampler::new(params, config.seed.or(Some(1)), vocab, &[0]);
    if let Some(id) = sampler.sample(&mut logits) {
        assert!((id as usize) < vocab, "sampled id out of range");
    }
});
