"""Q1 training-engine benchmark (not a test): cvbook.train's engine against a naive PyTorch pipeline, in one run.

Measures, on this machine:
  1. the limit achieved throughput is measured against: the larger of the best float32 and (where the CPU has
     bfloat16 matrix units) bfloat16 matmul rates over a sweep of large shapes and thread counts
     (cvbook.speed.matmul_limit, at the start and the end, best kept), and the processor's theoretical float32
     peak (cvbook.speed.theoretical_gflops, stated with the clock it assumes);
  2. ResNet18 training throughput (images/s) at 36x36 and 224x224, side by side, alternating rounds:
     naive        = a Dataset whose __getitem__ returns one normalised float tensor (one F.interpolate per sample
                    for 224), DataLoader(batch 32, shuffle), Adam, float32, contiguous layout ("today's naive");
     naive, batch B = the same at the chapter's batch size B;
     fp32 engine  = cvbook.train.fit in float32, contiguous, at the chapter's batch size;
     engine       = cvbook.train.fit as the chapter runs it: precision and layout chosen by fastest_setting
                    (cvbook.core.fast_precision: bfloat16 autocast on a CPU with bf16 units), chapter's batch size;
     and each engine's achieved GFLOP/s (FLOPs of a training step, counted forward and backward by
     cvbook.train.training_gflops_per_image) as a fraction of the limit, which cannot exceed 100 % unless the
     limit is wrong: the script then says so and exits with status 1;
  3. float32 against bfloat16 training throughput for every ResNet18 stem of the chapter at 36x36, and at 224x224
     (cvbook.train.training_rate, each precision in its faster layout);
  4. time to accuracy: the chapter's engine and recipe (the recipe its sweep chose, read from figures/q1_summary.csv)
     against the common recipe (Adam 1e-3, batch 32, no augmentation, naive float32 pipeline) on the same training
     subset and the same wall-clock budget, reporting the validation accuracy each reaches.

The last line is `SUMMARY engine_vs_naive=R tta_engine=A tta_recipe=B`: R is the engine's throughput at 36x36
over today's naive pipeline; A and B are the validation accuracies (0-1) of part 4.

Run:  CVBOOK_DATA=../shared/data .venv/bin/python benchmarks/q1_train.py [--quick]
Other processes sharing the CPU make every number here lower and noisier; the script prints the load.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cvbook.core import device_name, figures_dir, precision_candidates, seed_everything
from cvbook.data import load_q1
from cvbook.runs import Run, read_csv
from cvbook.speed import matmul_limit, report_fractions, theoretical_gflops
from cvbook.train import (Q1_BUDGETS, Q1_RECIPES, STEMS, TrainConfig, build_resnet18, evaluate, fastest_setting, fit, make_splits,
                          q1_base, training_gflops_per_image, training_rate)
from cvbook.weights import IMAGENET_MEAN, IMAGENET_STD


class NaiveImages(Dataset):
    "The usual per-sample pipeline: each item is one normalised float tensor, upsampled on its own when size != 36."
    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int):
        self.x, self.y, self.size = x, y, size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self): return len(self.x)

    def __getitem__(self, i):
        img = (self.x[i].float() / 255 - self.mean) / self.std
        if self.size != img.shape[-1]:
            img = F.interpolate(img[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        return img, self.y[i]


def naive_train(model, x, y, size, batch=32, budget_s=None, max_batches=None) -> tuple[int, float]:
    "Train with the naive pipeline (Adam 1e-3, float32, contiguous) until `max_batches` or `budget_s`; returns (images, seconds)."
    loader = DataLoader(NaiveImages(x, y, size), batch_size=batch, shuffle=True, drop_last=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    seen, done, start = 0, 0, time.perf_counter()
    while True:
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(); loss.backward(); opt.step()
            seen += len(yb); done += 1
            elapsed = time.perf_counter() - start
            if (max_batches and done >= max_batches) or (budget_s and elapsed >= budget_s): return seen, elapsed
        if not budget_s and not max_batches: return seen, time.perf_counter() - start


def engine_train(cfg: TrainConfig, splits, folder: Path):
    "Train with cvbook.train.fit; returns (model, history)."
    seed_everything(cfg.seed)
    model = build_resnet18(cfg)
    run = Run(folder, {})
    model = fit(run, model, splits, cfg, desc=f"engine {cfg.size}px {cfg.precision}")
    return model, run.history


def chapter_recipe() -> tuple[str, str]:
    "(the recipe the chapter's sweep chose, where that was read): from the chapter's summary table, else the first recipe."
    path = figures_dir()/"q1_summary.csv"
    rows = [r for r in read_csv(path) if r.get("group") == "scratch-36" and r.get("recipe") in Q1_RECIPES] if path.exists() else []
    if rows: return rows[0]["recipe"], f"chosen by the chapter's sweep ({path.name})"
    return "sgd-0.1", f"not found in {path}: the default"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    args = parser.parse_args()
    q = args.quick
    budget = Q1_BUDGETS["cpu"]
    batch = budget["batch"]
    recipe, recipe_source = chapter_recipe()
    steps = {36: 3 if q else 24, 224: 1 if q else 4}
    rounds = 1 if q else 2
    tta = dict(train=256 if q else 4000, val=128 if q else 1000, epochs=1 if q else 3)
    print(f"device: {device_name()} · torch {torch.__version__} · load average at start: {os.getloadavg()}")
    print(f"sizes: throughput over {steps[36]} batches at 36x36 and {steps[224]} at 224x224, best of {rounds} rounds; "
          f"chapter batch {batch} (224x224: {budget['batch224']}); recipe {recipe} ({recipe_source}); time to accuracy on "
          f"{tta['train']} training / {tta['val']} validation images, engine {tta['epochs']} epochs")

    shapes = ((512, 512, 512),) if q else ((2048, 2048, 2048), (4096, 4096, 4096), (8192, 512, 8192), (1024, 8192, 1024))
    measured, matmul = matmul_limit(shapes)
    theory, formula = theoretical_gflops()
    print(f"\n1. limits: best {matmul} matmul over {len(shapes)} shapes and 1-{torch.get_num_threads()} threads {measured:.0f} GFLOP/s "
          f"(the larger of float32 and bfloat16, at the start); theoretical float32 peak {formula}")

    data = load_q1()
    print(f"data: {data!r}")
    fractions, engine_36 = [], {}
    with tempfile.TemporaryDirectory() as settings:
        os.environ["CVBOOK_CACHE"] = settings  # fastest_setting measures afresh here, and caches nothing in the book's cache
        print("\n2. training throughput, ResNet18 (images/s)")
        for size in (36, 224):
            b = batch if size == 36 else budget["batch224"]
            chapter = fastest_setting(replace(q1_base(budget, recipe), size=size, batch_size=b), lambda: build_resnet18(TrainConfig()))
            variants = {"fp32 engine": replace(chapter, precision="fp32", channels_last=False),
                        f"engine ({chapter.precision}, {'channels-last' if chapter.channels_last else 'contiguous'})": chapter}
            naives = {"naive (batch 32)": 32} | ({f"naive (batch {b})": b} if b != 32 else {})
            rates = {k: [] for k in [*naives, *variants]}
            for _ in range(rounds):  # alternate, and keep each pipeline's best round: other processes share this CPU
                for label, nb in naives.items():
                    n = steps[size] * nb
                    sp = make_splits(data, n, nb, 0)
                    seed_everything(0)
                    imgs, seconds = naive_train(build_resnet18(TrainConfig()), sp.train_x, sp.train_y, size, nb, max_batches=steps[size])
                    rates[label].append(imgs / seconds)
                for label, c in variants.items():
                    c = replace(c, train_images=steps[size] * c.batch_size, val_images=c.batch_size, test_images=0, epochs=1, evals_per_epoch=1)
                    with tempfile.TemporaryDirectory() as tmp:
                        rates[label].append(engine_train(c, make_splits(data, c.train_images, c.val_images, 0), Path(tmp))[1][-1]["train_images_per_s"])
            gflops = training_gflops_per_image(build_resnet18(TrainConfig()), size)
            naive = max(rates["naive (batch 32)"])
            for label, values in rates.items():
                line = f"   {size}x{size}: {label:36s} {max(values):7.1f} img/s = {max(values) / naive:.2f}x naive (batch 32)"
                if label in variants:
                    fractions.append((f"{size}x{size} {label}", max(values) * gflops))
                    line += f"; {max(values) * gflops:.0f} GFLOP/s"
                    if size == 36 and label != "fp32 engine": engine_36 = {"rate": max(values), "naive": naive}
                print(line + f"  [rounds: {', '.join(f'{v:.1f}' for v in values)}]")
            print(f"   ({gflops:.3f} GFLOPs per image in a training step, forward and backward, counted)")

        print(f"\n3. float32 against bfloat16 training throughput, ResNet18, each in its faster layout (images/s, batch {batch}; 224x224: "
              f"batch {budget['batch224']})")
        shapes_to_measure = {"7x7/2 + maxpool (standard), 36x36": (36, {}), **{f"stem {s}, 36x36": (36, STEMS[s]) for s in budget["scratch_stems"]},
                             "7x7/2 + maxpool (standard), 224x224": (224, {})}
        for label, (size, stem) in shapes_to_measure.items():
            cfg = replace(TrainConfig(size=size, batch_size=batch if size == 36 else budget["batch224"]), **stem)
            build = lambda: build_resnet18(cfg)
            # only the precisions this CPU computes natively: emulated bf16 costs minutes per step and measures nothing useful
            best = {p: max(training_rate(replace(cfg, precision=p, channels_last=layout), build, 0.3 if q else 3.0) for layout in (False, True))
                    for p in precision_candidates("cpu")}
            print(f"   {label:40s} " + "   ".join(f"{p} {r:6.1f}" for p, r in best.items())
                  + (f"   = {best['bf16'] / best['fp32']:.2f}x" if "bf16" in best else "   (no bf16 units: bf16 not measured)"))

        print(f"\n4. time to accuracy at 36x36 (same training subset, same wall-clock budget)")
        splits = make_splits(data, tta["train"], tta["val"], 0)
        cfg = fastest_setting(replace(q1_base(budget, recipe), train_images=tta["train"], val_images=tta["val"], test_images=0,
                                      epochs=tta["epochs"], evals_per_epoch=1), lambda: build_resnet18(TrainConfig()))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            model, history = engine_train(cfg, splits, Path(tmp))
        spent_engine = time.perf_counter() - start
        ours = history[-1]["val_acc"]
        seed_everything(0)
        peer = build_resnet18(TrainConfig())
        seen, spent = naive_train(peer, splits.train_x, splits.train_y, 36, 32, budget_s=spent_engine)
        _, theirs, _ = evaluate(peer, splits.val_x, splits.val_y, TrainConfig(channels_last=False))
        print(f"   engine, recipe {recipe} ({cfg.optimizer}, peak lr {cfg.lr:g}, batch {cfg.batch_size}, label smoothing {cfg.label_smoothing:g}, "
              f"warm-up-cosine, crop+flip, {cfg.precision}, {tta['epochs']} epochs): {spent_engine:.0f} s (incl. per-epoch validation) "
              f"-> val accuracy {ours:.1%}")
        print(f"   common recipe (Adam 1e-3, batch 32, no augmentation, naive float32 pipeline): {spent:.0f} s, "
              f"{seen / tta['train']:.1f} epochs -> val accuracy {theirs:.1%}")

    again, _ = matmul_limit(shapes)
    measured = max(measured, again)
    print("\n5. ", end="")
    honest = report_fractions(dict(fractions), measured, theory, matmul)
    print(f"\nload average at end: {os.getloadavg()}")
    print(f"SUMMARY engine_vs_naive={engine_36['rate'] / engine_36['naive']:.2f} tta_engine={ours:.3f} tta_recipe={theirs:.3f}")
    if not honest: sys.exit(1)


if __name__ == "__main__":
    main()
