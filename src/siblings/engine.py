"""Shared torch plumbing: thread/seed set-up, batched prediction, accuracy, the data artifact."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from siblings.artifacts import load_tensors
from siblings.data import Splits


def setup_torch(threads: int, seed: int) -> None:
    """Fixes the thread count (Snakemake's ``threads:``) and every RNG, for repeatable tables."""
    torch.set_num_threads(max(1, threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_splits(path: str | Path) -> Splits:
    tensors, meta = load_tensors(path)
    return Splits(tensors, meta)


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Outputs of ``model`` (in eval mode) for images ``x`` in [0, 1], batched."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Top-1 labels of ``model`` for images ``x`` in [0, 1]."""
    return logits(model, x, batch_size).argmax(1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * (predict(model, x, batch_size) == y).float().mean().item()
