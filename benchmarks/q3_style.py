"""Q3 style-transfer benchmark (not a test): cvbook.style against the PyTorch neural-style tutorial, in one run.

1. Loss reached at equal wall time: the configured optimiser (`cvbook.style.optimise`: L-BFGS with the strong-Wolfe
   line search, up to 20 iterations per step, 50 curvature pairs, every evaluated image clamped to [0, 1], the best
   image kept) against the tutorial's settings (`optim.LBFGS([image])`: lr 1, up to 20 iterations per step, 100
   pairs, no line search, the image clamped at the start of the closure and once at the end), on the same image
   size and the same calibrated loss (cvbook.style's weights, beta/alpha 10, the chapter's), each for the same number of seconds.
   Two tutorial runs separate its two differences: its settings with its own implementation (below), and its
   settings on cvbook.style's objective.
2. Seconds per evaluation (one forward and backward pass) of the implementations, interleaved, median of blocks.
   The tutorial's implementation: loss modules inserted into a copy of `vgg19().features` rebuilt as an
   `nn.Sequential` (ReLUs made out-of-place), the model cut after the last loss module. It computes the same loss as
   `cvbook.style` (content: sum of squares; Gram divided by C*H*W; style: MSE of Grams), so the losses must agree, and
   so must the image gradients: to 1e-2 relative, because convolutions in different memory layouts round differently
   and a max-pool window whose two largest inputs are within rounding of each other can route its gradient to either.
   Also timed: cvbook.style in NCHW layout, with autograd's losses, and the tutorial's model without its trimming.
3. Achieved GFLOP/s of each as a fraction of the larger of the best float32 matmul rate (over a sweep of shapes and
   thread counts, at the start and the end) and the processor's theoretical peak; the script exits with status 1 if
   any fraction exceeds 100 % (`cvbook.speed.report_fractions`).
4. Precision: the float32 loss reached at equal wall time on the main pair at `--precision-size` (512, the chapter's
   headline size), by L-BFGS as the chapter runs it (`optimise`), with the network in
   - float32;
   - bf16 (autocast), the tapped features copied to float32 for the Gram products
     (`StyleObjective(precision="bf16", float32_features=True)`);
   - bf16, the Gram products in bf16 too (`StyleObjective(precision="bf16")`).
   The differences from the targets and the losses are float32 in all three. Each runs from the chapter's two starts
   (the content image, and the content image plus noise of one grey level), so the spread shows the run-to-run noise.
   Each run's best image so far is
   re-evaluated with the network in float32 at every twelfth of the time (outside the timed optimisation); the curves
   go to `figures/q3_precision.csv`, which the Q3 chapter shows and chooses its precision from. The last line is
   `SUMMARY fp32_over_bf16=R fp32_over_bf16_gram=R ...`: float32's mean loss over each bf16 setting's at the full time
   (above 1: the bf16 setting reached the lower loss), and the seconds per evaluation of each.

    CVBOOK_WEIGHTS=... CVBOOK_DATA=... CVBOOK_OFFLINE=1 python benchmarks/q3_style.py [--size 384] [--layers assignment|paper] [--seconds 60]
        [--parts tutorial,timing,precision] [--precision-size 512] [--precision-seconds 60]

Other processes sharing the CPU make every number lower and noisier; the script prints the load.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cvbook.core import device_name
from cvbook.speed import matmul_gflops, report_fractions, theoretical_gflops
from cvbook.data import q3_images
from cvbook.core import fast_precision, figures_dir
from cvbook.runs import write_csv
from cvbook.style import (ASSIGNMENT_LAYERS, PAPER_LAYERS, VGG19_LAYERS, StyleObjective, VGGFeatures,
                          fit_to, image_tensor, loss_scales, optimise, start_image)
from cvbook.weights import vgg19_features


# ---- the tutorial's approach ------------------------------------------------------------------------------
class ContentLoss(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.target = target.detach()
    def forward(self, input):
        self.loss = F.mse_loss(input, self.target, reduction="sum")      # the assignment's ||F - T||^2
        return input

def tutorial_gram(input):
    a, b, c, d = input.size()
    features = input.view(a * b, c * d)
    return torch.mm(features, features.t()).div(a * b * c * d)

class StyleLoss(nn.Module):
    def __init__(self, target_feature):
        super().__init__()
        self.target = tutorial_gram(target_feature).detach()
    def forward(self, input):
        self.loss = F.mse_loss(tutorial_gram(input), self.target)
        return input

def tutorial_model(cnn, normalization, style_img, content_img, content_layers, style_layers, trim=True):
    "The tutorial's get_style_model_and_losses, with layer names from cvbook.style (conv1_1, relu1_1, ...); `trim=False` keeps every layer."
    model = nn.Sequential(normalization)
    content_losses, style_losses = [], []
    for name, layer in zip(VGG19_LAYERS, cnn.children()):
        if isinstance(layer, nn.ReLU): layer = nn.ReLU(inplace=False)
        model.add_module(name, layer)
        if name in content_layers:
            loss = ContentLoss(model(content_img).detach())
            model.add_module(f"content_loss_{name}", loss); content_losses.append(loss)
        if name in style_layers:
            loss = StyleLoss(model(style_img).detach())
            model.add_module(f"style_loss_{name}", loss); style_losses.append(loss)
    last = max(i for i, m in enumerate(model) if isinstance(m, (ContentLoss, StyleLoss)))
    return (model[:last + 1] if trim else model), style_losses, content_losses


BETA = 10.0       # beta/alpha of the chapter's main pair
STARTS = (0, 1)   # the starts of part 4's runs (`cvbook.style.start_image`), as the chapter's comparisons of optimisers use

# ---- loss reached at equal wall time -------------------------------------------------------------------------
class TimeUp(Exception):
    "Raised between two evaluations once a run has had its seconds."

def tutorial_run(losses, start, wc, ws, seconds):
    "The tutorial's run_style_transfer loop for `seconds` of optimisation: LBFGS([image]) with its defaults, clamp at the start of each closure; (seconds, loss) per evaluation."
    image = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image])
    rows, began = [], time.perf_counter()
    def closure():
        with torch.no_grad(): image.clamp_(0, 1)
        optimizer.zero_grad()
        c, s = losses(image)
        loss = wc * c + ws * s
        loss.backward()
        image.grad = image.grad.contiguous()
        rows.append((time.perf_counter() - began, loss.item()))
        if rows[-1][0] >= seconds: raise TimeUp
        return loss
    try:
        while True: optimizer.step(closure)
    except TimeUp: pass
    with torch.no_grad(): image.clamp_(0, 1)
    c, s = losses(image)
    return rows, (wc * c + ws * s).item()

def configured_run(objective, start, wc, ws, seconds):
    "cvbook.style.optimise for `seconds` of optimisation; (seconds, loss) per evaluation and the loss of the image it returns (its best)."
    rows = []
    def stop_at(row):
        rows.append((row["seconds"], row["loss"]))
        if row["seconds"] >= seconds: raise TimeUp
    try: optimise(objective, start, wc, ws, evaluations=10**6, callback=stop_at)
    except TimeUp: pass
    return rows, min(loss for _, loss in rows)

def best_by(rows, t):
    "The lowest loss evaluated within the first `t` seconds."
    return min((loss for s, loss in rows if s <= t), default=float("nan"))


# ---- precision: float32 loss at equal wall time ----------------------------------------------------------------
class BestSoFar:
    "Keeps the image of the lowest loss an optimisation has evaluated: wraps `objective.losses`, and `seen(row)` is `optimise`'s callback."
    def __init__(self, objective):
        self.objective, self.last, self.image = objective, None, None
    def losses(self, image):
        self.last = image
        return self.objective.losses(image)
    def seen(self, row):
        if row["loss"] == row["best"]: self.image = self.last.detach().clone()

def precision_run(objective, start, wc, ws, seconds, precision, float32_features):
    """L-BFGS (`optimise`) from `start` for `seconds` of optimisation with the network in `precision` and the Gram products
    in float32 or not (`StyleObjective.float32_features`). Returns {mark: float32 loss of the best image so far} at every twelfth of
    `seconds`, and the number of evaluations."""
    marks, found, rows = tuple(seconds * k / 12 for k in range(1, 13)), {}, []
    def float32_loss(image):
        with torch.no_grad(): c, s = objective.losses(image, "fp32")
        return (wc * c + ws * s).item()
    objective.precision, objective.float32_features, tracker = precision, float32_features, BestSoFar(objective)
    def callback(row):
        tracker.seen(row); rows.append(row)
        for mark in marks:
            if mark not in found and row["seconds"] >= mark: found[mark] = float32_loss(tracker.image)
        if row["seconds"] >= seconds: raise TimeUp
    try: optimise(tracker, start, wc, ws, evaluations=10**6, callback=callback)
    except TimeUp: pass
    objective.precision, objective.float32_features = "fp32", False
    return found, len(rows)


# ---- seconds per evaluation ------------------------------------------------------------------------------------
def evaluation_seconds(losses, image, wc, ws, n):
    "Seconds for `n` evaluations (forward and backward pass) of `losses` at `image`."
    begin = time.perf_counter()
    for _ in range(n):
        x = image.clone().requires_grad_(True)
        c, s = losses(x)
        (wc * c + ws * s).backward()
    return (time.perf_counter() - begin)


def implementations(args, pretrained, layers):
    "The implementations parts 1 and 2 compare, checked to give the same losses and image gradients: (objectives, losses, content, wc, ws)."
    content = image_tensor(q3_images("content")[args.content], args.size)
    style = fit_to(q3_images("styles")[args.style], *content.shape[-2:])

    objectives = {name: StyleObjective(VGGFeatures(pretrained, layers.all, channels_last=cl), layers, content, style)
                  for name, cl in (("cvbook.style", True), ("cvbook.style, NCHW", False))}
    def tutorial_losses(trim):
        model, style_losses, content_losses = tutorial_model(copy.deepcopy(pretrained.model), copy.deepcopy(pretrained.normalize),
                                                             style, content, layers.content, layers.style, trim)
        model.eval().requires_grad_(False)
        def losses(image):
            model(image)
            return sum(cl.loss for cl in content_losses), sum(sl.loss for sl in style_losses)
        return losses
    losses = {**{k: o.losses for k, o in objectives.items()}, "cvbook.style, autograd losses": objectives["cvbook.style"].reference_losses,
              "tutorial-style": tutorial_losses(trim=True), "tutorial-style, untrimmed": tutorial_losses(trim=False)}

    # The losses and the image gradients must agree (same definition, different implementation).
    content_scale, style_scale = loss_scales(objectives["cvbook.style"], content, style)
    wc, ws = 1 / content_scale, BETA / style_scale
    torch.manual_seed(0)
    probe = torch.rand_like(content)
    def value_and_gradient(f):
        image = probe.clone().requires_grad_(True)
        c, s = f(image)
        (wc * c + ws * s).backward()
        return c.item(), s.item(), image.grad
    values = {k: value_and_gradient(f) for k, f in losses.items()}
    reference = values["tutorial-style"]
    for k, (c, s, g) in values.items():
        gradient_difference = ((g - reference[2]).norm() / reference[2].norm()).item()
        print(f"at a random image, {k:30s}: content loss {c:.6g}  style loss {s:.6g}  "
              f"image gradient differs from the tutorial's by {gradient_difference:.1e} (relative L2)")
        assert abs(c - reference[0]) <= 1e-4 * abs(reference[0]) and abs(s - reference[1]) <= 1e-4 * abs(reference[1]), (k, c, s, reference)
        assert gradient_difference < 1e-2, (k, gradient_difference)

    return objectives, losses, content, wc, ws

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384, help="longer side of the images in pixels (the chapter's headline size)")
    parser.add_argument("--layers", choices=["assignment", "paper"], default="assignment")
    parser.add_argument("--seconds", type=float, default=60, help="optimisation time of each run in part 1")
    parser.add_argument("--evaluations", type=int, default=3, help="evaluations per timed block in part 2")
    parser.add_argument("--rounds", type=int, default=6, help="timed blocks per implementation in part 2, interleaved")
    parser.add_argument("--parts", default="tutorial,timing,precision", help="which parts to run, comma-separated")
    parser.add_argument("--precision-size", type=int, default=512, help="longer side of the images in part 4 (the chapter's headline size)")
    parser.add_argument("--precision-seconds", type=float, default=60, help="optimisation time of each run in part 4")
    parser.add_argument("--content", default="building")
    parser.add_argument("--style", default="the-exit-of-the-russian-ballet")
    args = parser.parse_args()
    layers = ASSIGNMENT_LAYERS if args.layers == "assignment" else PAPER_LAYERS
    parts = set(args.parts.split(","))
    if parts - {"tutorial", "timing", "precision"}: parser.error(f"unknown parts {sorted(parts - {'tutorial', 'timing', 'precision'})}")

    print(f"{device_name()}, torch {torch.__version__}, load average at start: {os.getloadavg()}")
    pretrained = vgg19_features()
    honest = True
    if parts & {"tutorial", "timing"}:
        objectives, losses, content, wc, ws = implementations(args, pretrained, layers)
        if "tutorial" in parts: tutorial_part(args, objectives, losses, content, wc, ws)
        if "timing" in parts:
            measured, (theory, formula) = matmul_gflops(), theoretical_gflops()
            honest = timing_part(args, objectives, losses, content, wc, ws, measured, theory, formula)
    if "precision" in parts: precision_part(args, pretrained, layers)
    print(f"\nload average at end: {os.getloadavg()}")
    if not honest: sys.exit(1)

def tutorial_part(args, objectives, losses, content, wc, ws):
    size = f"{content.shape[-2]}x{content.shape[-1]}"
    print(f"\n1. loss reached at equal wall time: {args.content} x {args.style}, {size}, {args.layers} layers, weighted loss "
          f"(content / its value at the style image + {BETA:g} x style / its value at the content image; it starts at {BETA:g}), "
          f"{args.seconds:.0f} s of optimisation each, one after the other")
    runs = {"configured L-BFGS (cvbook.style)": configured_run(objectives["cvbook.style"], content, wc, ws, args.seconds),
            "tutorial's settings and implementation": tutorial_run(losses["tutorial-style"], content, wc, ws, args.seconds),
            "tutorial's settings, cvbook.style's objective": tutorial_run(losses["cvbook.style"], content, wc, ws, args.seconds)}
    marks = (args.seconds / 4, args.seconds / 2, args.seconds)
    print(f"   {'':48s} " + "  ".join(f"best loss by {t:3.0f} s" for t in marks) + "  evaluations  loss of the image returned")
    for label, (rows, final) in runs.items():
        print(f"   {label:48s} " + "  ".join(f"{best_by(rows, t):16.4g}" for t in marks) + f"  {len(rows):11d}  {final:.4g}")
    configured, tutorial = (best_by(runs[k][0], args.seconds) for k in ("configured L-BFGS (cvbook.style)", "tutorial's settings and implementation"))
    print(f"   at {args.seconds:.0f} s the tutorial's run is at {tutorial / configured:.2f}x the configured run's loss; the configured run "
          f"reached the tutorial's {args.seconds:.0f}-second loss after "
          f"{next((s for s, loss in runs['configured L-BFGS (cvbook.style)'][0] if loss <= tutorial), float('nan')):.1f} s")

def timing_part(args, objectives, losses, content, wc, ws, measured, theory, formula):
    print(f"\n2. seconds per evaluation (forward and backward pass), {args.rounds} interleaved blocks of {args.evaluations}, median:")
    for f in losses.values(): evaluation_seconds(f, content, wc, ws, 1)          # warm-up
    times = {k: [] for k in losses}
    names = list(losses)
    for round_ in range(args.rounds):                                            # interleaved, order rotated every round
        for k in names[round_ % len(names):] + names[:round_ % len(names)]:
            times[k].append(evaluation_seconds(losses[k], content, wc, ws, args.evaluations) / args.evaluations)
    per_evaluation = {k: statistics.median(v) for k, v in times.items()}
    for k, t in per_evaluation.items():
        print(f"   {k:30s} {t:.3f} s   (blocks: {', '.join(f'{x:.3f}' for x in times[k])})")
    print(f"   speed-up of cvbook.style over the tutorial's implementation: "
          f"{per_evaluation['tutorial-style'] / per_evaluation['cvbook.style']:.2f}x; over the same untrimmed: "
          f"{per_evaluation['tutorial-style, untrimmed'] / per_evaluation['cvbook.style']:.2f}x")

    image = content.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        c, s = objectives["cvbook.style"].losses(image); (wc * c + ws * s).backward()
    gflop = counter.get_total_flops() / 1e9
    measured = max(measured, matmul_gflops())
    print(f"\n3. one evaluation of cvbook.style does {gflop:.1f} GFLOP (convolutions and Gram products, forward and backward); "
          f"theoretical peak {formula}. The tutorial's implementation does more arithmetic for the same loss, so its rate below "
          f"counts only the arithmetic cvbook.style needs. ", end="")
    return report_fractions({k: gflop / t for k, t in per_evaluation.items()}, measured, theory)

def precision_part(args, pretrained, layers):
    content = image_tensor(q3_images("content")[args.content], args.precision_size)
    style = fit_to(q3_images("styles")[args.style], *content.shape[-2:])
    objective = StyleObjective(VGGFeatures(pretrained, layers.all), layers, content, style)
    content_scale, style_scale = loss_scales(objective, content, style)
    wc, ws = 1 / content_scale, BETA / style_scale
    fast = fast_precision()
    if fast == "fp32": print(f"\n4. precision: this processor has no bf16 matrix units (fast_precision is fp32); nothing to compare"); return
    arms = {"float32": ("fp32", False), f"{fast} network, float32 Gram products": (fast, True),
            f"{fast} network and Gram products": (fast, False)}
    t = args.precision_seconds
    print(f"\n4. precision: {args.content} x {args.style}, {content.shape[-2]}x{content.shape[-1]}, {args.layers} layers, beta/alpha "
          f"{BETA:g}; the float32 loss of each run's best image so far (it starts at {BETA:g}), {t:.0f} s of optimisation each")
    # every arm from the chapter's two starts (`start_image`): how far they end apart is the run-to-run noise
    results = {(label, seed): precision_run(objective, start_image(content, seed), wc, ws, t, *arms[label])
               for seed in STARTS for label in arms}
    shown = (t / 4, t / 2, t)
    print(f"   {'':40s} start " + "  ".join(f"loss by {m:3.0f} s" for m in shown) + "  evaluations")
    for (label, seed), (found, evaluations) in results.items():
        print(f"   {label:40s} {seed:5d} " + "  ".join(f"{found[m]:11.4g}" for m in shown) + f"  {evaluations}")
    where = write_csv([{"run": label, "start": seed, "precision": arms[label][0], "float32 features": arms[label][1], "seconds": round(m, 2),
                        "float32 loss": round(loss, 5), "evaluations": evaluations, "size": f"{content.shape[-2]}x{content.shape[-1]}",
                        "beta/alpha": BETA, "device": device_name()}
                       for (label, seed), (found, evaluations) in results.items() for m, loss in sorted(found.items())],
                      figures_dir()/"q3_precision.csv")
    print(f"   curves written to {where}")
    # float32's mean loss over each arm's at the full time (above 1: the arm reached the lower loss), seconds per evaluation
    mean = {label: statistics.mean(results[label, seed][0][t] for seed in STARTS) for label in arms}
    pace = {label: t * len(STARTS) / sum(results[label, seed][1] for seed in STARTS) for label in arms}
    short = {label: "fp32" if arm[0] == "fp32" else arm[0] + ("" if arm[1] else "_gram") for label, arm in arms.items()}
    print("SUMMARY " + " ".join(f"fp32_over_{short[label]}={mean['float32'] / mean[label]:.3f}" for label in arms if label != "float32")
          + " " + " ".join(f"seconds_per_evaluation_{short[label]}={pace[label]:.3f}" for label in arms))

if __name__ == "__main__":
    main()
