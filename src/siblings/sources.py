"""The attacker's source models, by role: which model an attack or a similarity measurement
starts from, and how the attacker uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from siblings.compress import load_model
from siblings.gradients import ReversedGradient
from siblings.models import SiblingNet

# sibling: a published compressed model; independent: same arch, other seed; cross-arch:
# another architecture's full model; whitebox: the target itself (the upper bound);
# defended: a sibling after the defense; reversed: the defended sibling with its gradient
# negated, and extracted: a fresh model distilled from the defended sibling's scores (the
# two adaptive attackers). ``none`` is not configurable: the role of attacks that take no
# source (RGF, Square), so they run once per target.
SOURCE_ROLES = ("sibling", "independent", "cross-arch", "whitebox", "defended", "reversed",
                "extracted")
NO_SOURCE = "none"
# Roles whose source id is "<compression>+<defense>" (a defended sibling or one derived from it).
DEFENDED_ROLES = ("defended", "reversed", "extracted")

# How an attacker uses the loaded model, where it is more than "as is".
ROLE_VIEWS: dict[str, Callable[[SiblingNet], nn.Module]] = {"reversed": ReversedGradient}


def load_source(role: str, path: str | Path) -> tuple[nn.Module, dict]:
    """The model a ``role`` attacks from, as the attacker uses it, and its sidecar."""
    model, meta = load_model(path)
    view = ROLE_VIEWS.get(role)
    return (view(model).eval() if view else model), meta


def defended_id(compression: str, defense: str) -> str:
    return f"{compression}+{defense}"
