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
from siblings.engine import eval_mode, fixed_forward, fixed_input_gradient
from siblings.knobs import BOOLEAN, integer, knob, number


@dataclass
class IterativeAttack(Attack):
    """``steps`` steps of ``step_size_factor * eps / steps`` along the norm's steepest-ascent
    direction of the source's loss, each projected back into the ball (from a random point
    of the ball if ``random_start``)."""

    steps: int = knob(10, "iterations on the source", integer(1))
    step_size_factor: float = knob(2.5, "each step is factor * eps / steps", number(above=0))
    random_start: bool = knob(False, "start from a random point of the ball", BOOLEAN)

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fixed_input_gradient(model, x, y, self.objective, self.chunk)

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
        """Adversarial images for ``model`` within ``budget`` of ``x``. The model runs in
        eval mode (batch norm on its running statistics) and is handed back in the mode it
        came in."""
        if budget.eps == 0:
            return x.clone()
        with eval_mode(model):
            x_adv = self._start(x, budget, ids)
            step_size = self.step_size_factor * budget.eps / self.steps
            state: dict = {}
            for _ in range(self.steps):
                grad = self.gradient(model, x_adv, y)
                x_adv = self.project(self.update(x_adv.detach(), grad, step_size, budget.norm,
                                                 state), x, budget)
        return x_adv.detach()

    def __call__(self, source: nn.Module, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 budget: Budget, ids: torch.Tensor | None = None) -> AttackResult:
        x_adv = self.perturb(source, x, y, budget, ids)
        with torch.no_grad(), eval_mode(target, source):
            success = fooled(fixed_forward(target, x_adv, self.chunk), y, self.targeted)
            source_success = fooled(fixed_forward(source, x_adv, self.chunk), y, self.targeted)
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

    decay: float = knob(1.0, "momentum decay", number(0))

    def update(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float, norm: str,
               state: dict) -> torch.Tensor:
        scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        state["momentum"] = self.decay * state.get("momentum", 0) + grad / scale
        return super().update(x_adv, state["momentum"], step_size, norm, state)
