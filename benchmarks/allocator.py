"""Allocator benchmark: repeated large allocations with glibc's default settings and after `keep_freed_memory()`.

Each round allocates a float32 tensor of `--mb` megabytes, writes every element (as a layer writes its activation)
and frees it, the pattern of a training or attack loop that makes the same large activations at every step. With
glibc's defaults a block above the mmap threshold (at most 32 MiB) goes back to the operating system when freed, so
every round faults its pages in and the kernel zeroes them again; `cvbook.speed.keep_freed_memory` makes glibc keep
such blocks for reuse. The setting is process-wide and cannot be undone, so the script runs each variant in a fresh
child process (both in the same run, one after the other, alternating over `--repeats` pairs) and prints, side by
side, the best time per round and the minor page faults per round (`resource.getrusage`), then their ratios.
Usage: `.venv/bin/python benchmarks/allocator.py [--mb 48] [--rounds 20] [--repeats 2]`.
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from cvbook.core import device_name
from cvbook.speed import keep_freed_memory


def measure(mb: int, rounds: int, keep: bool) -> dict:
    "Best-of-three seconds per round and minor page faults per round of `rounds` allocate-write-free rounds of `mb` MB."
    kept = keep_freed_memory() if keep else False
    numel = mb * (1 << 20) // 4
    torch.empty(numel).fill_(1.0)                                     # warm-up: the first round may fault in any case
    best, faults = float("inf"), []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(rounds): torch.empty(numel).fill_(1.0)
        best = min(best, (time.perf_counter() - start) / rounds)
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds)
    return {"kept": kept, "seconds": best, "faults": min(faults)}


def child(args, keep: bool) -> dict:
    "Run `measure` in a fresh Python process (the allocator setting cannot be reset within one)."
    cmd = [sys.executable, __file__, "--mb", str(args.mb), "--rounds", str(args.rounds), "--child", "kept" if keep else "default"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=48, help="size of each tensor in MB (above glibc's 32 MiB threshold)")
    parser.add_argument("--rounds", type=int, default=20, help="allocate-write-free rounds per timing")
    parser.add_argument("--repeats", type=int, default=2, help="child processes per variant (the best is kept)")
    parser.add_argument("--child", choices=["default", "kept"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.mb, args.rounds, args.child == "kept")))
        return

    runs = {"default": [], "kept": []}
    for _ in range(args.repeats):                                     # alternate, so drifts in machine load hit both
        runs["default"].append(child(args, keep=False))
        runs["kept"].append(child(args, keep=True))
    best = {name: min(r, key=lambda m: m["seconds"]) for name, r in runs.items()}
    if not best["kept"]["kept"]: print("note: keep_freed_memory() returned False here (not glibc?): both runs use the defaults")
    print(f"{args.rounds} rounds of allocating, writing and freeing a {args.mb} MB float32 tensor; {device_name()}, "
          f"best of {args.repeats} processes each")
    print(f"{'allocator':<28}{'ms per round':>14}{'page faults per round':>24}")
    for name, label in (("default", "glibc defaults"), ("kept", "keep_freed_memory()")):
        print(f"{label:<28}{1000 * best[name]['seconds']:>14.2f}{best[name]['faults']:>24.0f}")
    pages = args.mb * (1 << 20) // resource.getpagesize()
    print(f"time ratio default / kept: {best['default']['seconds'] / best['kept']['seconds']:.1f}x; "
          f"page faults per round: {best['default']['faults']:.0f} vs {best['kept']['faults']:.0f} "
          f"(the tensor spans {pages} pages of {resource.getpagesize()} bytes)")


if __name__ == "__main__":
    main()
