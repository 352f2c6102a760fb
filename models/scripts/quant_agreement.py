#!/usr/bin/env python3
"""Teacher-forced agreement of a quantized TaH GGUF with its f32 conversion.

Every test problem's chat transcript (question + worked solution) is
prefilled by `tah trace --json` through both files; at every position the
top-1 token and the decider's decision (depth reached) are compared.

    python3 models/scripts/quant_agreement.py --tah target/release/tah \
        --reference arith-f32.gguf --candidate arith-q8_0.gguf [--problems 200]
"""
import argparse
import json
import subprocess


def trace(tah, model, text):
    out = subprocess.run(
        [tah, "trace", "--model", model, "--prompt", text, "--new-tokens", "0", "--json"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)["prefill"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tah", required=True, help="the tah binary")
    ap.add_argument("--reference", required=True, help="the f32 GGUF")
    ap.add_argument("--candidate", required=True, help="the quantized GGUF")
    ap.add_argument("--data", default="models/arith-test.jsonl")
    ap.add_argument("--problems", type=int, default=200)
    args = ap.parse_args()

    positions = top1 = decisions = 0
    with open(args.data) as f:
        problems = [json.loads(line) for line in f][: args.problems]
    for p in problems:
        text = (f"<|im_start|>user\n{p['question']}<|im_end|>\n"
                f"<|im_start|>assistant\n{p['solution']}<|im_end|>")
        a = trace(args.tah, args.reference, text)
        b = trace(args.tah, args.candidate, text)
        for i in range(len(a["top"])):
            positions += 1
            top1 += a["top"][i][0][0] == b["top"][i][0][0]
            decisions += a["iter_count"][i] == b["iter_count"][i]
    print(f"{len(problems)} problems, {positions} positions: "
          f"top-1 {top1}/{positions} = {100 * top1 / positions:.2f}%, "
          f"decisions {decisions}/{positions} = {100 * decisions / positions:.2f}%")


if __name__ == "__main__":
    main()
