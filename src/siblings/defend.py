"""Defenses: fine-tune a published sibling so it stops helping attack its full model.

A registry of defenses; ``unpair`` (similarity-unpairing) is the first. It fine-tunes the
sibling, still in its compressed form, on cross-entropy plus ``lam`` times the similarity of
its input gradients to the frozen full model's (double backpropagation; the fake quantizers'
straight-through estimator passes the second derivative through; weights that pruning set
to zero stay zero). Every defense is judged against a ``lam = 0`` control with the same
schedule, because fine-tuning alone moves accuracy and transfer; a defended sibling that
loses more accuracy than ``tolerance`` points is marked failed, not used silently.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from siblings.data import Splits
from siblings.gradients import input_gradient, twice_differentiable
from siblings.logs import log
from siblings.models import SiblingNet
from siblings.registry import Registry
from siblings.train import minibatches, one_cycle

# How the per-image gradient cosine c becomes the penalty. ``cosine`` pushes c towards -1
# (the reversed gradient then helps an attacker, and P-RGF flips a prior's sign by itself);
# ``abs`` and ``squared`` push towards orthogonal gradients, which no sign flip undoes.
FORMS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("similarity form")
FORMS.register("cosine")(lambda c: c)
FORMS.register("abs")(torch.abs)
FORMS.register("squared")(torch.square)

CHECK_IMAGES = 500  # held-out calibration images on which the similarity is logged before/after


@dataclass(frozen=True)
class DefenseJob:
    """What a defense may use: the data, its config entry, the seed, the frozen full model."""

    splits: Splits
    params: dict
    seed: int
    full: SiblingNet


@dataclass(frozen=True)
class Defense:
    """A defense: ``run`` fine-tunes the sibling in place and returns what it measured;
    ``needs`` names the capabilities of the sibling's architecture it relies on."""

    run: Callable[[SiblingNet, DefenseJob], dict]
    needs: tuple[str, ...] = ()


DEFENSES: Registry[Defense] = Registry("defense method")


def mean_cosine(full: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean input-gradient cosine of ``model`` with ``full`` on ``x``."""
    _, a = input_gradient(full, x, y)
    _, b = input_gradient(model, x, y)
    return float(F.cosine_similarity(a, b).mean())


def _zero_masks(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, keep) for every conv/linear weight with exact zeros: pruning masks to keep."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return [(w, w != 0) for w in weights if bool((w == 0).any())]


def unpair(model: SiblingNet, job: DefenseJob) -> dict:
    """Similarity-unpairing: minimise ``CE + lam * form(cos(grad sibling, grad full)) +
    smoothness * |grad sibling|``. The smoothness term (as in TRS) keeps the sibling's
    gradients small, so orthogonality at the clean image still holds a step away from it.

    The sibling runs in eval mode: batch-norm statistics and quantizer ranges stay as
    compressed, and the gradients it is trained on are the ones an attacker will see.
    The gradient terms are averaged over the first ``penalty_batch`` images of each batch:
    the double backward costs 3x a plain step at 128 images, about a third of that at 32.
    """
    p = job.params
    form = FORMS.get(p["form"])
    x, y = job.splits.images("train"), job.splits.labels("train")
    batches = minibatches(len(y), p["batch_size"], p["epochs"], job.seed)
    opt, sched = one_cycle([w for w in model.parameters() if w.requires_grad], p["lr"], 0.0,
                           len(batches))
    masks = _zero_masks(model)
    # Without a gradient penalty (the lam = 0 control) the input gradient is not trained on:
    # plain fine-tuning, with the cosine logged at the check points only.
    penalised = p["lam"] > 0 or p["smoothness"] > 0
    model.eval()
    history = []
    # Only a penalised run differentiates input gradients again.
    with twice_differentiable(model) if penalised else nullcontext():
        bar = tqdm(batches, desc=f"unpair lam={p['lam']}", mininterval=5.0)
        for step, idx in enumerate(bar):
            logged = step % 25 == 0 or step == len(batches) - 1
            if penalised or logged:
                sub = idx[:p["penalty_batch"]]
                _, g_full = input_gradient(job.full, x[sub], y[sub])
                _, g_sib = input_gradient(model, x[sub], y[sub], create_graph=penalised)
                cos = F.cosine_similarity(g_sib, g_full)
            ce = F.cross_entropy(model(x[idx]), y[idx])
            loss = ce + (p["lam"] * form(cos).mean() + p["smoothness"] * g_sib.norm(dim=1).mean()
                         if penalised else 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for weight, keep in masks:
                    weight.mul_(keep)
            if logged:
                history.append({"step": step, "ce": round(float(ce.detach()), 4),
                                "cosine": round(float(cos.detach().mean()), 4),
                                "grad_norm": round(float(g_sib.detach().norm(dim=1).mean()), 4)})
                log.info("step %d: %s", step, history[-1])
    return {"history": history, "steps": len(batches), "masked_weights": len(masks)}


DEFENSES.register("unpair")(Defense(unpair, needs=("double_backward",)))
