"""Defenses: fine-tune a published sibling so it stops helping attack its full model.

A registry of defenses; ``unpair`` (similarity-unpairing) is the first. It fine-tunes the
sibling, still in its compressed form, on cross-entropy plus ``lam`` times the similarity of
its input gradients to the frozen full model's, taken at the clean images or at points an
attack would visit (double backpropagation; the fake quantizers' straight-through
estimator passes the second derivative through; weights that pruning set to zero stay
zero). Every defense is judged against a ``lam = 0`` control with the same
schedule, because fine-tuning alone moves accuracy and transfer; a defended sibling that
loses more accuracy than ``tolerance`` points is marked failed, not used silently.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from siblings.data import Splits
from siblings.engine import within_points
from siblings.gradients import input_gradient, twice_differentiable
from siblings.knobs import BOOLEAN, STRING, Knob, integer, names, number, one_of
from siblings.logs import log
from siblings.models import SiblingNet
from siblings.registry import Registry
from siblings.train import minibatches, one_cycle

# How the per-image similarity of the sibling's input gradient to the full model's becomes
# the penalty: (g_sibling, g_full, params) -> one value per image, minimised. ``cosine``
# pushes the cosine c towards -1 (the reversed gradient then helps an attacker, and P-RGF
# flips a prior's sign by itself); ``abs`` and ``squared`` push towards orthogonal
# gradients, which no sign flip undoes; ``sign`` towards sign steps that do not move the
# full model.
Form = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]
FORMS: Registry[Form] = Registry("similarity form")
FORMS.register("cosine")(lambda g_sib, g_full, p: F.cosine_similarity(g_sib, g_full))
FORMS.register("abs")(lambda g_sib, g_full, p: F.cosine_similarity(g_sib, g_full).abs())
FORMS.register("squared")(lambda g_sib, g_full, p: F.cosine_similarity(g_sib, g_full).square())


@FORMS.register("sign")
def sign_agreement(g_sib: torch.Tensor, g_full: torch.Tensor, p: dict) -> torch.Tensor:
    """|sum_i g_full_i * tanh(k g_sib_i / rms(g_sib))| / sum_i |g_full_i| per image, with
    ``k = sign_sharpness``: a differentiable stand-in for the full model's first-order
    margin change under an L-inf step along sign(g_sib), over that of its own best step.

    L-inf attackers step along the sign of the sibling's gradient, not along the gradient,
    so orthogonal gradients (cosine 0) can still share the signs of the coordinates where
    the full model is steep. Weighting by |g_full| counts those coordinates; a plain count
    of agreeing signs could be met by flipping flat background pixels. The absolute value
    aims at chance agreement (0), not at reversed signs, which a reversed attacker undoes.
    """
    rms = g_sib.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
    soft_sign = torch.tanh(p["sign_sharpness"] * g_sib / rms)
    return ((soft_sign * g_full).sum(1) / g_full.abs().sum(1).clamp_min(1e-12)).abs()


# Where the gradients are compared: (sibling, images, labels, params, generator) -> one
# point per image, at which both models' input gradients are taken. An attack takes steps
# away from the clean image; a penalty applied only there need not hold a step away.
Points = Callable[[nn.Module, torch.Tensor, torch.Tensor, dict, torch.Generator], torch.Tensor]
POINTS: Registry[Points] = Registry("penalty points")
STEP_FACTOR = 2.5  # a PGD step is STEP_FACTOR * radius / steps, as the transfer attack's default


def ball_point(x: torch.Tensor, radius: float, gen: torch.Generator) -> torch.Tensor:
    """A uniform random point of the L-inf ball of ``radius`` around each image, in [0, 1]."""
    noise = torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1
    return (x + radius * noise).clamp(0, 1)


@POINTS.register("pgd")
def pgd_point(model: nn.Module, x: torch.Tensor, y: torch.Tensor, p: dict,
              gen: torch.Generator) -> torch.Tensor:
    """The sibling's own L-inf PGD iterate after ``points_steps`` steps on its margin from a
    random point of the ball of ``radius``: where a transfer attacker crafting on the
    sibling takes its gradients. Costs ``points_steps`` plain input gradients of the
    sibling (no double backward) on the penalised images."""
    radius, steps = p["radius"], p["points_steps"]
    point = ball_point(x, radius, gen)
    for _ in range(steps):
        _, grad = input_gradient(model, point, y)
        point = point - STEP_FACTOR * radius / steps * grad.view_as(x).sign()
        point = torch.min(torch.max(point, x - radius), x + radius).clamp(0, 1)
    return point.detach()


POINTS.register("clean")(lambda model, x, y, p, gen: x)
POINTS.register("ball")(lambda model, x, y, p, gen: ball_point(x, p["radius"], gen))

# The keys in which the defenses of one variant may differ: a variant is one penalty, tried
# at several lam on some siblings and architectures.
PER_CANDIDATE_KEYS = ("lam", "archs", "siblings", "control", "adaptive")


def variant_name(params: dict) -> str:
    """The penalty a defense applies, by its ``variant`` key or else its form and points."""
    return params.get("variant") or f"{params['form']}/{params['points']}"


def variant_settings(params: dict) -> dict:
    """The settings every defense of one variant shares."""
    return {k: v for k, v in params.items() if k not in PER_CANDIDATE_KEYS}


def selected_lam(calibration_losses: dict[float, tuple[int, int]],
                 tolerance: float) -> float | None:
    """The rule lam is chosen by, per sibling and variant: the largest penalty whose accuracy
    cost on the calibration split (images lost, of how many) stays within ``tolerance``
    points; None where none does. The test split, which the results report, never enters."""
    within = [lam for lam, (lost, n) in calibration_losses.items()
              if lam > 0 and within_points(lost, n, tolerance)]
    return max(within, default=None)


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
    ``needs`` names the capabilities of the sibling's architecture it relies on; ``knobs``
    are its own config keys (beside :data:`ENTRY_KNOBS`), ``doc`` what it does."""

    run: Callable[[SiblingNet, DefenseJob], dict]
    needs: tuple[str, ...] = ()
    knobs: dict[str, Knob] = field(default_factory=dict)
    doc: str = ""


# The keys of every defense's config entry: what the planner and the report read.
ENTRY_KNOBS = {
    "method": Knob(STRING, "the registered defense method", required=True),
    "lam": Knob(number(0), "weight of the penalty; 0 = the control (fine-tuning alone)",
                required=True),
    "tolerance": Knob(number(0, 100), "accuracy points the defended sibling may lose; lam is "
                      "selected within it on the calibration split, and a defended sibling "
                      "that loses more on the test split is reported as failed", 2.0),
    "siblings": Knob(names(), "compression ids to defend", required=True),
    "archs": Knob(names(), "architectures to defend (default: all of the run)"),
    "adaptive": Knob(BOOLEAN, "the adaptive attackers (roles reversed, extracted, averaged) "
                     "attack it too (lam > 0 only)", True),
    "control": Knob(STRING, "the lam = 0 defense with the same schedule this one is measured "
                    "against (required when lam > 0)"),
    "variant": Knob(STRING, "the penalty this defense tries at its lam (default: form/points); "
                    "lam is chosen among a variant's defenses, per sibling, on the "
                    "calibration split"),
}


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


def _record(step: int, ce: torch.Tensor, g_sib: torch.Tensor, g_full: torch.Tensor,
            similarity: torch.Tensor) -> dict:
    """What a logged step records: the loss, the penalty, the gradient cosine, the
    fraction of coordinates whose gradient signs agree (0.5 is chance) and the sibling's
    gradient norm, on the penalised images at the penalty's points."""
    g_sib = g_sib.detach()
    values = {"ce": ce, "cosine": F.cosine_similarity(g_sib, g_full).mean(),
              "penalty": similarity.mean(),
              "sign_agreement": (g_sib.sign() == g_full.sign()).float().mean(),
              "grad_norm": g_sib.norm(dim=1).mean()}
    return {"step": step, **{k: round(float(v.detach()), 4) for k, v in values.items()}}


def unpair(model: SiblingNet, job: DefenseJob) -> dict:
    """Similarity-unpairing: minimise ``CE + lam * form(grad sibling, grad full) +
    smoothness * |grad sibling|``, both gradients taken at the same ``points`` (the clean
    images, random points of the ball, or the sibling's PGD iterates). The smoothness term
    (as in TRS) keeps the sibling's gradients small, so orthogonality at the clean image
    still holds a step away from it.

    The sibling runs in eval mode: batch-norm statistics and quantizer ranges stay as
    compressed, and the gradients it is trained on are the ones an attacker will see.
    The gradient terms are averaged over the first ``penalty_batch`` images of each batch:
    the double backward costs 3x a plain step at 128 images, about a third of that at 32.
    """
    p = job.params
    form, points = FORMS.get(p["form"]), POINTS.get(p["points"])
    x, y = job.splits.images("train"), job.splits.labels("train")
    batches = minibatches(len(y), p["batch_size"], p["epochs"], job.seed)
    opt, sched = one_cycle([w for w in model.parameters() if w.requires_grad], p["lr"], 0.0,
                           len(batches))
    masks = _zero_masks(model)
    gen = torch.Generator().manual_seed(job.seed)  # the random points (clean draws none)
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
                at = points(model, x[sub], y[sub], p, gen)
                _, g_full = input_gradient(job.full, at, y[sub])
                _, g_sib = input_gradient(model, at, y[sub], create_graph=penalised)
                similarity = form(g_sib, g_full, p)
            ce = F.cross_entropy(model(x[idx]), y[idx])
            loss = ce + (p["lam"] * similarity.mean()
                         + p["smoothness"] * g_sib.norm(dim=1).mean() if penalised else 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for weight, keep in masks:
                    weight.mul_(keep)
            if logged:
                history.append(_record(step, ce, g_sib, g_full, similarity))
                log.info("step %d: %s", step, history[-1])
    return {"history": history, "steps": len(batches), "masked_weights": len(masks)}


DEFENSES.register("unpair")(Defense(unpair, needs=("double_backward",), knobs={
    "form": Knob(one_of(*FORMS.names()), "the penalty on the gradient cosine c: cosine (c), "
                 "abs (|c|), squared (c^2), or sign: the soft sign agreement weighted by the "
                 "full model's |gradient|", "abs"),
    "points": Knob(one_of(*POINTS.names()), "where both gradients are taken: the clean images, "
                   "a random point of the L-inf ball of radius, or the sibling's own PGD "
                   "iterate after points_steps steps from one", "clean"),
    "radius": Knob(number(above=0, maximum=1), "L-inf radius of the ball and the PGD", 0.05,
                   when={"points": ("ball", "pgd")}),
    "points_steps": Knob(integer(1), f"the sibling's PGD steps ({STEP_FACTOR} * radius / steps "
                         "each) per penalised batch", 3, when={"points": ("pgd",)}),
    "sign_sharpness": Knob(number(above=0), "k in tanh(k * g / rms(g)), the soft sign of the "
                           "sibling's gradient", 5.0, when={"form": ("sign",)}),
    "smoothness": Knob(number(0), "weight of the sibling's input-gradient norm penalty (TRS)",
                       0.0),
    "epochs": Knob(number(above=0), "fine-tuning epochs", 0.5),
    "lr": Knob(number(above=0), "learning rate (AdamW, one-cycle)", 0.001),
    "batch_size": Knob(integer(1), "fine-tuning batch size", 128),
    "penalty_batch": Knob(integer(2), "the first images of each batch the gradient terms are "
                          "averaged over (the double backward's cost scales with it)", 32),
}, doc="similarity-unpairing: fine-tune the sibling, still compressed, on cross-entropy + lam "
       "x form(its input gradient, the full model's, both at points) + smoothness x its "
       "input-gradient norm"))
