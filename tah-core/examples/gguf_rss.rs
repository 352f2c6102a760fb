//! Memory of a memory-mapped GGUF model: writes a file with Qwen3-0.6B
//! shapes and random weights, loads it and prints the resident set size
//! (VmRSS) after load and after a 64-token greedy generation.
//!
//! `cargo run --release -p tah-core --example gguf_rss -- [q8_0|q4_k] [DIR]`

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use tah_core::gguf::names::keys;
use tah_core::gguf::writer::{write_gguf, TensorEntry};
use tah_core::gguf::{byte_size, Value};
use tah_core::trace::{trace, TraceInput, TraceRequest};
use tah_core::{IterationMode, IterationPolicy, LoadOptions, TahModel};

const VOCAB: usize = 151_936;
const HIDDEN: usize = 1024;
const FFN: usize = 3072;
const LAYERS: usize = 28;
const HEADS: usize = 16;
const KV_HEADS: usize = 8;
const HEAD_DIM: usize = 128;

fn vm_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Valid blocks of `dtype` (quantized random values), tiled to `len` bytes.
fn random_bytes(dtype: GgmlDType, len: usize, seed: u64) -> tah_core::Result<Vec<u8>> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..(1 << 18))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect();
    let chunk = Tensor::from_vec(values, (256, 1024), &Device::Cpu)?;
    let chunk = QTensor::quantize(&chunk, dtype)?.data()?.into_owned();
    Ok(chunk.iter().copied().cycle().take(len).collect())
}

fn main() -> tah_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quant = match args.get(1).map(String::as_str) {
        Some("q4_k") => GgmlDType::Q4K,
        _ => GgmlDType::Q8_0,
    };
    let dir = args.get(2).map_or_else(std::env::temp_dir, Into::into);
    let path = dir.join(format!("tah-rss-qwen3-0.6b-{quant:?}.gguf"));
    // llama.cpp's choice for a tied embedding under 4-bit types.
    let embd_type = if quant == GgmlDType::Q4K {
        GgmlDType::Q6K
    } else {
        quant
    };

    let mut tensors = vec![TensorEntry {
        name: "token_embd.weight".into(),
        dtype: embd_type,
        shape: vec![VOCAB, HIDDEN],
    }];
    for l in 0..LAYERS {
        let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
        for (name, shape) in [
            ("attn_q", vec![q, HIDDEN]),
            ("attn_k", vec![kv, HIDDEN]),
            ("attn_v", vec![kv, HIDDEN]),
            ("attn_output", vec![HIDDEN, q]),
            ("ffn_gate", vec![FFN, HIDDEN]),
            ("ffn_up", vec![FFN, HIDDEN]),
            ("ffn_down", vec![HIDDEN, FFN]),
        ] {
            tensors.push(TensorEntry {
                name: format!("blk.{l}.{name}.weight"),
                dtype: quant,
                shape,
            });
        }
        for (name, size) in [
            ("attn_norm", HIDDEN),
            ("ffn_norm", HIDDEN),
            ("attn_q_norm", HEAD_DIM),
            ("attn_k_norm", HEAD_DIM),
        ] {
            tensors.push(TensorEntry {
                name: format!("blk.{l}.{name}.weight"),
                dtype: GgmlDType::F32,
                shape: vec![size],
            });
        }
    }
    tensors.push(TensorEntry {
        name: "output_norm.weight".into(),
        dtype: GgmlDType::F32,
        shape: vec![HIDDEN],
    });
    let u = |v: usize| Value::U32(v as u32);
    let metadata: Vec<(String, Value)> = [
        (keys::ARCHITECTURE, Value::String(keys::ARCH.into())),
        (keys::BLOCK_COUNT, u(LAYERS)),
        (keys::CONTEXT_LENGTH, u(40960)),
        (keys::EMBEDDING_LENGTH, u(HIDDEN)),
        (keys::FEED_FORWARD_LENGTH, u(FFN)),
        (keys::HEAD_COUNT, u(HEADS)),
        (keys::HEAD_COUNT_KV, u(KV_HEADS)),
        (keys::KEY_LENGTH, u(HEAD_DIM)),
        (keys::RMS_EPS, Value::F32(1e-6)),
        (keys::ROPE_FREQ_BASE, Value::F32(1e6)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let start = Instant::now();
    let file = std::fs::File::create(&path).map_err(|e| tah_core::Error::Io {
        path: path.clone(),
        source: e,
    })?;
    let mut out = std::io::BufWriter::new(file);
    write_gguf(&path, &mut out, &metadata, &tensors, |i| {
        let t = &tensors[i];
        let len = byte_size(t.dtype, t.shape.iter().product()).unwrap_or(0);
        if t.dtype == GgmlDType::F32 {
            // Norm weights of 1.0.
            Ok(1f32
                .to_le_bytes()
                .iter()
                .copied()
                .cycle()
                .take(len)
                .collect())
        } else {
            random_bytes(t.dtype, len, i as u64)
        }
    })?;
    drop(out);
    let file_mib = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    println!(
        "wrote {} ({file_mib:.1} MiB) in {:.1?}",
        path.display(),
        start.elapsed()
    );

    let rss_before = vm_rss_mib();
    let start = Instant::now();
    let model = TahModel::load(&path, &LoadOptions::default())?;
    let load_time = start.elapsed();
    let rss_load = vm_rss_mib();
    let request = TraceRequest {
        input: TraceInput::Ids((1000..1016).collect()),
        new_tokens: 64,
        split: None,
        policy: IterationPolicy {
            mode: IterationMode::Never,
            ..Default::default()
        },
    };
    let start = Instant::now();
    let t = trace(&model, &request)?;
    let gen_time = start.elapsed();
    let rss_gen = vm_rss_mib();
    println!("embedding mapped: {}", model.embedding().is_mapped());
    println!("VmRSS before load: {rss_before:.1} MiB");
    println!("VmRSS after load:  {rss_load:.1} MiB (load took {load_time:.2?})");
    println!(
        "VmRSS after 16-token prefill + {} generated tokens: {rss_gen:.1} MiB ({gen_time:.2?})",
        t.decode.tokens.len()
    );
    println!("file size: {file_mib:.1} MiB");
    let _ = std::fs::remove_file(&path);
    Ok(())
}
