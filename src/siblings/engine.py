"""Batched prediction and accuracy, on whatever device the model and images are on.

Accuracies are counts: a model's is how many test images it labels right, and every
percentage and cost is computed from counts in float64, never averaged in float32 (where
53.500003 - 51.499999 exceeded a tolerance of 2.0 points and failed a lam = 0 control).
"""

from __future__ import annotations

from contextlib import contextmanager
from fractions import Fraction
from typing import Callable, Iterator

import torch
from torch import nn


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """``models`` in eval mode (batch norm on its running statistics) within the block, and
    back in the modes they came in after it."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _padded(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` with zero rows appended up to ``rows``."""
    return torch.cat([x, x.new_zeros(rows - len(x), *x.shape[1:])]) if len(x) < rows else x


def fixed_forward(model: nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``model(x)``, computed on chunks of exactly ``chunk`` rows (the last one padded with
    zeros). A kernel library picks its algorithm by the input's shape (oneDNN and MKL choose
    per batch size and CPU), and algorithms round differently: at one fixed shape every row
    takes the same path, so a row's output does not depend on how many rows came with it."""
    parts = [model(_padded(x[i:i + chunk], chunk))[:len(x[i:i + chunk])]
             for i in range(0, len(x), chunk)]
    return torch.cat(parts)


def fixed_input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                         chunk: int) -> torch.Tensor:
    """The gradient of ``objective(model(x), y)`` (one value per row, summed) with respect
    to each row of ``x``, on chunks of exactly ``chunk`` rows as :func:`fixed_forward`
    computes them. Padding rows enter no objective, so they add nothing to a real row's
    gradient (in eval mode no layer mixes rows)."""
    parts = []
    for i in range(0, len(x), chunk):
        real = len(x[i:i + chunk])
        xc = _padded(x[i:i + chunk].detach(), chunk).requires_grad_(True)
        value = objective(model(xc)[:real], y[i:i + chunk]).sum()
        parts.append(torch.autograd.grad(value, xc)[0][:real])
    return torch.cat(parts)


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Outputs of ``model`` (in eval mode) for images ``x`` in [0, 1], batched."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Top-1 labels of ``model`` for images ``x`` in [0, 1]."""
    return logits(model, x, batch_size).argmax(1)


def n_equal(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many entries are equal: correct labels, agreeing predictions."""
    return int((a == b).sum())


def percent(count: int, n: int) -> float:
    """``count`` of ``n`` in percent."""
    return 100 * count / n


def percent_equal(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of equal entries, in percent: accuracy against labels, agreement of predictions."""
    return percent(n_equal(a, b), len(a))


def within_points(lost: int, n: int, tolerance: float) -> bool:
    """Whether losing ``lost`` of ``n`` images is within ``tolerance`` accuracy points,
    decided exactly on the counts (the tolerance as written in the config)."""
    return 100 * lost <= Fraction(str(tolerance)) * n


def n_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> int:
    """How many of ``x`` the model labels ``y``."""
    return n_equal(predict(model, x, batch_size), y)
