"""Seconds per L-BFGS iteration: cvbook.style against a tutorial-style implementation (not a timed test).

The baseline follows the PyTorch neural-style tutorial: the loss modules are inserted into a copy of
`vgg19().features` rebuilt as an `nn.Sequential` (ReLUs made out-of-place), each loss module holds a target
computed by running the partial model when it is inserted, the model is cut after the last loss module, its
parameters are frozen, and the closure sums `.loss` of the modules after `model(image)`. It computes the same
loss as `cvbook.style` (content: sum of squares; Gram divided by C*H*W; style: MSE of Grams), so the losses must
agree, and so must the image gradients: to 1e-2 relative, because convolutions in different memory layouts round
differently and a max-pool window whose two largest inputs are within rounding of each other can route its
gradient to either (this moves the channels-last gradient by about 1e-3 with the paper's layers); a wrong
gradient would differ by order 1. Only the implementation differs.

Timed besides the tutorial's approach: cvbook.style as used by the book (losses tapped into the network with
fused backward passes, channels-last), the same in NCHW layout, and channels-last with the plain loss definitions
differentiated by autograd (`StyleObjective.reference_losses`), to show where the difference comes from; and the
tutorial's model without its trimming after the last loss layer (all 37 modules of `features` run), which is what
a port that skips that step computes.

    CVBOOK_WEIGHTS=... CVBOOK_DATA=... CVBOOK_OFFLINE=1 python benchmarks/q3_style.py [--size 192] [--layers assignment|paper]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cvbook.core import device_name
from cvbook.speed import matmul_gflops
from cvbook.data import q3_images
from cvbook.style import (ASSIGNMENT_LAYERS, PAPER_LAYERS, VGG19_LAYERS, StyleObjective, VGGFeatures, fit_to,
                          image_tensor, loss_scales)
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


# ---- timing -----------------------------------------------------------------------------------------------
class Runner:
    "One implementation with its own image and L-BFGS state; `run(n)` does n iterations and returns the seconds."
    def __init__(self, losses, start, wc, ws):
        self.losses, self.wc, self.ws = losses, wc, ws
        self.image = start.clone().requires_grad_(True)
        self.opt = torch.optim.LBFGS([self.image], lr=1, max_iter=1, history_size=50)
    def closure(self):
        self.opt.zero_grad()
        c, s = self.losses(self.image)
        loss = self.wc * c + self.ws * s
        loss.backward()
        self.image.grad = self.image.grad.contiguous()
        return loss
    def run(self, n):
        begin = time.perf_counter()
        for _ in range(n):
            self.opt.step(self.closure)
            with torch.no_grad(): self.image.clamp_(0, 1)
        return time.perf_counter() - begin

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--layers", choices=["assignment", "paper"], default="assignment")
    parser.add_argument("--iterations", type=int, default=4, help="iterations per timed block")
    parser.add_argument("--rounds", type=int, default=8, help="timed blocks per implementation, interleaved")
    parser.add_argument("--content", default="building")
    parser.add_argument("--style", default="the-exit-of-the-russian-ballet")
    args = parser.parse_args()
    layers = ASSIGNMENT_LAYERS if args.layers == "assignment" else PAPER_LAYERS

    pretrained = vgg19_features()
    content = image_tensor(q3_images("content")[args.content], args.size)
    style = fit_to(q3_images("styles")[args.style], *content.shape[-2:])

    objectives = {name: StyleObjective(VGGFeatures(pretrained, layers.all, channels_last=cl), layers, content, style)
                  for name, cl in (("cvbook.style", True), ("cvbook.style, NCHW", False))}
    autograd_losses = objectives["cvbook.style"].reference_losses
    def tutorial_losses(trim):
        model, style_losses, content_losses = tutorial_model(copy.deepcopy(pretrained.model), copy.deepcopy(pretrained.normalize),
                                                             style, content, layers.content, layers.style, trim)
        model.eval().requires_grad_(False)
        def losses(image):
            model(image)
            return sum(cl.loss for cl in content_losses), sum(sl.loss for sl in style_losses)
        return losses
    losses = {**{k: o.losses for k, o in objectives.items()}, "cvbook.style, autograd losses": autograd_losses,
              "tutorial-style": tutorial_losses(trim=True), "tutorial-style, untrimmed": tutorial_losses(trim=False)}

    # The losses and the image gradients must agree (same definition, different implementation).
    content_scale, style_scale = loss_scales(objectives["cvbook.style"], content, style)
    weights = (1 / content_scale, 30 / style_scale)
    torch.manual_seed(0)
    probe = torch.rand_like(content)
    def value_and_gradient(f):
        image = probe.clone().requires_grad_(True)
        c, s = f(image)
        (weights[0] * c + weights[1] * s).backward()
        return c.item(), s.item(), image.grad
    values = {k: value_and_gradient(f) for k, f in losses.items()}
    reference = values["tutorial-style"]
    for k, (c, s, g) in values.items():
        gradient_difference = ((g - reference[2]).norm() / reference[2].norm()).item()
        print(f"at a random image, {k:30s}: content loss {c:.6g}  style loss {s:.6g}  "
              f"image gradient differs from the tutorial's by {gradient_difference:.1e} (relative L2)")
        assert abs(c - reference[0]) <= 1e-4 * abs(reference[0]) and abs(s - reference[1]) <= 1e-4 * abs(reference[1]), (k, c, s, reference)
        assert gradient_difference < 1e-2, (k, gradient_difference)

    runners = {k: Runner(f, content, *weights) for k, f in losses.items()}
    for r in runners.values(): r.run(1)                                   # warm-up
    times = {k: [] for k in runners}
    names = list(runners)
    for round_ in range(args.rounds):                                    # interleaved, order rotated every round
        for k in names[round_ % len(names):] + names[:round_ % len(names)]:
            times[k].append(runners[k].run(args.iterations) / args.iterations)
    per_iteration = {k: statistics.median(v) for k, v in times.items()}

    print(f"\n{device_name()}, torch {torch.__version__}, image {content.shape[-2]}x{content.shape[-1]}, "
          f"{args.layers} layers (network to {max(layers.all, key=VGG19_LAYERS.index)}), "
          f"{args.rounds} interleaved blocks of {args.iterations} L-BFGS iterations each, median:")
    for k, t in per_iteration.items():
        print(f"  {k:30s} {t:.3f} s per iteration   (blocks: {', '.join(f'{x:.3f}' for x in times[k])})")
    with FlopCounterMode(display=False) as counter: runners["cvbook.style"].closure()
    gflop, peak = counter.get_total_flops() / 1e9, matmul_gflops()
    print(f"one iteration of cvbook.style does {gflop:.1f} GFLOP (convolutions and Gram products, forward and backward); "
          f"at this machine's measured float32 matmul rate, {peak:.0f} GFLOP/s, that takes {gflop / peak:.3f} s. "
          f"Those GFLOP per second of each implementation (the tutorial's does more arithmetic for the same result):")
    for k, t in per_iteration.items():
        print(f"  {k:30s} {gflop / t:5.0f} GFLOP/s = {gflop / t / peak:.0%} of the matmul rate")
    speed_up = {k: per_iteration["tutorial-style"] / t for k, t in per_iteration.items()}
    print(f"speed-up of cvbook.style over the tutorial-style implementation: {speed_up['cvbook.style']:.2f}x "
          f"(in NCHW: {speed_up['cvbook.style, NCHW']:.2f}x; with autograd losses: {speed_up['cvbook.style, autograd losses']:.2f}x); "
          f"over the same without the tutorial's trimming after the last loss layer: "
          f"{per_iteration['tutorial-style, untrimmed'] / per_iteration['cvbook.style']:.2f}x")

if __name__ == "__main__":
    main()
