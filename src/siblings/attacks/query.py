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
                                   default_ids, fooled, image_streams)
from siblings.engine import fixed_input_gradient
from siblings.gradients import margin
from siblings.knobs import STRING, Knob, integer, knob, number
from siblings.logs import log

PROGRESS_SECONDS = 30


def _rms_one(t: torch.Tensor, lead: int = 1) -> torch.Tensor:
    """Each direction of ``t`` (its first ``lead`` dims index directions) scaled to root
    mean square 1, so its L2 norm is sqrt(dim): the scale the reference P-RGF applies
    ``sigma`` to. On unit-length directions the finite-difference step is sqrt(dim) times
    smaller, and float32 noise swamps it."""
    rms = t.flatten(lead).pow(2).mean(lead).sqrt().clamp_min(1e-12)
    return t / rms.view(*rms.shape, *([1] * (t.dim() - lead)))


def prior_weight(alpha: torch.Tensor, dim: int, samples: int) -> torch.Tensor:
    """P-RGF's optimal weight lambda of the prior (Cheng et al., 2019, Theorem 1), given the
    cosine ``alpha`` between prior and true gradient, the dimension and the sample count.
    Where the closed form leaves (0, 1), lambda is 0 below the threshold
    alpha^2 (d + 2q - 2) < 1 and 1 above it; |alpha| >= 1 gives 1."""
    a2 = alpha.double().clamp(-1, 1) ** 2
    d, q = dim, samples
    best = (1 - a2) * (1 - a2 * (d + 2 * q - 2)) / (a2 ** 2 * d * (d + 2 * q - 2) - 2 * a2 * d * q + 1)
    edge = torch.where(a2 * (d + 2 * q - 2) < 1, 0.0, 1.0).double()
    lam = torch.where((best > 0) & (best < 1), best, edge)
    return torch.where(a2 >= 1, 1.0, lam).to(alpha.dtype)


def _gaussian(streams: list[torch.Generator], rows: torch.Tensor, k: int, shape: torch.Size,
              device: torch.device) -> torch.Tensor:
    """``k`` standard normal draws of ``shape`` per image of ``rows``, each from its own
    stream, on the CPU: every device attacks along the same directions."""
    return torch.stack([torch.randn(k, *shape, generator=streams[r])
                        for r in rows.tolist()]).to(device)


@dataclass
class _Run:
    """The images still being attacked and what is known about them."""

    x: torch.Tensor        # clean images
    y: torch.Tensor
    x_adv: torch.Tensor
    loss: torch.Tensor     # margin at x_adv (lower = closer to success); the attack lowers it
    success: torch.Tensor
    active: torch.Tensor   # bool: neither fooled yet nor out of budget
    streams: list[torch.Generator]  # one random stream per image
    sigma: torch.Tensor | None = None    # P-RGF: finite-difference step per image
    norm_sq: torch.Tensor | None = None  # P-RGF: last squared gradient-norm estimate
    logged_at: float = field(default_factory=time.monotonic)  # last progress line


@dataclass
class QueryAttack(Attack):
    """Shared loop: evaluate the start, then iterate while any image is active."""

    max_iterations: int | None = knob(None, "at most this many steps per image (null: the "
                                            "budget decides)", integer(1, nullable=True))
    is_query = True

    def _going(self, run: _Run, budget: Budget, iteration: int) -> bool:
        if time.monotonic() - run.logged_at > PROGRESS_SECONDS:  # long runs say how far
            run.logged_at = time.monotonic()
            log.info("%s iteration %d: %d of %d images fooled, %d still active",
                     type(self).__name__, iteration, int(run.success.sum()), len(run.y),
                     int(run.active.sum()))
        return (budget.eps > 0 and bool(run.active.any())
                and (self.max_iterations is None or iteration < self.max_iterations))

    def _cost(self, iteration: int, run: _Run, idx: torch.Tensor) -> torch.Tensor | int:
        """The fewest queries iteration ``iteration`` sends per image of ``idx``: an image
        with less left stops (failed), so the budget is never overrun."""
        return 1

    def _margin(self, box: BlackBox, x: torch.Tensor, owner: torch.Tensor,
                y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = box(x, owner)
        return margin(logits, y, self.targeted), fooled(logits, y, self.targeted)

    def _settle(self, run: _Run, idx: torch.Tensor, loss: torch.Tensor, ok: torch.Tensor,
                box: BlackBox, next_iteration: int) -> None:
        """Records a new point for images ``idx``; stops the fooled and those that cannot
        afford the next iteration."""
        run.loss[idx], run.success[idx] = loss, ok
        run.active[idx] = ~ok & (box.remaining(idx) >= self._cost(next_iteration, run, idx))

    def _afford(self, run: _Run, box: BlackBox, idx: torch.Tensor, need: int) -> torch.Tensor:
        """Which images of ``idx`` have ``need`` queries left; the others stop (failed)."""
        ok = box.remaining(idx) >= need
        run.active[idx[~ok]] = False
        return ok

    def _new_run(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                 streams: list[torch.Generator]) -> _Run:
        return _Run(x, y, start.clone(), torch.zeros(len(y), device=x.device),
                    torch.zeros(len(y), dtype=torch.bool, device=x.device),
                    torch.ones(len(y), dtype=torch.bool, device=x.device), streams)

    def _streams(self, ids: torch.Tensor | None, n: int) -> list[torch.Generator]:
        return image_streams(self.seed, default_ids(ids, n))

    def _begin(self, target: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: Budget,
               start: torch.Tensor, streams: list[torch.Generator]) -> tuple[_Run, BlackBox]:
        """Scores the start, one query per image."""
        box = BlackBox(target, len(y), budget.queries, self.chunk, x.device)
        run = self._new_run(x, y, start, streams)
        every = torch.arange(len(y), device=x.device)
        loss, ok = self._margin(box, run.x_adv, every, y)
        self._settle(run, every, loss, ok, box, 0)
        return run, box

    def _result(self, run: _Run, box: BlackBox, trace: dict) -> AttackResult:
        return AttackResult(run.x_adv, run.success, box.queries.clone(), None, trace)


@ATTACKS.register("prgf")
@dataclass
class PRGF(QueryAttack):
    """Prior-guided random gradient-free attack (Cheng et al., NeurIPS 2019), as the
    reference implementation (thu-ml/Prior-Guided-RGF, ``biased``) runs it.

    The prior ``v`` is the source model's margin-descent gradient, scaled to RMS 1. Its
    cosine ``alpha`` with the true gradient comes from one finite difference along ``v`` and
    a gradient-norm estimate from ``norm_probes`` random directions, refreshed only at
    iterations 0, ``norm_also_at`` and every ``norm_every``-th; ``lambda`` (Theorem 1) mixes
    the prior into ``samples`` RMS-1 directions orthogonal noise fills out, or, at
    ``lambda = 1``, the step follows the prior with no sampling. Finite differences step
    ``sigma`` along RMS-1 directions; a difference of exactly 0 along the prior doubles
    ``sigma`` (one more query), an all-zero sampled estimate multiplies it by 5 (``samples``
    more), and every second iteration two probes check whether the initial ``sigma`` works
    again. The estimate's sign (L-inf) or direction (L2) takes a ``step_size`` step,
    projected into the ball.

    Queries per iteration and image: 1 along the prior + (``samples`` if lambda < 1) + 1 for
    the new point, + ``norm_probes`` at a norm iteration, + 2 at a sigma check, + retries.
    """

    samples: int = knob(50, "random directions per gradient estimate", integer(1))
    sigma: float = knob(1e-4, "finite-difference step along RMS-1 directions", number(above=0))
    step_size: float = knob(0.01, "step length", number(above=0))
    norm_probes: int = knob(10, "random probes of the gradient-norm estimate, sent at "
                                "iterations 0, 3 and every 10th", integer(1))
    entry_knobs = {"baseline": Knob(STRING, "the no-prior query attack (an attack id of this "
                                            "config) its query reduction is measured against")}
    norm_every: int = 10
    norm_also_at: int = 3
    sigma_check_every: int = 2

    def _norm_iteration(self, iteration: int) -> bool:
        return iteration % self.norm_every == 0 or iteration == self.norm_also_at

    def _sigma_checked(self, run: _Run, idx: torch.Tensor, iteration: int) -> torch.Tensor:
        """Images of ``idx`` whose sigma has grown and is checked this iteration."""
        grown = run.sigma[idx] != self.sigma
        return grown & (iteration % self.sigma_check_every == 0)

    def _new_run(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                 streams: list[torch.Generator]) -> _Run:
        run = super()._new_run(x, y, start, streams)
        run.sigma = torch.full((len(y),), self.sigma, device=x.device)
        run.norm_sq = torch.zeros(len(y), device=x.device)
        return run

    def _cost(self, iteration: int, run: _Run, idx: torch.Tensor) -> torch.Tensor | int:
        norm = self.norm_probes if self._norm_iteration(iteration) else 0
        return 2 * self._sigma_checked(run, idx, iteration).long() + norm + 1 + 1

    def prior(self, source: nn.Module | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The direction in which the source's margin falls fastest, RMS 1 (hook)."""
        if source is None:
            return None
        grad = fixed_input_gradient(source, x, y, lambda out, y_: margin(out, y_, self.targeted),
                                    self.chunk)
        return _rms_one(-grad)

    def _differences(self, box: BlackBox, run: _Run, idx: torch.Tensor,
                     directions: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Rises of the ascent objective (minus the margin) from ``x_adv`` over a ``sigma``
        step along each of ``directions`` (images x k x ...), one query per direction."""
        n, k = directions.shape[:2]
        step = sigma.view(n, 1, *([1] * (directions.dim() - 2))) * directions
        points = (run.x_adv[idx][:, None] + step).flatten(0, 1)
        owner = idx.repeat_interleave(k)
        loss, _ = self._margin(box, points, owner, run.y[owner])
        return run.loss[idx][:, None] - loss.view(n, k)

    def _check_sigma(self, box: BlackBox, run: _Run, idx: torch.Tensor, iteration: int) -> None:
        """A grown sigma returns to its initial value once two random probes at that value
        both see the objective change."""
        rows = idx[self._sigma_checked(run, idx, iteration)]
        if len(rows):
            probes = _rms_one(_gaussian(run.streams, rows, 2, run.x.shape[1:], run.x.device), 2)
            initial = torch.full((len(rows),), self.sigma, device=run.x.device)
            moved = (self._differences(box, run, rows, probes, initial) != 0).all(1)
            run.sigma[rows[moved]] = self.sigma

    def _estimate_norm(self, box: BlackBox, run: _Run, idx: torch.Tensor) -> None:
        probes = _rms_one(_gaussian(run.streams, idx, self.norm_probes, run.x.shape[1:],
                                    run.x.device), 2)
        diffs = self._differences(box, run, idx, probes, run.sigma[idx])
        run.norm_sq[idx] = (diffs / run.sigma[idx][:, None]).pow(2).mean(1)

    def _along_prior(self, box: BlackBox, run: _Run, idx: torch.Tensor,
                     prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The difference along the prior per image, doubling sigma while it is exactly 0.
        Returns it and which images are still going (a retry they cannot afford stops
        them)."""
        diff = self._differences(box, run, idx, prior[:, None], run.sigma[idx]).squeeze(1)
        live = torch.ones(len(idx), dtype=torch.bool, device=idx.device)
        while True:
            flat = live & (diff == 0)
            if not flat.any():
                return diff, live
            run.sigma[idx[flat]] *= 2
            live[flat] = self._afford(run, box, idx[flat], 1 + 1)
            again = flat & live
            if again.any():
                diff[again] = self._differences(box, run, idx[again], prior[again][:, None],
                                                run.sigma[idx[again]]).squeeze(1)

    def _sampled(self, box: BlackBox, run: _Run, idx: torch.Tensor, prior: torch.Tensor | None,
                 lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampled gradient estimate for images ``idx`` (``samples`` directions mixing
        the prior by ``lam``), multiplying sigma by 5 while it is all zero. Returns it and
        which images are still going."""
        shape = run.x.shape[1:]
        noise = _gaussian(run.streams, idx, self.samples, shape, run.x.device)
        if prior is None:
            directions = _rms_one(noise, 2)
        else:
            p = prior[:, None]
            along = (noise * p).flatten(2).sum(2) / p.flatten(2).pow(2).sum(2)
            noise = _rms_one(noise - along.view(*along.shape, *([1] * len(shape))) * p, 2)
            w = lam.view(-1, 1, *([1] * len(shape)))
            directions = (1 - w).sqrt() * noise + w.sqrt() * p
        estimate = torch.zeros(len(idx), *shape, device=run.x.device)
        live = self._afford(run, box, idx, self.samples + 1)
        todo = live.clone()
        while todo.any():
            diffs = self._differences(box, run, idx[todo], directions[todo], run.sigma[idx[todo]])
            estimate[todo] = (diffs.view(*diffs.shape, *([1] * len(shape)))
                              * directions[todo]).mean(1)
            zero = torch.zeros_like(todo)
            zero[todo] = estimate[todo].flatten(1).abs().amax(1) == 0
            run.sigma[idx[zero]] *= 5
            live[zero] = self._afford(run, box, idx[zero], self.samples + 1)
            todo = zero & live
        return estimate, live

    def _step(self, source: nn.Module | None, box: BlackBox, run: _Run, idx: torch.Tensor,
              iteration: int, trace: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration's gradient estimate for images ``idx``; returns it and which of
        them are still going."""
        self._check_sigma(box, run, idx, iteration)
        prior = self.prior(source, run.x_adv[idx], run.y[idx])
        if prior is None:
            lam = torch.zeros(len(idx), device=run.x.device)
            live = torch.ones(len(idx), dtype=torch.bool, device=run.x.device)
        else:
            if self._norm_iteration(iteration):
                self._estimate_norm(box, run, idx)
            diff, live = self._along_prior(box, run, idx, prior)
            norm = (run.norm_sq[idx] * run.x[0].numel()).sqrt().clamp_min(1e-12)
            alpha = diff / run.sigma[idx] / norm
            prior = prior * torch.where(alpha < 0, -1.0, 1.0).view(-1, *([1] * (prior.dim() - 1)))
            lam = prior_weight(alpha.abs(), run.x[0].numel(), self.samples)
        trace["lambda"].extend(lam[live].tolist())
        estimate = torch.zeros_like(run.x_adv[idx]) if prior is None else prior.clone()
        sample = live & (lam < 1)
        if sample.any():
            part, going = self._sampled(box, run, idx[sample], None if prior is None
                                        else prior[sample], lam[sample])
            estimate[sample] = part
            live[sample] = going
        return estimate, live

    def __call__(self, source: nn.Module | None, target: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, budget: Budget, ids: torch.Tensor | None = None) -> AttackResult:
        run, box = self._begin(target, x, y, budget, x, self._streams(ids, len(y)))
        trace: dict[str, list] = {"lambda": []}
        norm = NORMS.get(budget.norm)
        iteration = 0
        while self._going(run, budget, iteration):
            idx = run.active.nonzero().squeeze(1)
            estimate, live = self._step(source, box, run, idx, iteration, trace)
            idx, estimate = idx[live], estimate[live]
            iteration += 1
            if len(idx):
                step = run.x_adv[idx] + self.step_size * norm.step(estimate)
                run.x_adv[idx] = norm.project(step, x[idx], budget.eps)
                loss, ok = self._margin(box, run.x_adv[idx], idx, y[idx])
                self._settle(run, idx, loss, ok, box, iteration)
        return self._result(run, box, trace)


@ATTACKS.register("rgf")
@dataclass
class RGF(PRGF):
    """Random gradient-free estimation (Nesterov & Spokoiny): P-RGF with no prior, so every
    iteration samples ``samples`` random directions. Queries per iteration: samples + 1."""

    needs_source = False
    ignores = ("norm_probes",)
    entry_knobs = {}

    def _cost(self, iteration: int, run: _Run, idx: torch.Tensor) -> torch.Tensor | int:
        return 2 * self._sigma_checked(run, idx, iteration).long() + self.samples + 1

    def __call__(self, source: nn.Module | None, target: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, budget: Budget, ids: torch.Tensor | None = None) -> AttackResult:
        return super().__call__(None, target, x, y, budget, ids)


@ATTACKS.register("square")
@dataclass
class Square(QueryAttack):
    """Square Attack, L-inf (Andriushchenko et al., ECCV 2020): the strong no-prior baseline.

    Starts from random vertical stripes at the ball's corners; each iteration proposes a
    random square (side shrinking on the reference's schedule) set to +-eps per channel, and
    keeps it where the margin falls. As in the reference implementation, a proposal that
    would leave the image unchanged is redrawn before it is sent. One query per image per
    iteration.
    """

    p_init: float = knob(0.05, "initial fraction of the image's pixels per square",
                         number(above=0, maximum=1))
    needs_source = False
    norms = ("linf",)

    def _side(self, iteration: int, budget: int, h: int, w: int) -> int:
        """The square's side: the reference's schedule of its share ``p`` of the image,
        rescaled from 10,000 iterations to ``budget`` (``iteration`` counts from 0), at
        least 1 and below the image's side."""
        i = int(iteration / budget * 10000)
        halvings = sum(i > b for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
        side = int(round(math.sqrt(self.p_init / 2 ** halvings * h * w)))
        return min(max(side, 1), min(h, w) - 1)

    def _propose(self, run: _Run, idx: torch.Tensor, side: int, eps: float) -> torch.Tensor:
        """Per image of ``idx``: its current point with one random ``side``-square set to a
        corner of the ball per channel, signs redrawn until the square changes the image."""
        c, h, w = run.x.shape[1:]
        proposals = run.x_adv[idx].clone()
        for j, r in enumerate(idx.tolist()):
            g = run.streams[r]
            top = int(torch.randint(0, h - side, (1,), generator=g))
            left = int(torch.randint(0, w - side, (1,), generator=g))
            window = (slice(None), slice(top, top + side), slice(left, left + side))
            while True:
                signs = torch.randint(0, 2, (c, 1, 1), generator=g).to(run.x.device) * 2.0 - 1
                corner = (run.x[r][window] + eps * signs).clamp(0, 1)
                if (corner - run.x_adv[r][window]).abs().amax() >= 1e-7:
                    break
            proposals[j][window] = corner
        return proposals

    def __call__(self, source: nn.Module | None, target: nn.Module, x: torch.Tensor,
                 y: torch.Tensor, budget: Budget, ids: torch.Tensor | None = None) -> AttackResult:
        if budget.norm not in self.norms:
            raise ValueError(f"square: only the {', '.join(self.norms)} norm is implemented")
        streams = self._streams(ids, len(y))
        c, h, w = x.shape[1:]
        stripes = torch.stack([torch.randint(0, 2, (c, 1, w), generator=g) for g in streams])
        start = (x + budget.eps * (stripes.to(x.device).float() * 2 - 1)).clamp(0, 1)
        run, box = self._begin(target, x, y, budget, start if budget.eps > 0 else x, streams)
        iteration = 0
        while self._going(run, budget, iteration):
            idx = run.active.nonzero().squeeze(1)
            proposal = self._propose(run, idx, self._side(iteration, budget.queries, h, w),
                                     budget.eps)
            iteration += 1
            loss, ok = self._margin(box, proposal, idx, y[idx])
            better = loss < run.loss[idx]
            run.x_adv[idx] = torch.where(better.view(-1, 1, 1, 1), proposal, run.x_adv[idx])
            self._settle(run, idx, torch.minimum(loss, run.loss[idx]), ok & better, box, iteration)
        return self._result(run, box, {})
