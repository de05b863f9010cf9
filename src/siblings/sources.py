"""The attacker's source models: load the model of a role as the attacker uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from siblings.cards import ModelCard
from siblings.checkpoints import load_model
from siblings.gradients import AveragedGradient, ReversedGradient
from siblings.models import SiblingNet

# How an attacker uses the loaded model, where it is more than "as is".
ROLE_VIEWS: dict[str, Callable[[SiblingNet], nn.Module]] = {"reversed": ReversedGradient,
                                                            "averaged": AveragedGradient}


def load_source(role: str, path: str | Path, device: torch.device | str = "cpu"
                ) -> tuple[nn.Module, ModelCard]:
    """The model a ``role`` attacks from, as the attacker uses it, and its card."""
    model, card = load_model(path, device)
    view = ROLE_VIEWS.get(role)
    return (view(model).eval() if view else model), card
