//! `tah convert --from FILE.gguf`: one of our GGUF files (or a plain Qwen3
//! GGUF) rewritten with another type for the large base matrices.
//!
//! Every tensor is read back to f32 through the loader's own dequantization
//! and written with the same plan as a conversion from a checkpoint
//! directory, so the result is what converting the original weights at that
//! type would give, apart from the source file's own rounding (converting an
//! f16 file to q8_0 quantizes the f16 values).

use std::path::Path;

use candle_core::quantized::GgmlDType;

use super::convert::ConvertOptions;
use super::load::{qwen3_config, tah_config};
use super::names::{keys, DECIDER_PREFIX};
use super::plan::{
    check_overwrite, metadata, plan_base, plan_lora, tensor_bytes, write_plan, ConvertSummary,
    Part, Plan, TahSettings,
};
use super::reader::{GgufFile, GgufSource};
use super::writer::TensorEntry;
use super::Value;
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::tokenizer::TahTokenizer;
use crate::weights::WeightSource;

/// Rewrites the GGUF file `from` into `to` with `options.quant`.
/// `progress(done_bytes, total_bytes, tensor)` is called after each tensor.
pub fn requantize(
    from: &Path,
    to: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ConvertSummary> {
    check_overwrite(to, options.force)?;
    // 1. Configs, tokenizer and chat template, as the loader reads them.
    let file = std::sync::Arc::new(GgufFile::open(from)?);
    let cfg = qwen3_config(&file)?;
    let tah = tah_config(&file, &cfg)?;
    let tokenizer_json = match (&options.tokenizer, file.metadata().get(keys::HF_TOKENIZER)) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        (None, Some(Value::String(json))) => json.clone(),
        _ => {
            return Err(file.metadata_error(
                keys::HF_TOKENIZER,
                "no embedded tokenizer.json (pass --tokenizer)",
            ))
        }
    };
    TahTokenizer::from_json(&tokenizer_json)?;
    let chat_template = match file.metadata().get(keys::CHAT_TEMPLATE) {
        Some(Value::String(source)) => Some(ChatTemplate::from_source(source)?.source().into()),
        Some(_) => return Err(file.metadata_error(keys::CHAT_TEMPLATE, "not a string")),
        None => None,
    };
    let targets = match &tah {
        Some((_, lora)) => lora.targets(from)?,
        None => Vec::new(),
    };

    // 2. The tensor plan: the same as for a checkpoint directory; decider
    // tensors keep their names and shapes (sorted, so the output does not
    // depend on the header's hash order).
    let mut plan = Plan::default();
    plan_base(&mut plan, &cfg, options.quant, from)?;
    if let Some((_, lora)) = &tah {
        plan_lora(&mut plan, &cfg, lora.r, &targets);
        let prefix = format!("{DECIDER_PREFIX}.");
        let mut decider: Vec<&str> = file
            .tensor_names()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        decider.sort_unstable();
        for name in decider {
            let shape = file.tensor_info(name).map(|i| i.shape.clone());
            let entry = TensorEntry {
                name: name.to_string(),
                dtype: GgmlDType::F32,
                shape: shape.unwrap_or_default(),
            };
            plan.push(entry, Part::Decider, name.to_string());
        }
    }

    // 3. Write, reading each tensor back to f32 from the mapping (decider
    // names pass through the name translation unchanged).
    let name = match file.metadata().get(keys::NAME) {
        Some(Value::String(n)) => n.clone(),
        _ => "model".into(),
    };
    let settings = tah.as_ref().map(|(t, lora)| TahSettings {
        tah: t,
        lora,
        targets: &targets,
    });
    let meta = metadata(
        name,
        &cfg,
        options.quant,
        settings.as_ref(),
        tokenizer_json,
        chat_template,
    );
    let source = GgufSource { file };
    write_plan(
        to,
        &meta,
        &plan,
        |p| {
            let tensor = source.tensor(&p.source, &p.entry.shape)?;
            tensor_bytes(&tensor, p.entry.dtype)
        },
        progress,
    )
}
