"""Helpers of benches/compare-llama.sh (standard library only).

    compare.py run OUT.json -- CMD...   runs CMD (stdout -> OUT.json) and writes
        OUT.json.proc: wall and CPU seconds of CMD and its descendants, the
        most threads any one of its processes had (sampled every 20 ms), to
        show that `--threads 1` means one thread of work, and the peak RSS of
        its largest process (the kernel's maximum resident set of CMD, which
        is the engine itself: no wrapper in between).
    compare.py llama-bench OUT.json RAW.json...  turns `llama-bench -o json`
        outputs (each run through `run`) into the rows of `tah bench --json`:
        tok/s median and min-max of its samples, the peak RSS of its process
        from RAW.json.proc, mode `base` (repack on, llama.cpp's default) or
        `base-norepack` (llama-bench reports no load time or time to first
        token: null); OUT.json.proc adds up the processes.
    compare.py merge OUT.json IN.json...  merges the rows of several rounds
        (same mode and test): median tok/s, min-max over every repetition,
        largest peak RSS, median load and ttft; and their .proc files.
    compare.py report --tah T.json --llama L.json [--rounds N] [--meta K=V ...] --out results.md
        writes the markdown table and the ratios against issue #7's targets
        (with --rounds, also each round's ratios from T.json.N / L.json.N).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def descendants(root):
    """root and every process below it (from /proc/*/stat parent ids)."""
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(pid))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def threads_of(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def run(out_path, cmd):
    start = time.perf_counter()
    with open(out_path, "w") as out:
        child = subprocess.Popen(cmd, stdout=out)
        max_threads = 0
        while child.poll() is None:
            max_threads = max([max_threads] + [threads_of(p) for p in descendants(child.pid)])
            time.sleep(0.02)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path + ".proc", "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_threads_per_process": max_threads,
                # Linux reports ru_maxrss in KiB.
                "peak_rss_bytes": usage.ru_maxrss * 1024,
            },
            f,
        )
    if child.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with status {child.returncode}")


# What the report says about llama-bench's settings (the same in every row).
LLAMA_BENCH_SETTINGS = ("build_commit", "cpu_info", "n_batch", "n_ubatch", "type_k", "type_v", "flash_attn", "repack", "load_mode", "model_size")


def from_llama_bench(out_path, raw_paths):
    rows, procs = [], []
    for raw_path in raw_paths:
        with open(raw_path + ".proc") as f:
            procs.append(json.load(f))
        rows += llama_bench_rows(raw_path, procs[-1])
    with open(out_path, "w") as f:
        json.dump(rows, f)
    with open(out_path + ".proc", "w") as f:
        json.dump(sum_procs(procs), f)


def llama_bench_rows(raw_path, proc):
    rows = []
    for t in json.load(open(raw_path)):
        test = f"pp{t['n_prompt']}" if t["n_gen"] == 0 else f"tg{t['n_gen']}"
        if t["n_prompt"] and t["n_gen"]:
            sys.exit(f"unexpected llama-bench test with both a prompt and generation: {t}")
        speeds = sorted(t["samples_ts"])
        rows.append(
            {
                "engine": "llama.cpp",
                "mode": "base" if t["repack"] else "base-norepack",
                "test": test,
                "threads": t["n_threads"],
                "tok_per_s": statistics.median(speeds),
                "tok_per_s_min": speeds[0],
                "tok_per_s_max": speeds[-1],
                "passes_per_token": 1.0,
                # One process runs every test, so every row has its peak.
                "peak_rss_bytes": proc["peak_rss_bytes"],
                "load_ms": None,
                "ttft_ms": None,
                "llama_bench": {k: t.get(k) for k in LLAMA_BENCH_SETTINGS},
            }
        )
    return rows


def sum_procs(procs):
    """Several processes (rounds, or llama-bench runs) as one: summed times, the largest thread count and peak."""
    return {
        "wall_s": sum(p["wall_s"] for p in procs),
        "cpu_s": sum(p["cpu_s"] for p in procs),
        "max_threads_per_process": max(p["max_threads_per_process"] for p in procs),
        "peak_rss_bytes": max(p.get("peak_rss_bytes", 0) for p in procs),
    }


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def merge(out_path, in_paths):
    rounds = [json.load(open(p)) for p in in_paths]
    merged = []
    for first in rounds[0]:
        same = [r for rows in rounds for r in rows if r["mode"] == first["mode"] and r["test"] == first["test"]]
        row = dict(first)
        row["tok_per_s"] = statistics.median(r["tok_per_s"] for r in same)
        row["tok_per_s_min"] = min(r["tok_per_s_min"] for r in same)
        row["tok_per_s_max"] = max(r["tok_per_s_max"] for r in same)
        row["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in same)
        for key in ("load_ms", "ttft_ms", "passes_per_token"):
            row[key] = median_or_none(r.get(key) for r in same)
        merged.append(row)
    with open(out_path, "w") as f:
        json.dump(merged, f)
    procs = [json.load(open(p + ".proc")) for p in in_paths]
    with open(out_path + ".proc", "w") as f:
        json.dump(sum_procs(procs), f)


# An engine with fewer CPU seconds than this share of wall time x threads was
# waiting for the CPU (other load), not working.
BUSY_CPU_SHARE = 0.85


def mib(b):
    return b / (1 << 20)


def find(rows, mode, test):
    for r in rows:
        if r["mode"] == mode and r["test"] == test:
            return r
    return None


def target_values(tah, llama, pp, tg):
    """The ratios of issue #7's targets that both engines report (None where a row is missing)."""

    def ratio(a, b):
        return a / b if a is not None and b else None

    l_pp, l_tg = find(llama, "base", f"pp{pp}"), find(llama, "base", f"tg{tg}")
    never_pp, never_tg = find(tah, "never", f"pp{pp}"), find(tah, "never", f"tg{tg}")
    dec_tg = find(tah, "decider", f"tg{tg}")
    tah_peak = max((r["peak_rss_bytes"] for r in tah if r["mode"] in ("never", "decider")), default=None)
    l_peak = max((r["peak_rss_bytes"] for r in llama if r["mode"] == "base"), default=None)
    return [
        ratio(never_tg and never_tg["tok_per_s"], l_tg and l_tg["tok_per_s"]),
        ratio(never_pp and never_pp["tok_per_s"], l_pp and l_pp["tok_per_s"]),
        ratio(dec_tg and dec_tg["tok_per_s"], never_tg and never_tg["tok_per_s"]),
        ratio(tah_peak, l_peak),
    ]


def round_targets(tah_path, llama_path, pp, tg):
    return target_values(json.load(open(tah_path)), json.load(open(llama_path)), pp, tg)


def ms(v):
    return "n/r" if v is None else f"{v:.1f}"


def report(args):
    tah = json.load(open(args.tah))
    llama = json.load(open(args.llama))
    meta = dict(kv.split("=", 1) for kv in args.meta)
    procs = {name: json.load(open(path + ".proc")) for name, path in [("tah", args.tah), ("llama.cpp", args.llama)]}
    pp, tg = args.pp, args.tg

    lines = [
        "# TaH runtime vs llama.cpp: Qwen3-0.6B shapes, random weights",
        "",
        "Written by `benches/compare-llama.sh` (re-run it to regenerate this file; numbers are from one run on a shared machine).",
        "",
        "| | |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in meta.items()]
    lines += [
        "",
        "## Rows",
        "",
        "tok/s: median of the repetitions (min-max), each engine timing itself (llama-bench: its `samples_ts`). ppN: prefill of N tokens in one batch. "
        "tgN: N decode steps, for tah after a 16-token prompt (whose prefill is the time to first token, ttft), for llama-bench from an empty context (positions 0 to N-1, after one warm-up token). "
        "Peak RSS: the engine process's maximum resident set; llama-bench runs every test in one process, so its rows share one peak. "
        "n/r: not reported by llama-bench (it times neither loading nor a first token). "
        "llama.cpp `base`: its default, load-time repacking of the weights into interleaved heap copies on (`--repack 1`); `base-norepack`: `--repack 0`, "
        "its kernels read the mapped file, in a process of its own. The targets compare with `base`.",
        "",
        "| engine | mode | test | threads | tok/s (min-max) | passes/token | peak RSS MiB | load ms | ttft ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for engine, rows in [("llama.cpp", llama), ("tah", tah)]:
        for r in rows:
            lines.append(
                f"| {engine} | {r['mode']} | {r['test']} | {r['threads']} | {r['tok_per_s']:.2f} ({r['tok_per_s_min']:.2f}-{r['tok_per_s_max']:.2f}) "
                f"| {r['passes_per_token']:.3f} | {mib(r['peak_rss_bytes']):.1f} | {ms(r['load_ms'])} | {ms(r['ttft_ms'])} |"
            )
    settings = next((r["llama_bench"] for r in llama if r["mode"] == "base"), {})
    if settings:
        lines += ["", "llama-bench's settings (from its JSON): " + ", ".join(f"{k} {v}" for k, v in settings.items()) + "."]
    lines += [
        "",
        "Each engine process as the runner saw it (threads sampled every 20 ms; CPU time / wall time of all rounds; "
        "the kernel's peak resident set of the process, for tah a check on its own figure):",
        "",
    ]
    for name, p in procs.items():
        lines.append(
            f"- {name}{' (both llama-bench processes)' if name == 'llama.cpp' else ''}: {p['max_threads_per_process']} threads, CPU/wall {p['cpu_s'] / p['wall_s']:.2f} ({p['cpu_s']:.1f} s / {p['wall_s']:.1f} s), "
            f"peak RSS {mib(p.get('peak_rss_bytes', 0)):.1f} MiB"
        )
    busy = [name for name, p in procs.items() if p["cpu_s"] < BUSY_CPU_SHARE * p["wall_s"] * args.threads]
    if busy:
        lines += [
            "",
            f"**The machine was busy**: {' and '.join(busy)} got less than {BUSY_CPU_SHARE:.0%} of the CPU time its threads could use, "
            "so the speeds and ratios below measure the other load as much as the engines. Re-run on a quiet machine.",
        ]

    names = [
        (f"never decode (tg{tg}) vs llama.cpp", ">= 1.2", lambda x: x >= 1.2),
        (f"never prefill (pp{pp}) vs llama.cpp", ">= 1.0", lambda x: x >= 1.0),
        (f"decider @ hard-rate decode vs never (tg{tg})", ">= 0.95", lambda x: x >= 0.95),
        ("peak RSS (tah never/decider max) vs llama-bench process", "<= 0.9", lambda x: x <= 0.9),
    ]
    targets = [(n, t, v, ok) for (n, t, ok), v in zip(names, target_values(tah, llama, pp, tg))]
    lines += [
        "",
        "## Against the targets of issue #7",
        "",
        "Issue #7's target on load + time to first token (<= 1.0x llama.cpp) is not compared: llama-bench reports neither.",
        "",
    ]
    if args.rounds > 1:
        lines += [
            f"The engines ran in {args.rounds} interleaved rounds (llama.cpp, then every tah mode, in turn), so a slow "
            "spell of the machine hits both; each round gives its own ratios, and the last column is their median.",
            "",
        ]
        per_round = [round_targets(f"{args.tah}.{i}", f"{args.llama}.{i}", pp, tg) for i in range(1, args.rounds + 1)]
        lines += [
            "| measure | target | ratio of the medians | each round | median of the rounds | met (median of the rounds) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for k, (name, target, value, ok) in enumerate(targets):
            values = [r[k] for r in per_round if r[k] is not None]
            each = ", ".join(f"{v:.2f}" for v in values)
            mid = statistics.median(values) if values else None
            shown = "n/a" if value is None else f"{value:.3f}"
            met = "n/a" if mid is None else ("yes" if ok(mid) else "no")
            lines.append(f"| {name} | {target} | {shown} | {each} | {'n/a' if mid is None else f'{mid:.3f}'} | {met} |")
    else:
        lines += ["| measure | target | ratio | met |", "| --- | --- | --- | --- |"]
        for name, target, value, ok in targets:
            shown = "n/a" if value is None else f"{value:.3f}"
            met = "n/a" if value is None else ("yes" if ok(value) else "no")
            lines.append(f"| {name} | {target} | {shown} | {met} |")
    if args.llama_log:
        buffers = [l.strip() for l in open(args.llama_log, errors="replace") if "buffer size =" in l]
        # Every round logs the same buffers: show the first round's.
        if buffers and buffers[0] in buffers[1:]:
            buffers = buffers[: buffers.index(buffers[0], 1)]
        if buffers:
            lines += ["", "llama.cpp's buffers with repacking on, first round (from its log; the pp and tg tests each make a context):", "", "```"] + buffers + ["```"]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) > 3 and sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3:])
        return
    if len(sys.argv) > 3 and sys.argv[1] == "llama-bench":
        from_llama_bench(sys.argv[2], sys.argv[3:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "run":
        if "--" not in sys.argv:
            sys.exit("usage: compare.py run OUT.json -- CMD...")
        run(sys.argv[2], sys.argv[sys.argv.index("--") + 1 :])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["report"])
    ap.add_argument("--tah", required=True)
    ap.add_argument("--llama", required=True)
    ap.add_argument("--llama-log")
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--out", required=True)
    report(ap.parse_args())


if __name__ == "__main__":
    main()
