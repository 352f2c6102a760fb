//! Loading a [`TahModel`]: the format of `path` picks the loader (a
//! Hugging Face checkpoint directory, read here, or a GGUF file,
//! [`crate::gguf::load`]); each hands its parts to [`TahModel::assemble`].

use std::path::Path;
use std::time::Instant;

use crate::chat_template::ChatTemplate;
use crate::config::{read_json, LoraConfig, Qwen3Config, TahConfig};
use crate::decider::{Decider, DeciderFile};
use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::gguf::ModelFile;
use crate::model::{LoraWeights, Model};
use crate::tah_model::{check_tokenizer_fits, LoadOptions, LoadedParts, TahModel};
use crate::tokenizer::TahTokenizer;
use crate::weights::{SafetensorsSource, WeightBuilder, WeightSource};

impl TahModel {
    /// Loads a published TaH checkpoint directory (Hugging Face layout) or a
    /// `.gguf` model file (see [`crate::gguf`]).
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Self> {
        let started = Instant::now();
        let mut model = if path.is_dir() {
            load_hf_dir(path, options)?
        } else if path.is_file() {
            crate::gguf::load::load(ModelFile::open(path)?, options)?
        } else {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model not found"),
            ));
        };
        model.load_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(model)
    }

    /// Loads a `.gguf` model from an open file or a region of one (see
    /// [`ModelFile::from_descriptor`]): the bytes are mapped in place.
    pub fn load_file(file: ModelFile, options: &LoadOptions) -> Result<Self> {
        let started = Instant::now();
        let mut model = crate::gguf::load::load(file, options)?;
        model.load_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(model)
    }
}

fn load_hf_dir(dir: &Path, options: &LoadOptions) -> Result<TahModel> {
    // 1. Configs. Without tah_config.json this is a plain Qwen3 model.
    let config_path = dir.join("config.json");
    let cfg: Qwen3Config = read_json(&config_path)?;
    cfg.validate(&config_path)?;
    let tah_path = dir.join("tah_config.json");
    let tah: Option<TahConfig> = if tah_path.exists() {
        let tah: TahConfig = read_json(&tah_path)?;
        tah.validate(&cfg, &tah_path)?;
        Some(tah)
    } else {
        None
    };
    let notice = tah.is_none().then(|| {
        format!(
            "{}: no tah_config.json; running as plain Qwen3 (never mode)",
            dir.display()
        )
    });
    let max_iter = tah.as_ref().map_or(1, |t| t.max_iter);

    // 2. Base weights, memory-mapped and converted tensor by tensor.
    let weights = SafetensorsSource::open(&dir.join("model.safetensors"))?;
    let root = WeightBuilder::root(&weights);
    let embedding = Embedding::new(root.tensor(
        "model.embed_tokens.weight",
        &[cfg.vocab_size, cfg.hidden_size],
    )?)?;

    // 3. The LoRA adapter (needed whenever a token can take a second pass).
    let net = if max_iter > 1 {
        let lora_dir = dir.join("lora");
        let config_path = lora_dir.join("adapter_config.json");
        let lora_config: LoraConfig = read_json(&config_path)?;
        lora_config.validate(&config_path)?;
        let targets = lora_config.targets(&config_path)?;
        let source = SafetensorsSource::open(&lora_dir.join("adapter_model.safetensors"))?;
        check_lora_keys(&source, &targets, cfg.num_hidden_layers)?;
        let lora = LoraWeights {
            vb: WeightBuilder::root(&source).pp("base_model.model"),
            config: &lora_config,
            targets: &targets,
        };
        Model::new(&cfg, embedding, &root, Some(&lora))?
    } else {
        Model::new(&cfg, embedding, &root, None)?
    };

    // 4. The decider: the reference's `iter_decider.bin`, or the same state
    //    dict as `iter_decider.safetensors` (what `tah-train` writes).
    let decider = match &tah {
        Some(t) if t.max_iter > 1 => Some(Decider::load(
            &t.iter_decider_kwargs,
            &DeciderFile::find(dir),
        )?),
        _ => None,
    };

    // 5. Tokenizer and chat template.
    let tokenizer_path = options
        .tokenizer
        .clone()
        .unwrap_or_else(|| dir.join("tokenizer.json"));
    let tokenizer = if tokenizer_path.exists() || options.tokenizer.is_some() {
        let tokenizer = TahTokenizer::from_file(&tokenizer_path)?;
        check_tokenizer_fits(&tokenizer, cfg.vocab_size, &tokenizer_path)?;
        Some(tokenizer)
    } else {
        None
    };
    let template_path = dir.join("tokenizer_config.json");
    let chat_template = if template_path.exists() {
        Some(ChatTemplate::from_tokenizer_config(&template_path)?)
    } else {
        None
    };

    TahModel::assemble(
        LoadedParts {
            net,
            decider,
            max_iter,
            soft_topk: tah.as_ref().map_or(1, |t| t.input_updater_kwargs.topk),
            tokenizer,
            chat_template,
            notice,
            mapping: None,
            fingerprint: Some(crate::fingerprint::of_dir(dir)?),
        },
        options,
    )
}

/// A PEFT adapter with a key we would silently ignore is almost certainly not
/// meant for this model: every key must name a target module of a real layer.
fn check_lora_keys(source: &SafetensorsSource, targets: &[&str], num_layers: usize) -> Result<()> {
    for name in source.names() {
        let ok = name
            .strip_prefix("base_model.model.model.layers.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(layer, rest)| Some((layer.parse::<usize>().ok()?, rest)))
            .is_some_and(|(layer, rest)| {
                layer < num_layers
                    && targets.iter().any(|t| {
                        [format!("self_attn.{t}."), format!("mlp.{t}.")]
                            .iter()
                            .any(|p| rest.starts_with(p.as_str()))
                    })
            });
        if !ok {
            return Err(Error::config(
                source.path(),
                format!("LoRA tensor `{name}` does not match a target module of this model"),
            ));
        }
    }
    Ok(())
}
