"""An attack as a config entry runs it: built from its knobs, on a seeded image set, in
batches, summarised into the fields of one result row.

The attacks themselves live beside this module; the ``attack`` stage calls these helpers
for every source of a role and writes what the report needs: success rates, and for query
attacks every image's queries at success (the curves).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from siblings.attacks.base import ATTACKS, Attack, AttackResult, Budget
from siblings.engine import predict
from siblings.logs import log


def build(params: dict) -> Attack:
    """The attack a config entry describes: its method's class with the knobs it defines."""
    cls = ATTACKS.get(params["method"])
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in fields})


def attack_set(target: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images, in a seeded order, that the target classifies correctly
    (the same for every source). Scored in chunks until ``n`` are found: every attack job
    would otherwise classify the whole test set."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    found: list[torch.Tensor] = []
    for start in range(0, len(order), 2 * n):
        idx = order[start:start + 2 * n]
        found.append(idx[(predict(target, x[idx]) == y[idx]).cpu()])
        if sum(len(f) for f in found) >= n:
            break
    chosen = torch.cat(found)[:n]
    if len(chosen) < n:
        log.info("only %d correctly classified images available (asked for %d)", len(chosen), n)
    return x[chosen], y[chosen]


def target_classes(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """For targeted attacks: a seeded random class other than the true one, per image."""
    shift = torch.randint(1, num_classes, y.shape, generator=torch.Generator().manual_seed(seed))
    return (y + shift.to(y.device)) % num_classes


def run_batched(attack: Attack, source: torch.nn.Module | None, target: torch.nn.Module,
                x: torch.Tensor, y: torch.Tensor, budget: Budget, batch_size: int) -> AttackResult:
    """``attack`` over ``x`` in batches; the per-image results concatenated."""
    starts = tqdm(range(0, len(y), batch_size), desc=f"{type(attack).__name__} batches",
                  mininterval=30, leave=False)
    parts = [attack(source, target, x[i:i + batch_size], y[i:i + batch_size], budget,
                    torch.arange(i, min(i + batch_size, len(y))))
             for i in starts]
    lambdas = [v for p in parts for v in p.trace.get("lambda", [])]
    return AttackResult(
        torch.cat([p.x_adv for p in parts]), torch.cat([p.success for p in parts]),
        torch.cat([p.queries for p in parts]),
        None if parts[0].source_success is None else torch.cat([p.source_success for p in parts]),
        {"lambda": lambdas} if lambdas else {})


def summary(result: AttackResult) -> dict:
    """The row fields of one result. Query statistics are over successes only, so they are
    biased low by censoring: failures spent the whole budget and are not in them."""
    success = result.success.cpu().numpy()
    queries = result.queries.cpu().numpy().astype(float)
    at_success = np.where(success, queries, np.nan)
    lambdas = np.asarray(result.trace.get("lambda", []), dtype=float)
    return {
        "n_success": int(success.sum()), "success_rate": float(success.mean()),
        "image_success": success.astype(bool).tolist(),
        "source_success_rate": (np.nan if result.source_success is None
                                else float(result.source_success.float().mean().cpu())),
        "queries_at_success": at_success.tolist(),
        "mean_queries_success": float(np.nanmean(at_success)) if success.any() else np.nan,
        "median_queries_success": float(np.nanmedian(at_success)) if success.any() else np.nan,
        "prior_lambda_one": float((lambdas >= 1).mean()) if len(lambdas) else np.nan,
    }
