//! Writes a model in the published TaH directory layout: `config.json`,
//! `model.safetensors` (Hugging Face Qwen3 names), `lora/` (PEFT),
//! `iter_decider.safetensors` (the `MLPIterDecider` state dict),
//! `tah_config.json` and the tokenizer files.

use std::path::Path;

use serde_json::json;
use tah_core::config::DeciderConfig;

use crate::decider::TrainDecider;
use crate::net::Net;
use crate::vocab;

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")?;
    Ok(())
}

/// The plain Qwen3 model (no `tah_config.json`: the runtime runs it as such).
pub fn write_base(net: &Net, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // The runtime's fields, plus what Hugging Face tools expect to find.
    let serde_json::Value::Object(qwen) = serde_json::to_value(&net.cfg.qwen)? else {
        anyhow::bail!("Qwen3Config did not serialise to a JSON object");
    };
    let mut config = json!({
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
        "attention_bias": false, "attention_dropout": 0.0, "hidden_act": "silu",
        "rope_scaling": null, "bos_token_id": null, "pad_token_id": 0,
        "torch_dtype": "float32", "use_cache": true, "use_sliding_window": false,
    });
    if let Some(config) = config.as_object_mut() {
        config.extend(qwen);
    }
    write_json(&dir.join("config.json"), &config)?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({"eos_token_id": vocab::IM_END, "pad_token_id": 0, "do_sample": false}),
    )?;
    net.base
        .save(&dir.join("model.safetensors"), str::to_string)?;
    vocab::write_files(dir)
}

/// The TaH model: base files plus adapter, decider and `tah_config.json`.
pub fn write_tah(net: &Net, decider: &TrainDecider, dir: &Path) -> anyhow::Result<()> {
    write_base(net, dir)?;
    let lora_dir = dir.join("lora");
    std::fs::create_dir_all(&lora_dir)?;
    write_json(
        &lora_dir.join("adapter_config.json"),
        &json!({
            "peft_type": "LORA", "r": net.cfg.lora.r, "lora_alpha": net.cfg.lora.lora_alpha,
            "lora_dropout": 0.0, "target_modules": net.cfg.lora.target_modules, "bias": "none",
            "use_rslora": false, "use_dora": false, "inference_mode": true,
            "base_model_name_or_path": "", "task_type": null,
        }),
    )?;
    net.lora
        .save(&lora_dir.join("adapter_model.safetensors"), |n| {
            format!("base_model.model.{n}")
        })?;
    decider
        .params
        .save(&dir.join("iter_decider.safetensors"), str::to_string)?;
    write_json(&dir.join("tah_config.json"), &tah_config(&decider.cfg, net))
}

fn tah_config(d: &DeciderConfig, net: &Net) -> serde_json::Value {
    let c = &net.cfg;
    json!({
        "embedding_key": "model.embed_tokens",
        "max_iter": 2,
        "iter_decider": "MLPIterDecider",
        "iter_decider_kwargs": {
            "topk": d.topk, "hidden_states_size": d.hidden_states_size,
            "hidden_states_layer_nums": d.hidden_states_layer_nums,
            "hidden_dims": d.hidden_dims, "expansion_factor": d.expansion_factor,
            "dropout_rate": 0.0, "normalize_input": d.normalize_input,
            "threshold": d.threshold, "max_iter": 2,
        },
        "input_updater_kwargs": {"topk": c.soft_topk},
        "adapter": "lora",
        "adapter_kwargs": {
            "r": c.lora.r, "lora_alpha": c.lora.lora_alpha, "lora_dropout": 0.0,
            "target_modules": "all-linear", "bias": "none",
        },
    })
}
