#![no_main]
//! `config.json`, `tah_config.json` and `lora/adapter_config.json` parsing and
//! validation on arbitrary bytes.

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tah_core::config::{LoraConfig, Qwen3Config, TahConfig};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.json");
    if let Ok(cfg) = serde_json::from_slice::<Qwen3Config>(data) {
        let _ = cfg.validate(path);
    }
    if let Ok(tah) = serde_json::from_slice::<TahConfig>(data) {
        let qwen = Qwen3Config {
            vocab_size: 1000,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rope_theta: 1e6,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 4096,
            tie_word_embeddings: true,
            eos_token_id: None,
        };
        let _ = tah.validate(&qwen, path);
    }
    if let Ok(lora) = serde_json::from_slice::<LoraConfig>(data) {
        let _ = lora.validate(path);
        let _ = lora.targets(path);
    }
});
