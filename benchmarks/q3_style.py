"""Seconds per L-BFGS iteration: cvbook.style against a tutorial-style implementation (not a timed test).

The baseline follows the PyTorch neural-style tutorial: the loss modules are inserted into a copy of
`vgg19().features` rebuilt as an `nn.Sequential` (ReLUs made out-of-place), each loss module holds a target
computed by running the partial model when it is inserted, the model is cut after the last loss module, its
parameters are frozen, and the closure sums `.loss` of the modules after `model(image)`. It computes the same
loss as `cvbook.style` (content: sum of squares; Gram divided by C*H*W; style: MSE of Grams), so the losses must
agree; only the implementation differs. cvbook.style additionally runs in channels-last memory layout, and is
also timed without it to show where the difference comes from.

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

from cvbook.core import device_name
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

def tutorial_model(cnn, normalization, style_img, content_img, content_layers, style_layers):
    "The tutorial's get_style_model_and_losses, with layer names from cvbook.style (conv1_1, relu1_1, ...)."
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
    return model[:last + 1], style_losses, content_losses


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
    parser.add_argument("--rounds", type=int, default=6, help="timed blocks per implementation, interleaved")
    parser.add_argument("--content", default="building")
    parser.add_argument("--style", default="the-exit-of-the-russian-ballet")
    args = parser.parse_args()
    layers = ASSIGNMENT_LAYERS if args.layers == "assignment" else PAPER_LAYERS

    pretrained = vgg19_features()
    content = image_tensor(q3_images("content")[args.content], args.size)
    style = fit_to(q3_images("styles")[args.style], *content.shape[-2:])

    objectives = {name: StyleObjective(VGGFeatures(pretrained, layers.all, channels_last=cl), layers, content, style)
                  for name, cl in (("cvbook.style", True), ("cvbook.style, NCHW", False))}
    model, style_losses, content_losses = tutorial_model(copy.deepcopy(pretrained.model), copy.deepcopy(pretrained.normalize),
                                                         style, content, layers.content, layers.style)
    model.eval().requires_grad_(False)
    def tutorial_losses(image):
        model(image)
        return sum(cl.loss for cl in content_losses), sum(sl.loss for sl in style_losses)
    losses = {**{k: o.losses for k, o in objectives.items()}, "tutorial-style": tutorial_losses}

    # The losses must agree (same definition, different implementation).
    torch.manual_seed(0)
    probe = torch.rand_like(content)
    with torch.no_grad(): values = {k: [v.item() for v in f(probe)] for k, f in losses.items()}
    reference = values["tutorial-style"]
    for k, (c, s) in values.items():
        print(f"losses at a random image, {k:20s}: content {c:.6g}  style {s:.6g}")
        assert abs(c - reference[0]) <= 1e-4 * abs(reference[0]) and abs(s - reference[1]) <= 1e-4 * abs(reference[1]), (k, c, s, reference)

    content_scale, style_scale = loss_scales(objectives["cvbook.style"], content, style)
    runners = {k: Runner(f, content, 1 / content_scale, 30 / style_scale) for k, f in losses.items()}
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
        print(f"  {k:20s} {t:.3f} s per iteration   (blocks: {', '.join(f'{x:.3f}' for x in times[k])})")
    ratio = per_iteration["tutorial-style"] / per_iteration["cvbook.style"]
    print(f"speed-up of cvbook.style over the tutorial-style implementation: {ratio:.2f}x "
          f"(without channels-last: {per_iteration['tutorial-style'] / per_iteration['cvbook.style, NCHW']:.2f}x)")

if __name__ == "__main__":
    main()
