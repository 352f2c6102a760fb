#!/usr/bin/env python3
"""Where an aarch64 program's instructions go, under qemu: joins the block
counts of hotblocks.c (HOT_OUT) with the binary's symbols.

    HOT_OUT=hot.txt qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max \
        -plugin libhotblocks.so ./tah bench ...
    benches/qemu/profile.py ./tah hot.txt [--top 30]

A position-independent executable is loaded at qemu-user's fixed base for
aarch64 guests (0x5500000000); addresses outside the binary (libc, the
loader) are summed per mapping gap and shown as `[outside]`.
"""
import argparse
import bisect
import subprocess
from collections import defaultdict

PIE_BASE = 0x5500000000


def symbols(binary):
    out = subprocess.run(
        ["aarch64-linux-gnu-nm", "-C", "--defined-only", "-n", binary],
        check=True, capture_output=True, text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("hot")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--base", type=lambda s: int(s, 0), default=PIE_BASE)
    args = ap.parse_args()
    addrs, names = symbols(args.binary)
    end = addrs[-1] + (1 << 20) if addrs else 0
    per_symbol = defaultdict(int)
    total = 0
    with open(args.hot) as f:
        for line in f:
            vaddr, insns, execs = line.split()
            count = int(insns) * int(execs)
            total += count
            addr = int(vaddr, 16) - args.base
            i = bisect.bisect_right(addrs, addr) - 1
            name = names[i] if 0 <= i and addr < end else "[outside]"
            per_symbol[name] += count
    print(f"{total:,} instructions")
    for name, count in sorted(per_symbol.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{100 * count / total:6.2f}%  {count:>15,}  {name[:150]}")


if __name__ == "__main__":
    main()
