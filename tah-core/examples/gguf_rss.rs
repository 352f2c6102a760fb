//! Memory of a memory-mapped GGUF model: writes a random Qwen3-0.6B-shaped
//! TaH file ([`tah_core::gguf::random`]), loads it and prints the resident
//! set size (VmRSS) after load and after a 64-token greedy generation.
//!
//! `cargo run --release -p tah-core --example gguf_rss -- [q8_0|q4_k|f16] [DIR]`

use std::path::Path;
use std::time::Instant;

use tah_core::gguf::{write_random, Quant, RandomModelOptions, RandomShape};
use tah_core::trace::{trace, TraceInput, TraceRequest};
use tah_core::{IterationMode, IterationPolicy, LoadOptions, TahModel};

fn vm_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quant: Quant = args.get(1).map_or("q8_0", String::as_str).parse()?;
    let dir = args.get(2).map_or_else(std::env::temp_dir, Into::into);
    let path = dir.join(format!("tah-rss-qwen3-0.6b-{quant:?}.gguf"));
    let tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer/tokenizer.json");

    let start = Instant::now();
    let options = RandomModelOptions {
        shape: RandomShape::qwen3_0_6b(),
        quant,
        seed: 0,
        base_only: false,
        tokenizer_json: std::fs::read_to_string(&tokenizer)?,
        chat_template: None,
        force: true,
    };
    let summary = write_random(&path, &options, &mut |_, _, _| {})?;
    let file_mib = summary.file_bytes as f64 / 1048576.0;
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
    println!(
        "embedding mapped: {}",
        model.embedding().is_some_and(|e| e.is_mapped())
    );
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
