"""Batched prediction and accuracy, on whatever device the model and images are on."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Outputs of ``model`` (in eval mode) for images ``x`` in [0, 1], batched."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Top-1 labels of ``model`` for images ``x`` in [0, 1]."""
    return logits(model, x, batch_size).argmax(1)


def percent_equal(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of equal entries, in percent: accuracy against labels, agreement of predictions."""
    return 100.0 * (a == b).float().mean().item()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    return percent_equal(predict(model, x, batch_size), y)
