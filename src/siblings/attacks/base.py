"""What every attack shares: the budget, the result, the norms, the query counter, the registry.

One call, ``attack(source, target, x, y, budget) -> AttackResult``, serves transfer attacks
(crafted on the white-box ``source``, scored on ``target``) and query attacks (``target`` is a
black box returning scores, every image sent to it is counted; ``source``, if any, supplies a
gradient prior). Images live in [0, 1] pixel space and never leave the eps-ball. An attack is
untargeted unless ``targeted`` is set; then ``y`` holds the classes to reach.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from siblings.engine import fixed_forward
from siblings.knobs import BOOLEAN, Knob, declared, integer, knob, per_device
from siblings.registry import Registry


@dataclass(frozen=True)
class Budget:
    """How far an attack may go: the radius ``eps`` in ``norm`` and, for query attacks, the
    most queries it may send to the target per image."""

    eps: float
    norm: str = "linf"
    queries: int | None = None

    def __post_init__(self) -> None:
        NORMS.get(self.norm)
        if self.eps < 0 or (self.norm == "linf" and self.eps > 1):
            raise ValueError(f"eps must be in [0, 1] for linf (pixels are in [0, 1]) and at "
                             f"least 0 for l2, got {self.eps} for {self.norm}")
        if self.queries is not None and (isinstance(self.queries, bool)
                                         or not isinstance(self.queries, int) or self.queries < 1):
            raise ValueError(f"the query budget must be a positive integer, got {self.queries!r}")


@dataclass
class AttackResult:
    """Per image: the adversarial input, whether it fools the target, and the target queries
    spent (at success; the whole spend when it failed)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor
    source_success: torch.Tensor | None = None
    trace: dict[str, list] = field(default_factory=dict)  # e.g. P-RGF's lambda per iteration


# --- norms: the direction of a step and the projection back into the ball ---------------

def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm, shaped to broadcast over the image."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def _linf_project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return x_adv.clamp(min=x - eps, max=x + eps).clamp_(0.0, 1.0)


def _l2_project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    delta = x_adv - x
    delta = delta * (eps / _flat_norm(delta)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Norm:
    step: Callable[[torch.Tensor], torch.Tensor]  # gradient -> steepest-ascent unit step
    project: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # into the ball


NORMS: Registry[Norm] = Registry("norm")
NORMS.register("linf")(Norm(torch.sign, _linf_project))
NORMS.register("l2")(Norm(lambda g: g / _flat_norm(g), _l2_project))


# --- losses on logits ----------------------------------------------------------------------

def fooled(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


# --- the black box -------------------------------------------------------------------------

# Images per forward and backward of every computation that decides an attack's outcome:
# one fixed shape (siblings.engine.fixed_forward), whatever the batch or the active images.
CHUNK = 50

class BlackBox:
    """The target as a query attacker sees it: scores for the images it is sent, no gradient.

    Every image sent counts as one query against the image it perturbs (``owner``); a call
    that would take any image past ``budget`` raises instead of answering, so no attack can
    exceed its budget by accident.
    """

    def __init__(self, model: nn.Module, n_images: int, budget: int, chunk: int = CHUNK,
                 device: torch.device | str = "cpu") -> None:
        self.model = model.eval()
        self.budget = budget
        self.chunk = chunk
        self.queries = torch.zeros(n_images, dtype=torch.long, device=device)

    def remaining(self, owner: torch.Tensor) -> torch.Tensor:
        return self.budget - self.queries[owner]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """The scores of ``x``, computed on chunks of exactly ``chunk`` images (padding is
        free: only the images sent count), so an image's scores do not depend on the batch
        it came in."""
        spent = self.queries.index_add(0, owner, torch.ones_like(owner))
        if (spent > self.budget).any():
            raise RuntimeError("query budget exceeded: the attack must stop an image first")
        self.queries = spent
        return fixed_forward(self.model, x, self.chunk)


# --- per-image random streams ---------------------------------------------------------------

def image_streams(seed: int, ids: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per image, seeded by (``seed``, the image's index in the attack
    set): an image's random draws then do not depend on the batch it shares, so results do
    not change with ``batch_size`` or with the device's batch choice."""
    return [torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, int(i)]).generate_state(1, np.uint64)[0]))
        for i in ids.tolist()]


def default_ids(ids: torch.Tensor | None, n: int) -> torch.Tensor:
    """The images' indices in the attack set (0..n-1 for a single call)."""
    return torch.arange(n) if ids is None else ids.cpu()


# --- the base class and the registry --------------------------------------------------------

@dataclass
class Attack(ABC):
    """Base of every attack. Subclasses set ``needs_source`` and implement ``__call__``.

    Its config knobs are its fields declared with :func:`siblings.knobs.knob`; ``norms``
    are the norms it implements; ``ignores`` names inherited knobs that mean nothing to it
    (refused in its config entry); ``entry_knobs`` are keys of its config entry that the
    stage reads rather than the attack (P-RGF's ``baseline``)."""

    targeted: bool = knob(False, "aim at a seeded random other class instead of any wrong "
                                 "one", BOOLEAN)
    seed: int = knob(0, "seeds the image set and every random draw of the attack", integer(0))
    chunk: int = knob(CHUNK, "images per forward and backward pass of the source and the "
                             "target: every pass runs on exactly this many (the last padded), "
                             "so an image's result does not depend on the batch it shares; "
                             "changing it may change results in the last digits",
                      per_device(integer(1)))
    needs_source: ClassVar[bool] = True
    is_query: ClassVar[bool] = False
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    ignores: ClassVar[tuple[str, ...]] = ()
    entry_knobs: ClassVar[dict[str, Knob]] = {}

    @classmethod
    def knobs(cls) -> dict[str, Knob]:
        """The knobs the attack itself takes."""
        return {k: v for k, v in declared(cls).items() if k not in cls.ignores}

    def objective(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image loss the attack ascends (hook): cross-entropy of the true class, or
        minus that of the target class."""
        ce = nn.functional.cross_entropy(logits, y, reduction="none")
        return -ce if self.targeted else ce

    @abstractmethod
    def __call__(self, source: nn.Module | None, target: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, budget: Budget, ids: torch.Tensor | None = None) -> AttackResult:
        """Attacks ``target`` on images ``x`` (labels or target classes ``y``) within
        ``budget``, using ``source`` as the white-box model or prior (None: no source).
        ``ids`` are the images' indices in the attack set, which seed their random
        streams (None: 0..n-1)."""


ATTACKS: Registry[type[Attack]] = Registry("attack method")
