"""The ``attack`` stage: adversarial examples crafted on a source model, scored on the target.

Attacks register under a method name and share a small base class whose hooks (loss,
gradient, update, projection) a new attack overrides. Images live in [0, 1] pixel space
and never leave the L-inf eps-ball; gradients flow through quantized siblings by STE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from siblings.artifacts import atomic_path
from siblings.compress import load_model
from siblings.engine import load_splits, predict, setup_torch
from siblings.logs import log, log_to
from siblings.registry import Registry

SOURCE_ROLES = ("sibling", "independent", "whitebox")


@dataclass
class TransferAttack:
    """Iterative L-inf attack on a white-box source; subclasses override the hooks."""

    steps: int = 10
    step_size_factor: float = 2.5
    random_start: bool = False

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Untargeted: raise the loss of the true label."""
        return nn.functional.cross_entropy(logits, y, reduction="sum")

    def gradient(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(self.loss(model(x), y), x)[0]

    def update(self, x_adv: torch.Tensor, grad: torch.Tensor, step_size: float,
               state: dict) -> torch.Tensor:
        return x_adv + step_size * grad.sign()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Adversarial images within ``eps`` of ``x`` (L-inf) that raise ``model``'s loss on ``y``."""
        if eps == 0:
            return x.clone()
        model.eval()
        x_adv = x.clone()
        if self.random_start:
            noise = torch.rand(x.shape, generator=generator) * 2 - 1
            x_adv = self.project(x + eps * noise, x, eps)
        step_size = self.step_size_factor * eps / self.steps
        state: dict = {}
        for _ in range(self.steps):
            grad = self.gradient(model, x_adv, y)
            x_adv = self.project(self.update(x_adv.detach(), grad, step_size, state), x, eps)
        return x_adv.detach()


ATTACKS: Registry[type[TransferAttack]] = Registry("attack method")


@ATTACKS.register("pgd")
class PGD(TransferAttack):
    """Projected gradient descent with signed steps (Madry et al.)."""


def attack_set(target: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded set of ``n`` test images the target classifies correctly (same for every source)."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    correct = predict(target, x[order]) == y[order]
    chosen = order[correct][:n]
    if len(chosen) < n:
        log.info("only %d correctly classified images available (asked for %d)", len(chosen), n)
    return x[chosen], y[chosen]


def success_rates(attack: TransferAttack, source: nn.Module, target: nn.Module, x: torch.Tensor,
                  y: torch.Tensor, eps: float, batch_size: int, seed: int) -> dict[str, float]:
    """Crafts on ``source`` at ``eps``; success = the target misclassifies (untargeted)."""
    g = torch.Generator().manual_seed(seed)
    fooled_target = fooled_source = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        x_adv = attack.perturb(source, xb, yb, eps, g)
        fooled_target += (predict(target, x_adv) != yb).sum().item()
        fooled_source += (predict(source, x_adv) != yb).sum().item()
    n = len(y)
    return {"n_success": fooled_target, "success_rate": fooled_target / n,
            "source_success_rate": fooled_source / n}


def run(data: str, target_path: str, source_path: str, out: str, attack_id: str, params: dict,
        role: str, source_id: str, code_version: str, job_config_hash: str,
        log_file: str | None = None, threads: int = 1) -> None:
    """Runs attack ``attack_id`` from one source against the full target at every eps; one row per eps."""
    with log_to(log_file):
        setup_torch(threads, params["seed"])
        splits = load_splits(data)
        target, target_meta = load_model(target_path)
        source, source_meta = load_model(source_path)
        knobs = {k: params[k] for k in ("steps", "step_size_factor", "random_start")}
        attack = ATTACKS.get(params["method"])(**knobs)
        x, y = attack_set(target, splits.images("test"), splits.labels("test"),
                          params["n_examples"], params["seed"])
        rows = []
        for eps in tqdm(params["eps"], desc=f"{attack_id} {role}/{source_id}"):
            start = time.time()
            rates = success_rates(attack, source, target, x, y, eps, params["batch_size"],
                                  params["seed"])
            log.info("eps %.4f: target fooled %.1f%%, source fooled %.1f%% (%.1f s)", eps,
                     100 * rates["success_rate"], 100 * rates["source_success_rate"],
                     time.time() - start)
            rows.append({
                "dataset": splits.meta["dataset"], "arch": target_meta["spec"]["arch"],
                "compression": source_meta.get("compression_id") or "none",
                "compression_family": source_meta.get("family") or "none",
                "defense": "none", "attack": attack_id, "attack_method": params["method"],
                "source_role": role, "source_id": source_id,
                "source_arch": source_meta["spec"]["arch"], "eps": float(eps),
                "steps": params["steps"], "n_examples": len(y), **rates,
                "target_clean_acc": target_meta["test_accuracy"],
                "source_clean_acc": source_meta["test_accuracy"],
                "seed": params["seed"], "job_config_hash": job_config_hash,
                "code_version": code_version,
            })
        with atomic_path(out) as tmp:
            pd.DataFrame(rows).to_parquet(tmp, index=False)
