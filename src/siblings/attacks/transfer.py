"""Transfer attacks: iterate on a white-box source, then send the result to the target once.

A new iterative attack overrides one of the hooks: ``objective`` (what to ascend),
``gradient``, ``update`` (the step) or ``project`` (back into the eps-ball).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from siblings.attacks.base import (ATTACKS, NORMS, Attack, AttackResult, Budget, default_ids,
                                   fooled, image_streams)


@dataclass
class IterativeAttack(Attack):
    """``steps`` steps of ``step_size_factor * eps / steps`` along the norm's steepest-ascent
    direction of the source's loss, each projected back into the ball (from a random point
    of the ball if ``random_start``)."""

    steps: int = 10
    step_size_factor: float = 2.5
    random_start: bool = False
    seed: int = 0

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(self.objective(model(x), y).sum(), x)[0]

    def update(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float, norm: str,
               state: dict) -> torch.Tensor:
        return x_adv + step_size * NORMS.get(norm).step(grad)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, budget: Budget) -> torch.Tensor:
        return NORMS.get(budget.norm).project(x_adv, x, budget.eps)

    def _start(self, x: torch.Tensor, budget: Budget, ids: torch.Tensor | None) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        streams = image_streams(self.seed, default_ids(ids, len(x)))
        noise = torch.stack([torch.rand(x.shape[1:], generator=g) for g in streams])
        noise = (noise.to(x.device) * 2 - 1) * budget.eps
        if budget.norm == "l2":  # a random direction on the sphere of radius eps
            noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * budget.eps
        return self.project(x + noise, x, budget)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                budget: Budget, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial images for ``model`` within ``budget`` of ``x``."""
        if budget.eps == 0:
            return x.clone()
        model.eval()
        x_adv = self._start(x, budget, ids)
        step_size = self.step_size_factor * budget.eps / self.steps
        state: dict = {}
        for _ in range(self.steps):
            grad = self.gradient(model, x_adv, y)
            x_adv = self.project(self.update(x_adv.detach(), grad, step_size, budget.norm, state),
                                 x, budget)
        return x_adv.detach()

    def __call__(self, source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 budget: Budget, ids: torch.Tensor | None = None) -> AttackResult:
        x_adv = self.perturb(source, x, y, budget, ids)
        with torch.no_grad():
            success = fooled(target.eval()(x_adv), y, self.targeted)
            source_success = fooled(source(x_adv), y, self.targeted)
        return AttackResult(x_adv, success, torch.ones(len(y), dtype=torch.long, device=y.device),
                            source_success)


@ATTACKS.register("pgd")
class PGD(IterativeAttack):
    """Projected gradient descent (Madry et al., 2018)."""


@ATTACKS.register("mifgsm")
@dataclass
class MIFGSM(IterativeAttack):
    """Momentum iterative FGSM (Dong et al., 2018): steps follow an accumulated,
    L1-normalised gradient, which transfers better than the raw one."""

    decay: float = 1.0

    def update(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float, norm: str,
               state: dict) -> torch.Tensor:
        scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        state["momentum"] = self.decay * state.get("momentum", 0) + grad / scale
        return super().update(x_adv, state["momentum"], step_size, norm, state)
