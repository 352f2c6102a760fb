//! A corpus of malformed Hugging Face-layout checkpoints, each made from the
//! `tiny-d2-a` fixture by one change: every one must give a specific typed
//! error (never a panic, never a huge allocation).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::malformed::{check, Expect};
use serde_json::Value;
use tah_core::{Error, LoadOptions, TahModel};

/// A scratch copy of the fixture checkpoint, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(label: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tah-malformed-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&common::fixture_dir().join("tiny-d2-a"), &dir);
        Scratch { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn edit_json(&self, rel: &str, edit: impl FnOnce(&mut Value)) {
        let path = self.path(rel);
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }

    fn edit_bytes(&self, rel: &str, edit: impl FnOnce(&mut Vec<u8>)) {
        let path = self.path(rel);
        let mut bytes = std::fs::read(&path).unwrap();
        edit(&mut bytes);
        std::fs::write(path, bytes).unwrap();
    }

    /// Rewrites a safetensors file through `edit` on its tensors.
    fn edit_tensors(&self, rel: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
        let path = self.path(rel);
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        edit(&mut tensors);
        candle_core::safetensors::save(&tensors, &path).unwrap();
    }

    fn load(&self) -> Result<TahModel, Error> {
        let options = LoadOptions {
            tokenizer: Some(self.tokenizer()),
            ..Default::default()
        };
        TahModel::load(&self.dir, &options)
    }

    fn tokenizer(&self) -> PathBuf {
        let own = self.path("tokenizer.json");
        if own.exists() {
            own
        } else {
            common::tokenizer_path()
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else if path.file_name().unwrap() != "expected.json" {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

type Mutation = Box<dyn Fn(&Scratch)>;

fn cases() -> Vec<(&'static str, Mutation, Expect)> {
    let st = "model.safetensors";
    let q_proj = "model.layers.1.self_attn.q_proj.weight";
    let k_proj = "model.layers.1.self_attn.k_proj.weight"; // [32, 64]: not square
    let mut cases: Vec<(&'static str, Mutation, Expect)> = vec![
        (
            "no config.json",
            Box::new(|s| std::fs::remove_file(s.path("config.json")).unwrap()),
            Expect::Io,
        ),
        (
            "config.json not JSON",
            Box::new(|s| std::fs::write(s.path("config.json"), "{ nope").unwrap()),
            Expect::Malformed("config.json"),
        ),
        (
            "config.json field missing",
            Box::new(|s| {
                s.edit_json("config.json", |v| {
                    v.as_object_mut().unwrap().remove("head_dim");
                })
            }),
            Expect::Malformed("head_dim"),
        ),
        (
            "hidden_size 0",
            Box::new(|s| s.edit_json("config.json", |v| v["hidden_size"] = 0.into())),
            Expect::Config("hidden_size"),
        ),
        (
            "absurd layer count",
            Box::new(|s| {
                s.edit_json("config.json", |v| {
                    v["num_hidden_layers"] = 1_000_000_000u64.into()
                })
            }),
            Expect::Config("num_hidden_layers"),
        ),
        (
            "absurd vocab",
            Box::new(|s| s.edit_json("config.json", |v| v["vocab_size"] = u64::MAX.into())),
            Expect::Config("vocab_size"),
        ),
        (
            "heads not a multiple of kv heads",
            Box::new(|s| s.edit_json("config.json", |v| v["num_key_value_heads"] = 3.into())),
            Expect::Config("num_key_value_heads"),
        ),
        (
            "odd head_dim",
            Box::new(|s| s.edit_json("config.json", |v| v["head_dim"] = 15.into())),
            Expect::Config("head_dim"),
        ),
        (
            "negative rope_theta",
            Box::new(|s| s.edit_json("config.json", |v| v["rope_theta"] = (-1.0).into())),
            Expect::Config("rope_theta"),
        ),
        (
            "hidden_size disagrees with tensors",
            Box::new(|s| {
                s.edit_json("config.json", |v| v["hidden_size"] = 32.into());
                s.edit_json("tah_config.json", |v| {
                    v["iter_decider_kwargs"]["hidden_states_size"] = 32.into()
                });
            }),
            Expect::Shape("embed_tokens"),
        ),
        (
            "more layers than tensors",
            Box::new(|s| s.edit_json("config.json", |v| v["num_hidden_layers"] = 5.into())),
            Expect::Missing("layers.4"),
        ),
        (
            "no model.safetensors",
            Box::new(move |s| std::fs::remove_file(s.path(st)).unwrap()),
            Expect::Io,
        ),
        (
            "safetensors header length flipped",
            Box::new(move |s| s.edit_bytes(st, |b| b[7] ^= 0x40)),
            Expect::Malformed("safetensors"),
        ),
        (
            "safetensors header JSON corrupted",
            Box::new(move |s| s.edit_bytes(st, |b| b[9] = b'!')),
            Expect::Malformed("safetensors"),
        ),
        (
            "tensor missing",
            Box::new(move |s| {
                s.edit_tensors(st, |t| {
                    t.remove(q_proj);
                })
            }),
            Expect::Missing(q_proj),
        ),
        (
            "tensor transposed",
            Box::new(move |s| {
                s.edit_tensors(st, |t| {
                    let x = t[k_proj].t().unwrap().contiguous().unwrap();
                    t.insert(k_proj.into(), x);
                })
            }),
            Expect::Shape(k_proj),
        ),
        (
            "tensor of integers",
            Box::new(move |s| {
                s.edit_tensors(st, |t| {
                    let x = t[q_proj].to_dtype(DType::I64).unwrap();
                    t.insert(q_proj.into(), x);
                })
            }),
            Expect::Dtype,
        ),
        (
            "NaN weights",
            Box::new(move |s| {
                s.edit_tensors(st, |t| {
                    let x = (&t[q_proj].to_dtype(DType::F32).unwrap() * f64::NAN).unwrap();
                    t.insert(q_proj.into(), x);
                })
            }),
            Expect::Malformed("NaN"),
        ),
        (
            "infinite norm weight",
            Box::new(move |s| {
                s.edit_tensors(st, |t| {
                    let n = "model.norm.weight";
                    let x = (&t[n].to_dtype(DType::F32).unwrap() * f64::INFINITY).unwrap();
                    t.insert(n.into(), x);
                })
            }),
            Expect::Malformed("infinite"),
        ),
        (
            "tah_config max_iter 0",
            Box::new(|s| s.edit_json("tah_config.json", |v| v["max_iter"] = 0.into())),
            Expect::Config("max_iter"),
        ),
        (
            "unknown decider class",
            Box::new(|s| s.edit_json("tah_config.json", |v| v["iter_decider"] = "Oracle".into())),
            Expect::Config("Oracle"),
        ),
        (
            "decider layer out of range",
            Box::new(|s| {
                s.edit_json("tah_config.json", |v| {
                    v["iter_decider_kwargs"]["hidden_states_layer_nums"] = serde_json::json!([0, 9])
                })
            }),
            Expect::Config("decider layer index 9"),
        ),
        (
            "decider topk above vocab",
            Box::new(|s| {
                s.edit_json("tah_config.json", |v| {
                    v["iter_decider_kwargs"]["topk"] = 10_000_000.into()
                })
            }),
            Expect::Config("topk"),
        ),
        (
            "decider dims disagree with its weights",
            Box::new(|s| {
                s.edit_json("tah_config.json", |v| {
                    v["iter_decider_kwargs"]["hidden_dims"] = serde_json::json!([48, 32, 32])
                })
            }),
            Expect::Shape("blocks.0.layer_norm"),
        ),
        (
            "no lora directory",
            Box::new(|s| std::fs::remove_dir_all(s.path("lora")).unwrap()),
            Expect::Io,
        ),
        (
            "LoRA target unknown",
            Box::new(|s| {
                s.edit_json("lora/adapter_config.json", |v| {
                    v["target_modules"] = serde_json::json!(["q_proj", "foo_proj"])
                })
            }),
            Expect::Config("foo_proj"),
        ),
        (
            "LoRA rank disagrees",
            Box::new(|s| s.edit_json("lora/adapter_config.json", |v| v["r"] = 8.into())),
            Expect::Shape("lora_A"),
        ),
        (
            "DoRA adapter",
            Box::new(|s| s.edit_json("lora/adapter_config.json", |v| v["use_dora"] = true.into())),
            Expect::Config("DoRA"),
        ),
        (
            "LoRA tensor for a layer that does not exist",
            Box::new(|s| {
                s.edit_tensors("lora/adapter_model.safetensors", |t| {
                    let a =
                        t["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].clone();
                    t.insert(
                        "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight".into(),
                        a,
                    );
                })
            }),
            Expect::Config("layers.9"),
        ),
        (
            "LoRA tensor missing",
            Box::new(|s| {
                s.edit_tensors("lora/adapter_model.safetensors", |t| {
                    t.remove("base_model.model.model.layers.2.mlp.up_proj.lora_B.weight");
                })
            }),
            Expect::Missing("layers.2.mlp.up_proj.lora_B"),
        ),
        (
            "no iter_decider.bin",
            Box::new(|s| std::fs::remove_file(s.path("iter_decider.bin")).unwrap()),
            Expect::Io,
        ),
        (
            "tokenizer.json not a tokenizer",
            Box::new(|s| std::fs::write(s.path("tokenizer.json"), "{\"hello\": 1}").unwrap()),
            Expect::Malformed("tokenizer"),
        ),
        (
            "tokenizer ids beyond the embedding",
            Box::new(|s| {
                std::fs::write(s.path("tokenizer.json"), serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "far": 200000}, "unk_token": "<unk>"}
        }).to_string()).unwrap()
            }),
            Expect::Config("200000"),
        ),
    ];
    cases.extend([
        (
            "tah_config.json not JSON",
            Box::new(|s: &Scratch| std::fs::write(s.path("tah_config.json"), "[1,").unwrap())
                as Mutation,
            Expect::Malformed("tah_config.json"),
        ),
        (
            "NaN LoRA weights",
            Box::new(|s: &Scratch| {
                s.edit_tensors("lora/adapter_model.safetensors", |t| {
                    let n = "base_model.model.model.layers.3.mlp.down_proj.lora_A.weight";
                    let x = (&t[n].to_dtype(DType::F32).unwrap() * f64::NAN).unwrap();
                    t.insert(n.into(), x);
                })
            }),
            Expect::Malformed("NaN"),
        ),
        (
            "adapter_model.safetensors truncated",
            Box::new(|s: &Scratch| {
                s.edit_bytes("lora/adapter_model.safetensors", |b| {
                    b.truncate(b.len() / 2)
                })
            }),
            Expect::Malformed("adapter_model.safetensors"),
        ),
    ]);
    // Flipped bytes in the decider archive: in the zip headers, the pickle,
    // the tensor data (the zip's CRC-32 catches what the parser would not).
    for at in [0usize, 200, 1000, 12_000, 39_950] {
        cases.push((
            "iter_decider.bin byte flipped",
            Box::new(move |s| s.edit_bytes("iter_decider.bin", |b| b[at] ^= 0x55)),
            Expect::Malformed("iter_decider.bin"),
        ));
    }
    // Truncations of the decider archive and the weights at many offsets.
    for cut in [0usize, 100, 2000, 30_000, 66_000] {
        cases.push((
            "iter_decider.bin truncated",
            Box::new(move |s| s.edit_bytes("iter_decider.bin", |b| b.truncate(cut))),
            Expect::Malformed("iter_decider.bin"),
        ));
    }
    for cut in [0usize, 7, 8, 4000, 1_000_000, 19_749_095] {
        cases.push((
            "model.safetensors truncated",
            Box::new(move |s| s.edit_bytes(st, |b| b.truncate(cut))),
            Expect::Malformed("model.safetensors"),
        ));
    }
    cases
}

#[test]
fn every_malformed_checkpoint_gives_a_typed_error() {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "the corpus should hold at least 30 files"
    );
    for (i, (label, mutate, expect)) in cases.iter().enumerate() {
        let scratch = Scratch::new(&i.to_string());
        mutate(&scratch);
        let message = check(label, scratch.load(), expect);
        println!("{label:48} -> {message}");
    }
}

#[test]
fn the_unmodified_copy_loads() {
    let scratch = Scratch::new("control");
    scratch.load().expect("the control copy must load");
}

/// `iter_decider.safetensors` (same state-dict names) stands in for a missing
/// `iter_decider.bin` and gives the same decider probabilities.
#[test]
fn decider_loads_from_safetensors() {
    use tah_core::decider::Decider;
    use tah_core::torch_pickle::TorchCheckpoint;
    let scratch = Scratch::new("decider-safetensors");
    let checkpoint = TorchCheckpoint::read(&scratch.path("iter_decider.bin")).unwrap();
    let tensors: HashMap<String, Tensor> = checkpoint
        .state_dict
        .iter()
        .map(|(name, t)| {
            let tensor = Tensor::from_slice(&t.data, t.shape.as_slice(), &Device::Cpu).unwrap();
            (name.clone(), tensor)
        })
        .collect();
    candle_core::safetensors::save(&tensors, scratch.path("iter_decider.safetensors")).unwrap();
    let from_bin = scratch.load().unwrap();
    std::fs::remove_file(scratch.path("iter_decider.bin")).unwrap();
    let from_safetensors = scratch.load().unwrap();

    let cfg = from_bin.decider().unwrap().config().clone();
    let n = 3;
    let hidden: Vec<Tensor> = (0..cfg.hidden_states_layer_nums.len())
        .map(|i| Tensor::randn(i as f32, 1.0, (n, cfg.hidden_states_size), &Device::Cpu).unwrap())
        .collect();
    let top = Tensor::randn(0f32, 1.0, (n, cfg.topk), &Device::Cpu).unwrap();
    let probs = |d: &Decider| d.probabilities(&hidden, &top).unwrap();
    assert_eq!(
        probs(from_bin.decider().unwrap()),
        probs(from_safetensors.decider().unwrap())
    );
}
