"""Input gradients, the quantity that links a sibling to its full model.

One place for the attacks' objective (the logit margin), the gradient the similarity
metrics compare and the defense pulls apart, and the adaptive attacker's reversal of it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F


def margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per image, how far from success (negative = fooled): untargeted, the true class's
    logit minus the best other one; targeted, the best other minus the target's. Logit
    margins do not saturate like softmax losses, so finite differences and gradients stay
    above float32 noise for confidently classified images."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return others - true if targeted else true - others


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and the per-image gradient of the margin w.r.t. the input, flattened.
    ``create_graph`` keeps the graph for double backpropagation (the defense)."""
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(margin(out, y, False).sum(), x, create_graph=create_graph)
    return out, grad.flatten(1)


class ReversedGradient(nn.Module):
    """``model`` with the same outputs but every input gradient negated: the adaptive
    attacker's answer to a sibling trained to point its gradients away from the full
    model's (``2 * stop_grad(f) - f`` has value ``f`` and gradient ``-grad f``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return 2 * out.detach() - out


class AveragedGradient(nn.Module):
    """``model`` seen through ``samples`` random points of the L-inf ball of ``radius``
    around each input: its output is the mean log-probability over those points, so the
    gradient of any loss of it averages the model's gradients there. The adaptive attacker's
    answer to a penalty applied only at clean points (expectation over transformation).
    The offsets are drawn once, seeded, and shared by every image and step, so the view is
    deterministic and independent of the batch."""

    def __init__(self, model: nn.Module, radius: float = 0.03, samples: int = 8,
                 seed: int = 0) -> None:
        super().__init__()
        self.model, self.radius, self.samples, self.seed = model, radius, samples, seed
        self._offsets: torch.Tensor | None = None

    def offsets(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        if self._offsets is None or self._offsets.shape[1:] != shape:
            g = torch.Generator().manual_seed(self.seed)
            self._offsets = (torch.rand(self.samples, *shape, generator=g) * 2 - 1) * self.radius
        return self._offsets.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        points = (x[None] + self.offsets(x.shape[1:], x.device)[:, None]).clamp(0, 1)
        out = F.log_softmax(self.model(points.flatten(0, 1)), dim=1)
        return out.view(self.samples, len(x), -1).mean(0)


class _HardSigmoid(nn.Module):
    """Hard-sigmoid as ``relu6(x + 3) / 6``: the same values (bit for bit on the CPU), in
    ops PyTorch can differentiate twice; ``nn.Hardsigmoid``'s backward has no derivative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


@contextmanager
def twice_differentiable(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model``'s input gradient can itself be differentiated (the
    defense's double backpropagation): hard-sigmoids (MobileNetV3's and GhostNet's
    squeeze-excite gates) are re-expressed, and attention runs PyTorch's math kernel (the
    fused CPU attention kernel has no double backward). The model is restored on exit."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    swapped = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children() if isinstance(child, nn.Hardsigmoid)]
    for parent, name, _ in swapped:
        setattr(parent, name, _HardSigmoid())
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
