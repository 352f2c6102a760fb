"""llama.cpp's side of benches/compare-llama.sh, through llama-cpp-python's
low-level API (the same calls llama-bench makes): prefill (ppN) and decode
(tgN) tokens per second, load time, time to first token and peak RSS, in
the JSON row schema of `tah bench --json`.

Run it in its own process (one engine per process), so the peak RSS is
llama.cpp's own plus the Python interpreter's, reported separately as
`baseline_rss_bytes` (the resident set right after the imports).

    python llama_bench.py --model FILE.gguf [--threads 1] [-p 512] [-n 64]
        [--reps 3] [--no-repack]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

# numpy's OpenBLAS would otherwise start a thread per core at import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

import llama_cpp  # noqa: E402


def vm_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def prompt_ids(n, vocab):
    """`tah bench`'s deterministic prompt (tah-cli/src/bench_cmd.rs)."""
    return [((i * 2_654_435_761) ^ 0x5BD1E995) % vocab for i in range(n)]


class Engine:
    def __init__(self, path, threads, n_ctx, n_batch, repack):
        start = time.perf_counter()
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_mmap = True
        # Repacking copies quantized weights into an interleaved heap buffer
        # (llama.cpp's "CPU_REPACK" buffer) for faster kernels; on by default.
        mparams.use_extra_bufts = repack
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
        if not self.model:
            sys.exit(f"llama.cpp could not load {path}")
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.no_perf = False
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            sys.exit("llama.cpp could not create a context")
        self.load_ms = (time.perf_counter() - start) * 1e3
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.memory = llama_cpp.llama_get_memory(self.ctx)

    def clear(self):
        llama_cpp.llama_memory_clear(self.memory, True)

    def decode(self, ids, pos):
        """Feeds ids at positions pos.. (logits of the last only); returns its argmax."""
        b = self.batch
        b.n_tokens = len(ids)
        for i, tok in enumerate(ids):
            b.token[i] = tok
            b.pos[i] = pos + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = i == len(ids) - 1
        if llama_cpp.llama_decode(self.ctx, b) != 0:
            sys.exit("llama_decode failed")
        logits = llama_cpp.llama_get_logits_ith(self.ctx, -1)
        return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())

    def perf(self):
        p = llama_cpp.llama_perf_context(self.ctx)
        return {
            "t_p_eval_ms": p.t_p_eval_ms,
            "n_p_eval": p.n_p_eval,
            "t_eval_ms": p.t_eval_ms,
            "n_eval": p.n_eval,
        }


def prefill(engine, ids):
    engine.clear()
    start = time.perf_counter()
    engine.decode(ids, 0)
    seconds = time.perf_counter() - start
    return len(ids) / seconds, seconds * 1e3


def generate(engine, prompt, n):
    """Prefills prompt (time to first token), then decodes n tokens greedily."""
    engine.clear()
    start = time.perf_counter()
    token = engine.decode(prompt, 0)
    ttft_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    for i in range(n):
        token = engine.decode([token], len(prompt) + i)
    return n / (time.perf_counter() - start), ttft_ms


def row(test, threads, samples, engine, baseline):
    speeds = sorted(s for s, _ in samples)
    return {
        "engine": "llama.cpp",
        "mode": "base",
        "test": test,
        "threads": threads,
        "tok_per_s": statistics.median(speeds),
        "tok_per_s_min": speeds[0],
        "tok_per_s_max": speeds[-1],
        "passes_per_token": 1.0,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "baseline_rss_bytes": baseline,
        "load_ms": engine.load_ms,
        "ttft_ms": statistics.median(t for _, t in samples),
        "llama_perf": engine.perf(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-p", "--n-prompt", default="512")
    ap.add_argument("-n", "--n-gen", default="64")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-repack", action="store_true")
    # `tah bench` draws prompt ids below the tokenizer's vocabulary size.
    ap.add_argument("--prompt-vocab", type=int, default=151_669)
    args = ap.parse_args()
    pps = [int(x) for x in args.n_prompt.split(",") if x]
    tgs = [int(x) for x in args.n_gen.split(",") if x]
    gen_prompt = 16  # as `tah bench`

    baseline = vm_rss_bytes()
    llama_cpp.llama_backend_init()
    # The context holds exactly the longest test, as llama-bench sizes it.
    n_ctx = max(pps + [gen_prompt + n for n in tgs])
    engine = Engine(args.model, args.threads, n_ctx, max(pps + [gen_prompt]), not args.no_repack)
    rows = []
    for n in pps:
        ids = prompt_ids(n, args.prompt_vocab)
        samples = [prefill(engine, ids) for _ in range(args.reps)]
        rows.append(row(f"pp{n}", args.threads, samples, engine, baseline))
    for n in tgs:
        prompt = prompt_ids(gen_prompt, args.prompt_vocab)
        llama_cpp.llama_perf_context_reset(engine.ctx)
        samples = [generate(engine, prompt, n) for _ in range(args.reps)]
        rows.append(row(f"tg{n}", args.threads, samples, engine, baseline))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
