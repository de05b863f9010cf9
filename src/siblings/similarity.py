"""Similarity metrics: how alike a full model and a source model are, on fixed images.

Each metric is a registered function of two :class:`Views` (what a model shows on the same
seeded image set: logits, input gradients, penultimate features), so a new metric is one
function. The gradient is that of the logit *margin* (true class minus the best other),
not of cross-entropy: a confidently right model's softmax saturates and its cross-entropy
gradient shrinks towards float32 noise, which would make the cosine of two good models
look random. The margin never saturates, and it is the quantity the attacks ascend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from siblings.gradients import input_gradient
from siblings.knobs import Knob, integer, names
from siblings.registry import Registry


def classifier_layer(model: nn.Module) -> nn.Module:
    """The last conv/linear layer: its input is the penultimate representation."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no conv or linear layer")
    return layers[-1]


@dataclass(frozen=True)
class Views:
    """What the metrics compare, for one model on the shared images."""

    logits: torch.Tensor
    grads: torch.Tensor
    features: torch.Tensor


def views(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> Views:
    """Logits, margin gradients and penultimate features of ``model`` on ``x``. A model
    that scores several points per image (the averaged view) gets their mean feature."""
    model.eval()
    seen: list[torch.Tensor] = []
    hook = classifier_layer(model).register_forward_pre_hook(
        lambda _m, inputs: seen.append(inputs[0].detach().flatten(1)))
    parts, features = [], []
    try:
        for i in range(0, len(y), batch_size):
            seen.clear()
            parts.append(input_gradient(model, x[i:i + batch_size], y[i:i + batch_size]))
            found, n = torch.cat(seen), len(parts[-1][0])
            features.append(found.view(len(found) // n, n, -1).mean(0))
    finally:
        hook.remove()
    return Views(torch.cat([p[0].detach() for p in parts]).cpu().double(),
                 torch.cat([p[1] for p in parts]).cpu().double(),
                 torch.cat(features).cpu().double())


Metric = Callable[[Views, Views], dict]
SIMILARITIES: Registry[Metric] = Registry("similarity metric")


@SIMILARITIES.register("grad_cosine")
def grad_cosine(full: Views, source: Views) -> dict:
    """Cosine of the two input gradients per image: its mean, and its distribution."""
    cos = F.cosine_similarity(full.grads, source.grads, dim=1, eps=1e-30).numpy()
    return {"grad_cosine": float(cos.mean()), "grad_cosine_median": float(np.median(cos)),
            "grad_cosine_q10": float(np.quantile(cos, 0.1)),
            "grad_cosine_q90": float(np.quantile(cos, 0.9)),
            "grad_cosine_values": cos.tolist()}


@SIMILARITIES.register("agreement")
def agreement(full: Views, source: Views) -> dict:
    """Share of images on which both models predict the same class."""
    return {"agreement": float((full.logits.argmax(1) == source.logits.argmax(1)).double().mean())}


@SIMILARITIES.register("kl")
def kl(full: Views, source: Views) -> dict:
    """Mean KL(full softmax || source softmax), in nats (0 = identical outputs)."""
    value = F.kl_div(F.log_softmax(source.logits, 1), F.log_softmax(full.logits, 1),
                     reduction="batchmean", log_target=True)
    return {"kl": float(value)}


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al., 2019) of two feature matrices
    (images x features; the widths may differ)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    cross = (b.T @ a).square().sum()
    return float(cross / ((a.T @ a).norm() * (b.T @ b).norm()))


@SIMILARITIES.register("cka")
def cka(full: Views, source: Views) -> dict:
    """Linear CKA of the penultimate features."""
    return {"cka": linear_cka(full.features, source.features)}


# The ``similarity`` section: which metrics, on how many images.
SIMILARITY_KNOBS = {
    "metrics": Knob(names(), "registered similarity metrics",
                    ["grad_cosine", "agreement", "kl", "cka"]),
    "n_examples": Knob(integer(2), "seeded test images per (full model, source) pair", 500),
    "seed": Knob(integer(0), "seeds the image set", 0),
}


def compare(full: Views, source: Views, metrics: list[str]) -> dict:
    """Every requested metric's values for one pair."""
    return {k: v for name in metrics for k, v in SIMILARITIES.get(name)(full, source).items()}


def image_set(x: torch.Tensor, y: torch.Tensor, n: int, seed: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded images every pair is compared on."""
    chosen = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[chosen], y[chosen]
