//! `tah convert`: a Hugging Face TaH checkpoint directory -> one GGUF file.
//! (A GGUF input is rewritten at another type by [`super::requantize`].)
//!
//! The embedding and the seven projections of every layer are quantized;
//! norms, LoRA and decider stay f32 (they are small and the LoRA delta and
//! decider decisions are sensitive). A matrix whose rows are not whole
//! blocks of the requested type falls back the way llama.cpp does
//! (the plan and metadata are shared with the other writers: [`super::plan`]).

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::Tensor;

use super::names::DECIDER_PREFIX;
use super::plan::{
    check_overwrite, metadata, plan_base, plan_lora, read_embedded_texts, tensor_bytes, write_plan,
    ConvertSummary, Part, Plan, Quant, TahSettings,
};
use super::requantize::requantize;
use super::writer::TensorEntry;
use crate::config::{read_json, LoraConfig, Qwen3Config, TahConfig};
use crate::decider::DeciderFile;
use crate::error::{Error, Result};
use crate::torch_pickle::TorchTensor;
use crate::weights::{SafetensorsSource, WeightSource};

pub struct ConvertOptions {
    pub quant: Quant,
    /// `tokenizer.json` to embed (default: the one in the model directory).
    pub tokenizer: Option<PathBuf>,
    /// Replace an existing output file.
    pub force: bool,
}

/// The TaH parts of a checkpoint directory.
struct TahParts {
    tah: TahConfig,
    lora: LoraConfig,
    targets: Vec<&'static str>,
    lora_source: SafetensorsSource,
    /// The decider's state dict (`iter_decider.bin` or `.safetensors`).
    decider: Vec<(String, TorchTensor)>,
}

fn read_tah_parts(dir: &Path, cfg: &Qwen3Config) -> Result<Option<TahParts>> {
    let tah_path = dir.join("tah_config.json");
    if !tah_path.exists() {
        return Ok(None);
    }
    let tah: TahConfig = read_json(&tah_path)?;
    tah.validate(cfg, &tah_path)?;
    let lora_path = dir.join("lora/adapter_config.json");
    let lora: LoraConfig = read_json(&lora_path)?;
    lora.validate(&lora_path)?;
    let targets = lora.targets(&lora_path)?;
    Ok(Some(TahParts {
        lora_source: SafetensorsSource::open(&dir.join("lora/adapter_model.safetensors"))?,
        decider: DeciderFile::find(dir).state_dict()?,
        tah,
        lora,
        targets,
    }))
}

/// Converts the checkpoint directory `from` (or, when `from` is a file, a
/// GGUF model: [`requantize`]) into the GGUF file `to`.
/// `progress(done_bytes, total_bytes, tensor)` is called after each tensor.
pub fn convert(
    from: &Path,
    to: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ConvertSummary> {
    if from.is_file() {
        return requantize(from, to, options, progress);
    }
    check_overwrite(to, options.force)?;
    // 1. Configs, tokenizer and chat template.
    let config_path = from.join("config.json");
    let cfg: Qwen3Config = read_json(&config_path)?;
    cfg.validate(&config_path)?;
    let tah = read_tah_parts(from, &cfg)?;
    let tokenizer_path = options
        .tokenizer
        .clone()
        .unwrap_or_else(|| from.join("tokenizer.json"));
    let (tokenizer_json, chat_template) =
        read_embedded_texts(&tokenizer_path, &from.join("tokenizer_config.json"))?;
    let base = SafetensorsSource::open(&from.join("model.safetensors"))?;

    // 2. The tensor plan: names, types, shapes.
    let mut plan = Plan::default();
    plan_base(&mut plan, &cfg, options.quant, base.path())?;
    if let Some(t) = &tah {
        plan_lora(&mut plan, &cfg, t.lora.r, &t.targets);
        // The stored `threshold` tensor is ignored by the reference (§5).
        for (name, tensor) in t.decider.iter().filter(|(n, _)| n != "threshold") {
            let entry = TensorEntry {
                name: format!("{DECIDER_PREFIX}.{name}"),
                dtype: GgmlDType::F32,
                shape: tensor.shape.clone(),
            };
            plan.push(entry, Part::Decider, name.clone());
        }
    }

    // 3. Write.
    let name = from
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let settings = tah.as_ref().map(|t| TahSettings {
        tah: &t.tah,
        lora: &t.lora,
        targets: &t.targets,
    });
    let meta = metadata(
        name,
        &cfg,
        options.quant,
        settings.as_ref(),
        tokenizer_json,
        chat_template,
    );
    write_plan(
        to,
        &meta,
        &plan,
        |p| {
            let shape = &p.entry.shape;
            let tensor = match p.part {
                Part::Lora => tah_source(&tah)?.lora_source.tensor(&p.source, shape)?,
                Part::Decider => decider_tensor(tah_source(&tah)?, &p.source)?,
                _ => base.tensor(&p.source, shape)?,
            };
            tensor_bytes(&tensor, p.entry.dtype)
        },
        progress,
    )
}

fn tah_source(tah: &Option<TahParts>) -> Result<&TahParts> {
    tah.as_ref()
        .ok_or_else(|| Error::InvalidArgument("TaH tensor planned without TaH parts".into()))
}

fn decider_tensor(t: &TahParts, name: &str) -> Result<Tensor> {
    let (_, tensor) = t
        .decider
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| Error::InvalidArgument(format!("decider tensor `{name}` vanished")))?;
    Ok(Tensor::from_slice(
        &tensor.data,
        tensor.shape.as_slice(),
        &candle_core::Device::Cpu,
    )?)
}
