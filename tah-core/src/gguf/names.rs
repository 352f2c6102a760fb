//! Hugging Face / PEFT tensor names <-> GGUF names, and the metadata keys.
//! Model constructors keep asking for Hugging Face names; the GGUF source
//! translates them here.

/// Per-layer modules: (Hugging Face module path, llama.cpp `qwen3` name).
const LAYER_MODULES: [(&str, &str); 11] = [
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT: &str = "output.weight";
/// Prefix of the decider's tensors (followed by the PyTorch state-dict name).
pub const DECIDER_PREFIX: &str = "tah.decider";
/// PEFT's root: adapter tensors are `base_model.model.<module path>...`.
pub const PEFT_ROOT: &str = "base_model.model";

/// The GGUF name of a Hugging Face base, PEFT adapter or `tah.` tensor name.
pub fn to_gguf(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some(TOKEN_EMBD.into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some(OUTPUT.into()),
        _ if hf.starts_with("tah.") => return Some(hf.into()),
        _ => {}
    }
    let (rest, lora) = match hf.strip_prefix("base_model.model.") {
        Some(rest) => (rest, true),
        None => (hf, false),
    };
    let (layer, rest) = rest.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let (module, suffix) = if lora {
        let (module, part) = module.rsplit_once('.')?;
        let part = match (part, suffix) {
            ("lora_A", "weight") => "weight.lora_a",
            ("lora_B", "weight") => "weight.lora_b",
            _ => return None,
        };
        (module, part)
    } else if suffix == "weight" {
        (module, "weight")
    } else {
        return None;
    };
    let (_, short) = LAYER_MODULES.iter().find(|(m, _)| *m == module)?;
    Some(format!("blk.{layer}.{short}.{suffix}"))
}

/// Whether a base tensor is one of the large matrices that get quantized
/// (the embedding, the LM head and the seven projections of every layer).
pub fn is_quantizable(gguf_name: &str) -> bool {
    const PROJECTIONS: [&str; 7] = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    gguf_name == TOKEN_EMBD
        || gguf_name == OUTPUT
        || gguf_name
            .strip_suffix(".weight")
            .and_then(|n| n.rsplit_once('.'))
            .is_some_and(|(blk, module)| blk.starts_with("blk.") && PROJECTIONS.contains(&module))
}

/// Metadata keys.
pub mod keys {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const NAME: &str = "general.name";
    pub const ALIGNMENT: &str = "general.alignment";
    pub const FILE_TYPE: &str = "general.file_type";
    pub const ARCH: &str = "qwen3";
    pub const BLOCK_COUNT: &str = "qwen3.block_count";
    pub const CONTEXT_LENGTH: &str = "qwen3.context_length";
    pub const EMBEDDING_LENGTH: &str = "qwen3.embedding_length";
    pub const FEED_FORWARD_LENGTH: &str = "qwen3.feed_forward_length";
    pub const HEAD_COUNT: &str = "qwen3.attention.head_count";
    pub const HEAD_COUNT_KV: &str = "qwen3.attention.head_count_kv";
    pub const KEY_LENGTH: &str = "qwen3.attention.key_length";
    pub const VALUE_LENGTH: &str = "qwen3.attention.value_length";
    pub const RMS_EPS: &str = "qwen3.attention.layer_norm_rms_epsilon";
    pub const ROPE_FREQ_BASE: &str = "qwen3.rope.freq_base";
    pub const EOS_TOKEN_ID: &str = "tokenizer.ggml.eos_token_id";
    pub const HF_TOKENIZER: &str = "tokenizer.huggingface.json";
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";

    pub const TAH_VERSION: &str = "tah.format_version";
    pub const TAH_MAX_ITER: &str = "tah.max_iter";
    pub const TAH_SOFT_TOPK: &str = "tah.soft_embedding.topk";
    pub const TAH_DECIDER_CLASS: &str = "tah.decider.class";
    pub const TAH_DECIDER_TOPK: &str = "tah.decider.topk";
    pub const TAH_DECIDER_HIDDEN_SIZE: &str = "tah.decider.hidden_states_size";
    pub const TAH_DECIDER_LAYERS: &str = "tah.decider.hidden_states_layer_nums";
    pub const TAH_DECIDER_DIMS: &str = "tah.decider.hidden_dims";
    pub const TAH_DECIDER_EXPANSION: &str = "tah.decider.expansion_factor";
    pub const TAH_DECIDER_NORMALIZE: &str = "tah.decider.normalize_input";
    pub const TAH_DECIDER_THRESHOLD: &str = "tah.decider.threshold";
    pub const TAH_LORA_R: &str = "tah.lora.r";
    pub const TAH_LORA_ALPHA: &str = "tah.lora.alpha";
    pub const TAH_LORA_TARGETS: &str = "tah.lora.targets";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpp_qwen3() {
        assert_eq!(
            to_gguf("model.layers.3.self_attn.q_norm.weight").as_deref(),
            Some("blk.3.attn_q_norm.weight")
        );
        assert_eq!(
            to_gguf("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight").as_deref(),
            Some("blk.0.ffn_down.weight.lora_b")
        );
        assert_eq!(to_gguf("model.layers.x.mlp.up_proj.weight"), None);
        assert!(is_quantizable("blk.12.ffn_down.weight"));
        assert!(!is_quantizable("blk.12.ffn_norm.weight"));
        assert!(!is_quantizable("blk.0.attn_q.weight.lora_a"));
    }
}
