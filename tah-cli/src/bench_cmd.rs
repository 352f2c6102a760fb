//! `tah bench`: prefill and decode speed, passes per token, peak RSS, load
//! time and time to first token, like llama-bench.
//!
//! Every mode runs in its own child process (this binary re-invoked with
//! `--child`), so its peak RSS and load time are its own.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tah_core::iteration::ForcedHardRate;
use tah_core::logits::argmax;
use tah_core::{ChunkOptions, IterationMode, IterationPolicy, KeepLogits, TahModel};

use crate::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Worker threads (default: all cores).
    #[arg(long, short = 't')]
    threads: Option<usize>,
    /// Prompt lengths to prefill (one test each, "ppN"; 0: none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "128,512"
    )]
    prompt_lengths: Vec<usize>,
    /// Tokens to generate (one test each, "tgN"; 0: none).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "64,128"
    )]
    gen_lengths: Vec<usize>,
    /// Iteration modes to compare.
    #[arg(long, value_delimiter = ',', default_value = "never,decider,always")]
    mode: Vec<IterationMode>,
    /// Force this fraction of positions (seeded hash) to take the second pass
    /// in `decider` mode; the decider still runs on every token.
    #[arg(long)]
    hard_rate: Option<f64>,
    /// Repetitions per test (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Prefill chunk size.
    #[arg(long, default_value_t = 512)]
    chunk: usize,
    /// Print a JSON array of rows instead of a table.
    #[arg(long)]
    json: bool,
    /// Internal: run one mode in this process and print its rows as JSON.
    #[arg(long, hide = true)]
    child: bool,
}

/// One result row (the JSON schema of `--json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub mode: String,
    pub test: String,
    pub threads: usize,
    pub tok_per_s: f64,
    pub tok_per_s_min: f64,
    pub tok_per_s_max: f64,
    pub passes_per_token: f64,
    pub peak_rss_bytes: u64,
    pub load_ms: f64,
    pub ttft_ms: f64,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if let Some(r) = args.hard_rate {
        if !(0.0..=1.0).contains(&r) {
            bail!("--hard-rate must be within 0..=1");
        }
    }
    if args.child {
        let rows = run_mode(args)?;
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for mode in &args.mode {
        let mut child = Command::new(&exe);
        child.args(child_args(args, *mode));
        if let Some(threads) = args.threads {
            // candle sizes its own pools from these when first used (its
            // quantized matmuls: CANDLE_NUM_THREADS, else RAYON_NUM_THREADS);
            // set for the child so no thread pool starts with more threads.
            let threads = threads.to_string();
            child
                .env("RAYON_NUM_THREADS", &threads)
                .env("CANDLE_NUM_THREADS", &threads);
        }
        let output = child
            .output()
            .with_context(|| format!("running the {mode:?} benchmark"))?;
        if !output.status.success() {
            bail!(
                "{mode:?} benchmark failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mode_rows: Vec<Row> =
            serde_json::from_slice(&output.stdout).context("reading child results")?;
        if !args.json {
            for row in &mode_rows {
                print_row(row, rows.is_empty());
                rows.push(row.clone());
            }
        } else {
            rows.extend(mode_rows);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

fn child_args(args: &BenchArgs, mode: IterationMode) -> Vec<String> {
    let list = |v: &[usize]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = vec![
        "bench".into(),
        "--child".into(),
        "--model".into(),
        args.model.path().display().to_string(),
        "-p".into(),
        list(&args.prompt_lengths),
        "-n".into(),
        list(&args.gen_lengths),
        "--mode".into(),
        format!("{mode:?}").to_lowercase(),
        "--reps".into(),
        args.reps.to_string(),
        "--chunk".into(),
        args.chunk.to_string(),
    ];
    if let Some(t) = &args.model.tokenizer {
        out.extend(["--tokenizer".into(), t.display().to_string()]);
    }
    out.extend([
        "--kv".into(),
        format!("{:?}", args.model.kv_precision()).to_lowercase(),
    ]);
    if let Some(t) = args.threads {
        out.extend(["--threads".into(), t.to_string()]);
    }
    if let Some(r) = args.hard_rate {
        out.extend(["--hard-rate".into(), r.to_string()]);
    }
    out
}

fn print_row(row: &Row, header: bool) {
    if header {
        println!(
            "| {:8} | {:6} | {:>3} | {:>22} | {:>8} | {:>9} | {:>8} | {:>8} |",
            "mode", "test", "thr", "tok/s (min-max)", "passes", "peak MiB", "load ms", "ttft ms"
        );
        println!("|{}|", ["-"; 8].map(|_| "----------").join("|"));
    }
    println!(
        "| {:8} | {:6} | {:>3} | {:>8.2} ({:.2}-{:.2}) | {:>8.3} | {:>9.1} | {:>8.1} | {:>8.1} |",
        row.mode,
        row.test,
        row.threads,
        row.tok_per_s,
        row.tok_per_s_min,
        row.tok_per_s_max,
        row.passes_per_token,
        row.peak_rss_bytes as f64 / (1 << 20) as f64,
        row.load_ms,
        row.ttft_ms
    );
}

/// Runs every test of one mode in this process.
fn run_mode(args: &BenchArgs) -> anyhow::Result<Vec<Row>> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let mode = args.mode.first().copied().unwrap_or_default();

    let start = Instant::now();
    let model = args.model.load()?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let policy = IterationPolicy {
        mode,
        threshold: None,
        forced_hard_rate: args
            .hard_rate
            .filter(|_| mode == IterationMode::Decider)
            .map(|rate| ForcedHardRate { rate, seed: 0x7a4 }),
    };
    let vocab = model
        .config()
        .vocab_size
        .min(model.tokenizer().map_or(usize::MAX, |t| t.vocab_size()));
    let mut rows = Vec::new();
    for &n in args.prompt_lengths.iter().filter(|&&n| n > 0) {
        let samples = measure(args.reps, || {
            prefill(&model, &prompt_ids(n, vocab), policy, args.chunk)
        })?;
        rows.push(row(mode, format!("pp{n}"), threads, &samples, load_ms));
    }
    for &n in args.gen_lengths.iter().filter(|&&n| n > 0) {
        let samples = measure(args.reps, || {
            decode(&model, &prompt_ids(16, vocab), n, policy)
        })?;
        rows.push(row(mode, format!("tg{n}"), threads, &samples, load_ms));
    }
    Ok(rows)
}

/// A deterministic pseudo-random prompt of `n` ids below `vocab`.
fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ 0x5bd1e995) % vocab as u64) as u32)
        .collect()
}

/// One timed run: tokens processed, seconds, passes, time to first token.
struct Sample {
    tokens: usize,
    seconds: f64,
    passes: usize,
    ttft_ms: f64,
}

fn measure(
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<Sample>,
) -> anyhow::Result<Vec<Sample>> {
    (0..reps).map(|_| f()).collect()
}

/// Chunk options of a benchmark: generation keeps only the last logits.
fn last_logits_only(policy: IterationPolicy) -> ChunkOptions<'static> {
    ChunkOptions {
        policy,
        keep: KeepLogits::Last,
        max_hard: None,
        cancel: None,
        probe_decider: false,
    }
}

fn prefill(
    model: &TahModel,
    ids: &[u32],
    policy: IterationPolicy,
    chunk: usize,
) -> anyhow::Result<Sample> {
    let mut cache = model.new_cache();
    let opts = last_logits_only(policy);
    let start = Instant::now();
    let mut passes = 0;
    for part in ids.chunks(chunk.max(1)) {
        let out = model.forward_chunk(part, &mut cache, &opts)?;
        passes += out.tokens.iter().map(|t| t.iter_count).sum::<usize>();
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Sample {
        tokens: ids.len(),
        seconds,
        passes,
        ttft_ms: seconds * 1e3,
    })
}

/// Prefills `prompt`, then decodes `n` tokens greedily; only the decode
/// steps are timed for tok/s, the prefill gives the time to first token.
fn decode(
    model: &TahModel,
    prompt: &[u32],
    n: usize,
    policy: IterationPolicy,
) -> anyhow::Result<Sample> {
    let mut cache = model.new_cache();
    let opts = last_logits_only(policy);
    let start = Instant::now();
    let mut out = model.forward_chunk(prompt, &mut cache, &opts)?;
    let mut token = argmax(out.logits.last().map_or(&[][..], Vec::as_slice)).unwrap_or(0);
    let ttft_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let mut passes = 0;
    for _ in 0..n {
        out = model.forward_chunk(&[token], &mut cache, &opts)?;
        passes += out.tokens.iter().map(|t| t.iter_count).sum::<usize>();
        token = argmax(out.logits.last().map_or(&[][..], Vec::as_slice)).unwrap_or(0);
    }
    Ok(Sample {
        tokens: n,
        seconds: start.elapsed().as_secs_f64(),
        passes,
        ttft_ms,
    })
}

fn row(mode: IterationMode, test: String, threads: usize, samples: &[Sample], load_ms: f64) -> Row {
    let mut speeds: Vec<f64> = samples
        .iter()
        .map(|s| s.tokens as f64 / s.seconds.max(1e-9))
        .collect();
    speeds.sort_by(f64::total_cmp);
    let mut ttfts: Vec<f64> = samples.iter().map(|s| s.ttft_ms).collect();
    ttfts.sort_by(f64::total_cmp);
    let (tokens, passes) = samples
        .iter()
        .fold((0, 0), |(t, p), s| (t + s.tokens, p + s.passes));
    Row {
        mode: format!("{mode:?}").to_lowercase(),
        test,
        threads,
        tok_per_s: speeds[speeds.len() / 2],
        tok_per_s_min: speeds[0],
        tok_per_s_max: speeds[speeds.len() - 1],
        passes_per_token: passes as f64 / tokens.max(1) as f64,
        peak_rss_bytes: peak_rss_bytes(),
        load_ms,
        ttft_ms: ttfts[ttfts.len() / 2],
    }
}

/// Peak resident set size of this process (VmHWM), 0 where unavailable.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
