#!/usr/bin/env python3
"""A probe of the default model outside its test split: every two-step word
problem template with small numbers (the sizes pupils meet first).

The templates are read from models/train/src/data/phrasing.rs (the `WORD`
table), so the probe asks exactly the texts the model was trained on, with
numbers drawn here, not by the training generator: first operands 5-40,
second 2-30, the second step's number 2-12 (2-9 for a divisor), every step
kept in the curriculum (no negative result, a product's top number under
100). `kind` is "first-second" (e.g. "sub-add"), so `tah eval` reports each
pair of operations on its own.

    python3 models/scripts/small_numbers_probe.py > models/arith-probe-small.jsonl
    tah eval --data models/arith-probe-small.jsonl --modes never,decider
"""
import argparse
import json
import random
import re
from pathlib import Path

PHRASING = Path(__file__).resolve().parents[1] / "train/src/data/phrasing.rs"


def table(source, name):
    """The body of `const NAME: ... = &[ ... ];` in phrasing.rs."""
    body = source[source.index(f"const {name}:"):]
    body = body[body.index("= &[") + 4:]
    return body[: body.index("];")]


def tables():
    """The word-problem templates, names and items of phrasing.rs."""
    source = PHRASING.read_text(encoding="utf-8")
    templates = re.findall(r'\(Op::(\w+), Op::(\w+), "([^"]+)"\)', table(source, "WORD"))
    names = re.findall(r'"([^"]+)"', table(source, "NAMES"))
    items = re.findall(r'"([^"]+)"', table(source, "ITEMS"))
    if not (templates and names and items):
        raise SystemExit(f"no WORD, NAMES or ITEMS table found in {PHRASING}")
    # The committed probe was drawn with the first eight items.
    return [(f.lower(), s.lower(), text) for f, s, text in templates], names, items[:8]


def apply(op, x, y):
    return {"add": x + y, "sub": x - y, "mul": x * y}[op]


def numbers(rng, first, second):
    """a, b, c with every step in the curriculum, or None to draw again."""
    a, b = rng.randint(5, 40), rng.randint(2, 30)
    if first == "sub" and b >= a:
        return None
    r = apply(first, a, b)
    if second == "sub":
        if r < 2:
            return None
        c = rng.randint(1, min(r - 1, 30))
    elif second == "mul":
        if r >= 100:
            return None
        c = rng.randint(2, 12)
    elif second == "div":
        c = rng.randint(2, 9)
    else:
        c = rng.randint(2, 12)
    return a, b, c


def answer(first, second, a, b, c):
    r = apply(first, a, b)
    if second == "div":
        q, rem = divmod(r, c)
        return f"{q} r {rem}" if rem else q
    return apply(second, r, c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-template", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    templates, names, items = tables()
    for first, second, text in templates:
        for _ in range(args.per_template):
            drawn = None
            while drawn is None:
                drawn = numbers(rng, first, second)
            a, b, c = drawn
            n, m = rng.sample(names, 2)
            question = text
            for key, value in (("{n}", n), ("{m}", m), ("{i}", rng.choice(items)),
                               ("{a}", a), ("{b}", b), ("{c}", c)):
                question = question.replace(key, str(value))
            item = {"answer": answer(first, second, a, b, c), "kind": f"{first}-{second}",
                    "question": question}
            print(json.dumps(item, ensure_ascii=False))


if __name__ == "__main__":
    main()
