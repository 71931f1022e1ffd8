"""Q2 benchmark: the batched fooling loop against attacking the same images one at a time.

Attacks the ten images of subset B (second photo of every class) towards their next most probable class with
`cvbook.saliency.fool`, with the same stopping rule (each image stops at the first step whose prediction is its
target), in four ways: one image at a time or all ten in one batch with a per-image stop mask (each step runs the
network only on the images still short of their target), each with the network as loaded and with the copy that
`for_gradients` prepares (batch norms folded into the convolutions, channels-last). The chapter's attack is the
last of these; the first is the plain one-at-a-time loop. All four run after `keep_freed_memory()` unless
`--default-allocator` is given, in which case the ratios show what that setting buys.

The script checks that all four reach the same targets after the same numbers of steps and that one step gives
the same images, and prints wall times (best of `--repeats` interleaved rounds: the machine is shared, so single
timings are noisy) and their ratios. Why one step, and why a tolerance of 1e-2 rather than float32 rounding:
batched and single computations, and the folded and original networks, agree to rounding (about 1e-6 relative on
the logits), but this network's input gradient changes abruptly with its input (ReLU6 kinks): an activation
within rounding of a kink switches its derivative, which moves some images' gradients by about 1e-3 at once,
and such differences grow over many steps; the script prints how far the final images drift apart. A wrong
gradient would differ by order 1.
Usage: `.venv/bin/python benchmarks/q2_attack.py [--size 224] [--repeats 3] [--default-allocator]`.
"""
import argparse
import time

import torch

from cvbook.core import device_name
from cvbook.data import load_image, q2_images
from cvbook.saliency import choose_targets, classify, fool, load_q2_model, one_per_class, preprocess
from cvbook.speed import for_gradients, keep_freed_memory


def timed(fns: dict, repeats: int) -> tuple[dict, dict]:
    "The results of the functions in `fns` and their best wall times in seconds over `repeats` interleaved rounds."
    results, best = {}, {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
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
    parser.add_argument("--default-allocator", action="store_true", help="do not call keep_freed_memory()")
    args = parser.parse_args()

    kept = False if args.default_allocator else keep_freed_memory()
    loaded = load_q2_model()
    prepared = for_gradients(loaded)
    items = q2_images()
    subset = one_per_class(items, 1)
    photos = [load_image(items[i][0]) for i in subset]
    labels = torch.tensor([items[i][1] for i in subset])
    print(f"model: {loaded.name}\n{prepared.notes[-1]}\ndevice: {device_name()}, torch {torch.__version__}; freed memory kept for reuse: {kept}\n"
          f"images: {len(subset)} (subset B), target: next most probable class, step {args.step_size}, "
          f"at most {args.max_steps} steps")
    ok = True
    for size in args.size:
        x = preprocess(photos, size)
        target, _ = choose_targets(classify(loaded, x), labels)
        variants = {f"{how}, {which} network": (lambda m=model, bs=bs: fool(m, x, target, args.step_size, args.max_steps, batch_size=bs))
                    for which, model in (("loaded", loaded), ("prepared", prepared))
                    for how, bs in (("one at a time", 1), ("batched", None))}
        for model in (loaded, prepared): fool(model, x[:2], target[:2], args.step_size, 1)      # warm-up
        results, seconds = timed(variants, args.repeats)
        first = next(iter(results.values()))
        same_steps = all(torch.equal(r.steps, first.steps) and torch.equal(r.success, first.success) for r in results.values())
        one_step = [fool(m, x, target, args.step_size, 1, batch_size=bs).images
                    for m in (loaded, prepared) for bs in (1, None)]
        rel_one = max(relative_difference(one_step[0], other, x) for other in one_step[1:])
        rel_end = max(relative_difference(first.images, r.images, x) for r in results.values())
        ok &= same_steps and rel_one < 1e-2
        print(f"\nsize {size}x{size}: steps {first.steps.tolist()} (total {int(first.steps.clamp(min=0).sum())}), "
              f"reached {int(first.success.sum())}/{len(x)}")
        baseline = seconds["one at a time, loaded network"]
        for name, s in seconds.items():
            print(f"  {name:36s} {s:6.2f} s   {baseline / s:5.2f}x")
        print(f"  batching alone: {baseline / seconds['batched, loaded network']:.2f}x with the "
              f"loaded network, {seconds['one at a time, prepared network'] / seconds['batched, prepared network']:.2f}x with the "
              f"prepared one")
        print(f"  speed-up of the chapter's attack (batched, prepared) over one at a time with the loaded network: "
              f"{baseline / seconds['batched, prepared network']:.2f}x")
        print(f"  same targets reached in the same steps by all four: {same_steps}; after one step the perturbations "
              f"differ by {rel_one:.1e} (relative L2, largest over images and variants); at the end by {rel_end:.1e}")
    if not ok: raise SystemExit("the variants disagree")


if __name__ == "__main__":
    main()
