"""Q2 benchmark: the batched fooling loop against attacking the same images one at a time.

Attacks the ten images of subset B (second photo of every class) towards their next most probable
class with `cvbook.saliency.fool`, once as one batch (a per-image stop mask; each step runs the
network only on the images still short of their target) and once with `batch_size=1`, with the
same stopping rule. Checks that both reach the same targets after the same numbers of steps and
that one step gives the same images, and prints the ratio of the wall times (best of `--repeats`
interleaved rounds: the build machine is shared, so single timings are noisy).

Why one step and not the final images: a batch and a single image give the same gradients to
float32 rounding (about 1e-6 relative), but this network's input gradient changes abruptly with its
input (ReLU6 kinks), so rounding-level differences grow over many steps; the script prints how far
the final images drift apart. Usage: `.venv/bin/python benchmarks/q2_attack.py [--size 224] [--repeats 1]`.
"""
import argparse
import time

import torch

from cvbook.core import device_name
from cvbook.data import load_image, q2_images
from cvbook.saliency import choose_targets, classify, fool, load_q2_model, one_per_class, preprocess


def timed(fns, repeats):
    "The results of the functions `fns` and their best wall times in seconds over `repeats` interleaved rounds."
    results, best = [None] * len(fns), [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return results, best


def relative_difference(a, b, x):
    "Largest over images of ||a - b|| / ||a - x||: how much two perturbations of `x` differ, relative to the first."
    return ((a - b).flatten(1).norm(dim=1) / (a - x).flatten(1).norm(dim=1).clamp_min(1e-12)).max().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[224], help="image sizes to time (pixels)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (the best is kept)")
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--max-steps", type=int, default=100)
    args = parser.parse_args()

    model = load_q2_model()
    items = q2_images()
    subset = one_per_class(items, 1)
    photos = [load_image(items[i][0]) for i in subset]
    labels = torch.tensor([items[i][1] for i in subset])
    print(f"model: {model.name}\ndevice: {device_name()}\nimages: {len(subset)} (subset B), target: next most probable class")
    ok = True
    for size in args.size:
        x = preprocess(photos, size)
        target, _ = choose_targets(classify(model, x), labels)
        run = lambda bs: fool(model, x, target, args.step_size, args.max_steps, batch_size=bs)
        fool(model, x[:2], target[:2], args.step_size, 1)   # warm-up
        (batched, sequential), (t_batched, t_sequential) = timed([lambda: run(None), lambda: run(1)], args.repeats)
        same_steps = torch.equal(batched.steps, sequential.steps) and torch.equal(batched.success, sequential.success)
        one_b = fool(model, x, target, args.step_size, 1)
        one_s = fool(model, x, target, args.step_size, 1, batch_size=1)
        rel_one = relative_difference(one_b.images, one_s.images, x)
        rel = relative_difference(batched.images, sequential.images, x)
        ok &= same_steps and rel_one < 1e-4
        print(f"size {size}x{size}: steps {batched.steps.tolist()} (total {int(batched.steps.clamp(min=0).sum())}), "
              f"reached {int(batched.success.sum())}/{len(x)}")
        print(f"  batched {t_batched:.2f} s, one at a time {t_sequential:.2f} s, "
              f"speed-up (sequential / batched wall time) {t_sequential / t_batched:.2f}x")
        print(f"  same targets reached in the same steps: {same_steps}; after one step the perturbations differ by "
              f"{rel_one:.1e} (relative L2, largest over images); at the end by {rel:.1e}")
    if not ok: raise SystemExit("batched and sequential attacks disagree")


if __name__ == "__main__":
    main()
