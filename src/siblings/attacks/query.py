"""Query attacks on a black-box target, batched across images with per-image early stop.

The target answers scores through :class:`BlackBox`, which counts every image sent to it;
an image stops as soon as it fools the target (its query count is then the queries at
success) or when its next iteration could overrun the budget (it failed). Both attacks
ascend the logit margin, whose finite differences stay above float noise where softmax
losses saturate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from siblings.attacks.base import (ATTACKS, NORMS, Attack, AttackResult, BlackBox, Budget,
                                   fooled)
from siblings.gradients import margin
from siblings.logs import log

PROGRESS_SECONDS = 30


def _unit(t: torch.Tensor) -> torch.Tensor:
    """Each row of ``t`` (any trailing shape) scaled to L2 norm 1."""
    return t / t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.flatten(1) * b.flatten(1)).sum(1)


def prior_weight(alpha: torch.Tensor, dim: int, samples: int) -> torch.Tensor:
    """P-RGF's optimal weight lambda of the prior (Cheng et al., 2019, Theorem 1), given the
    cosine ``alpha`` between prior and true gradient, the dimension and the sample count."""
    a2 = alpha.clamp(-1, 1) ** 2
    d, q = dim, samples
    lam = (1 - a2) * (a2 * (d + 2 * q - 2) - 1) / (2 * a2 * d * q - a2 ** 2 * d * (d + 2 * q - 2) - 1)
    lam = torch.where(a2 <= 1 / (d + 2 * q - 2), torch.zeros_like(lam), lam)
    return torch.where(a2 >= (2 * q - 1) / (d + 2 * q - 2), torch.ones_like(lam), lam).clamp(0, 1)


@dataclass
class _Run:
    """The images still being attacked and what is known about them."""

    x: torch.Tensor        # clean images
    y: torch.Tensor
    x_adv: torch.Tensor
    loss: torch.Tensor     # margin at x_adv (lower = closer to success); the attack lowers it
    success: torch.Tensor
    active: torch.Tensor   # bool: neither fooled yet nor out of budget
    logged_at: float = field(default_factory=time.monotonic)  # last progress line


@dataclass
class QueryAttack(Attack):
    """Shared loop: evaluate the start, then iterate while any image is active."""

    seed: int = 0
    max_iterations: int | None = None  # a step cap on top of the query budget
    query_batch: int | None = None  # most images per forward pass of the target (None: all)
    is_query = True

    def _going(self, run: _Run, budget: Budget, iteration: int) -> bool:
        if time.monotonic() - run.logged_at > PROGRESS_SECONDS:  # long runs say how far
            run.logged_at = time.monotonic()
            log.info("%s iteration %d: %d of %d images fooled, %d still active",
                     type(self).__name__, iteration, int(run.success.sum()), len(run.y),
                     int(run.active.sum()))
        return (budget.eps > 0 and bool(run.active.any())
                and (self.max_iterations is None or iteration < self.max_iterations))

    def _cost(self) -> int:
        """The most queries one iteration may send per image: an image stops when it has
        less left, so the budget is never overrun."""
        return 1

    def _margin(self, box: BlackBox, x: torch.Tensor, owner: torch.Tensor,
                y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = box(x, owner)
        return margin(logits, y, self.targeted), fooled(logits, y, self.targeted)

    def _settle(self, run: _Run, idx: torch.Tensor, loss: torch.Tensor, ok: torch.Tensor,
                box: BlackBox, cost: int) -> None:
        """Records a new point for images ``idx``; stops the fooled and those that cannot
        afford another ``cost``-query iteration."""
        run.loss[idx], run.success[idx] = loss, ok
        run.active[idx] = ~ok & (box.remaining(idx) >= cost)

    def _begin(self, target: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: Budget,
               start: torch.Tensor, cost: int) -> tuple[_Run, BlackBox]:
        box = BlackBox(target, len(y), budget.queries, self.query_batch, x.device)
        run = _Run(x, y, start.clone(), torch.zeros(len(y), device=x.device),
                   torch.zeros(len(y), dtype=torch.bool, device=x.device),
                   torch.ones(len(y), dtype=torch.bool, device=x.device))
        every = torch.arange(len(y), device=x.device)
        loss, ok = self._margin(box, run.x_adv, every, y)
        self._settle(run, every, loss, ok, box, cost)
        return run, box

    def _result(self, run: _Run, box: BlackBox, trace: dict) -> AttackResult:
        return AttackResult(run.x_adv, run.success, box.queries.clone(), None, trace)


@ATTACKS.register("prgf")
@dataclass
class PRGF(QueryAttack):
    """Prior-guided random gradient-free attack (Cheng et al., NeurIPS 2019).

    Per iteration and image: the prior ``v`` is the source model's margin gradient; its
    cosine ``alpha`` with the true gradient comes from one finite difference along ``v``
    and a norm estimate from ``norm_probes`` random directions; ``lambda`` (Theorem 1)
    mixes the prior into ``samples`` directions orthogonal noise fills out, or, at
    ``lambda = 1``, the step follows the prior with no sampling. The gradient estimate's
    sign (L-inf) or direction (L2) takes a ``step_size`` step, projected into the ball.
    Queries per iteration: ``norm_probes + 1 + samples`` (``+ 0`` samples at lambda = 1)
    plus one for the new point.
    """

    samples: int = 50
    sigma: float = 1e-4
    step_size: float = 0.01
    norm_probes: int = 10

    def _cost(self) -> int:
        return self.norm_probes + 1 + self.samples + 1

    def prior(self, source: nn.Module | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """Unit direction in which the source's margin falls fastest (hook)."""
        if source is None:
            return None
        x = x.detach().requires_grad_(True)
        grad = torch.autograd.grad(margin(source(x), y, self.targeted).sum(), x)[0]
        return _unit(-grad)

    def _differences(self, box: BlackBox, run: _Run, idx: torch.Tensor,
                     directions: torch.Tensor) -> torch.Tensor:
        """Finite differences of the ascent objective (minus the margin) along ``directions``
        (images x k x ...), one query per direction."""
        n, k = directions.shape[:2]
        points = (run.x_adv[idx][:, None] + self.sigma * directions).flatten(0, 1)
        owner = idx.repeat_interleave(k)
        loss, _ = self._margin(box, points, owner, run.y[owner])
        return (run.loss[idx][:, None] - loss.view(n, k)) / self.sigma

    def _random_directions(self, n: int, k: int, shape: torch.Size, g: torch.Generator,
                           prior: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """``k`` unit directions per image, orthogonal to ``prior`` if given. Drawn on the
        CPU, so every device attacks along the same directions."""
        noise = torch.randn(n, k, *shape, generator=g).to(device)
        if prior is not None:
            p = prior[:, None]
            noise = noise - (noise * p).flatten(2).sum(2).view(n, k, *([1] * len(shape))) * p
        return noise / noise.flatten(2).norm(dim=2).clamp_min(1e-12).view(n, k, *([1] * len(shape)))

    def estimate(self, box: BlackBox, run: _Run, idx: torch.Tensor, prior: torch.Tensor | None,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradient estimate at ``run.x_adv[idx]`` and the prior's weight per image."""
        shape, dim, device = run.x.shape[1:], run.x[0].numel(), run.x.device
        if prior is None:
            lam = torch.zeros(len(idx), device=device)
        else:
            probes = self._random_directions(len(idx), self.norm_probes, shape, g, None, device)
            norm = (self._differences(box, run, idx, probes) ** 2).mean(1).mul(dim).sqrt()
            along = self._differences(box, run, idx, prior[:, None]).squeeze(1)
            prior = prior * torch.where(along < 0, -1.0, 1.0).view(-1, *([1] * len(shape)))
            lam = prior_weight(along.abs() / norm.clamp_min(1e-12), dim, self.samples)
        estimate = torch.zeros(len(idx), *shape, device=device) if prior is None else prior.clone()
        sample = lam < 1
        if sample.any():
            rows = sample.nonzero().squeeze(1)
            base = None if prior is None else prior[rows]
            noise = self._random_directions(len(rows), self.samples, shape, g, base, device)
            w = lam[rows].view(-1, 1, *([1] * len(shape)))
            directions = noise if base is None else w.sqrt() * base[:, None] + (1 - w).sqrt() * noise
            diffs = self._differences(box, run, idx[rows], directions)
            estimate[rows] = (diffs.view(*diffs.shape, *([1] * len(shape))) * directions).sum(1)
        return estimate, lam

    def __call__(self, source: nn.Module | None, target: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, budget: Budget) -> AttackResult:
        g = torch.Generator().manual_seed(self.seed)
        run, box = self._begin(target, x, y, budget, x, self._cost())
        trace: dict[str, list] = {"lambda": []}
        norm = NORMS.get(budget.norm)
        iteration = 0
        while self._going(run, budget, iteration):
            iteration += 1
            idx = run.active.nonzero().squeeze(1)
            prior = self.prior(source, run.x_adv[idx], y[idx])
            estimate, lam = self.estimate(box, run, idx, prior, g)
            trace["lambda"].extend(lam.tolist())
            step = run.x_adv[idx] + self.step_size * norm.step(estimate)
            run.x_adv[idx] = norm.project(step, x[idx], budget.eps)
            loss, ok = self._margin(box, run.x_adv[idx], idx, y[idx])
            self._settle(run, idx, loss, ok, box, self._cost())
        return self._result(run, box, trace)


@ATTACKS.register("rgf")
@dataclass
class RGF(PRGF):
    """Random gradient-free estimation (Nesterov & Spokoiny): P-RGF with no prior, so every
    iteration samples ``samples`` random directions. Queries per iteration: samples + 1."""

    needs_source = False

    def _cost(self) -> int:
        return self.samples + 1

    def __call__(self, source: nn.Module | None, target: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, budget: Budget) -> AttackResult:
        return super().__call__(None, target, x, y, budget)


@ATTACKS.register("square")
@dataclass
class Square(QueryAttack):
    """Square Attack, L-inf (Andriushchenko et al., ECCV 2020): the strong no-prior baseline.

    Starts from random vertical stripes at the ball's corners; each iteration proposes a
    random square (side shrinking on the paper's schedule) set to +-eps per channel, and
    keeps it where the margin falls. One query per image per iteration.
    """

    p_init: float = 0.05
    needs_source = False

    def _side(self, iteration: int, budget: int, area: int) -> int:
        """The paper's schedule, rescaled from 10,000 iterations to ``budget``."""
        i = int(iteration / budget * 10000)
        halvings = sum(i > b for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
        return max(int(round(math.sqrt(self.p_init / 2 ** halvings * area))), 1)

    def __call__(self, source: nn.Module | None, target: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, budget: Budget) -> AttackResult:
        if budget.norm != "linf":
            raise ValueError("square: only the linf norm is implemented")
        g = torch.Generator().manual_seed(self.seed)
        n, c, h, w = x.shape
        stripes = torch.randint(0, 2, (n, c, 1, w), generator=g).to(x.device).float() * 2 - 1
        start = (x + budget.eps * stripes).clamp(0, 1)
        run, box = self._begin(target, x, y, budget, start if budget.eps > 0 else x, self._cost())
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        iteration = 0
        while self._going(run, budget, iteration):
            iteration += 1
            idx = run.active.nonzero().squeeze(1)
            side = min(self._side(iteration, budget.queries, h * w), h, w)
            top = torch.randint(0, h - side + 1, (len(idx), 1, 1, 1), generator=g).to(x.device)
            left = torch.randint(0, w - side + 1, (len(idx), 1, 1, 1), generator=g).to(x.device)
            window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            signs = torch.randint(0, 2, (len(idx), c, 1, 1), generator=g).to(x.device) * 2.0 - 1
            corner = (x[idx] + budget.eps * signs).clamp(0, 1)
            proposal = torch.where(window, corner, run.x_adv[idx])
            loss, ok = self._margin(box, proposal, idx, y[idx])
            better = loss < run.loss[idx]
            run.x_adv[idx] = torch.where(better.view(-1, 1, 1, 1), proposal, run.x_adv[idx])
            self._settle(run, idx, torch.minimum(loss, run.loss[idx]), ok & better, box, self._cost())
        return self._result(run, box, {})
