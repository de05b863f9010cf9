"""The ``attack`` stage: one attack from every source of one role against one full target,
one row per (source, eps).

The attacks themselves live in :mod:`siblings.attacks`; this stage picks the images, builds
the attack from its config entry, runs it in batches and writes what the report needs:
success rates, and for query attacks every image's queries at success (the curves).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from siblings.artifacts import atomic_path
from siblings.attacks import ATTACKS, AttackResult, Budget
from siblings.attacks.base import Attack
from siblings.compress import load_model
from siblings.engine import load_splits, predict, setup_torch
from siblings.logs import log, log_to
from siblings.sources import load_source


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
        found.append(idx[predict(target, x[idx]) == y[idx]])
        if sum(len(f) for f in found) >= n:
            break
    chosen = torch.cat(found)[:n]
    if len(chosen) < n:
        log.info("only %d correctly classified images available (asked for %d)", len(chosen), n)
    return x[chosen], y[chosen]


def target_classes(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """For targeted attacks: a seeded random class other than the true one, per image."""
    shift = torch.randint(1, num_classes, y.shape, generator=torch.Generator().manual_seed(seed))
    return (y + shift) % num_classes


def run_batched(attack: Attack, source: torch.nn.Module | None, target: torch.nn.Module,
                x: torch.Tensor, y: torch.Tensor, budget: Budget, batch_size: int) -> AttackResult:
    """``attack`` over ``x`` in batches; the per-image results concatenated."""
    parts = [attack(source, target, x[i:i + batch_size], y[i:i + batch_size], budget)
             for i in range(0, len(y), batch_size)]
    lambdas = [v for p in parts for v in p.trace.get("lambda", [])]
    return AttackResult(
        torch.cat([p.x_adv for p in parts]), torch.cat([p.success for p in parts]),
        torch.cat([p.queries for p in parts]),
        None if parts[0].source_success is None else torch.cat([p.source_success for p in parts]),
        {"lambda": lambdas} if lambdas else {})


def summary(result: AttackResult) -> dict:
    """The row fields of one result. Query statistics are over successes only, so they are
    biased low by censoring: failures spent the whole budget and are not in them."""
    success = result.success.numpy()
    queries = result.queries.numpy().astype(float)
    at_success = np.where(success, queries, np.nan)
    lambdas = np.asarray(result.trace.get("lambda", []), dtype=float)
    return {
        "n_success": int(success.sum()), "success_rate": float(success.mean()),
        "source_success_rate": (np.nan if result.source_success is None
                                else float(result.source_success.float().mean())),
        "queries_at_success": at_success.tolist(),
        "mean_queries_success": float(np.nanmean(at_success)) if success.any() else np.nan,
        "median_queries_success": float(np.nanmedian(at_success)) if success.any() else np.nan,
        "prior_lambda_one": float((lambdas >= 1).mean()) if len(lambdas) else np.nan,
    }


def run(data: str, target_path: str, role: str, sources: list[dict], out: str, attack_id: str,
        params: dict, code_version: str, log_file: str | None = None, threads: int = 1) -> None:
    """Runs attack ``attack_id`` from each of ``sources`` (``{source_id, path, job_hash}``;
    path None for no-prior query attacks) against the full target at every eps of its config
    entry. One job per role: the data, the target and the attack images are loaded once, and
    the 6 s of imports a job starts with are paid once, not per source."""
    with log_to(log_file):
        setup_torch(threads, params["seed"])
        splits = load_splits(data)
        target, target_meta = load_model(target_path)
        attack = build(params)
        x, y = attack_set(target, splits.images("test"), splits.labels("test"),
                          params["n_examples"], params["seed"])
        labels = (target_classes(y, target_meta["spec"]["num_classes"], params["seed"])
                  if params["targeted"] else y)
        rows = []
        for src in sources:
            source, source_meta = load_source(role, src["path"]) if src["path"] else (None, {})
            for eps in tqdm(params["eps"], desc=f"{attack_id} {role}/{src['source_id']}"):
                start = time.time()
                budget = Budget(float(eps), params["norm"], params.get("queries"))
                stats = summary(run_batched(attack, source, target, x, labels, budget,
                                            params["batch_size"]))
                log.info("%s eps %.4f: target fooled %.1f%% (median queries over successes "
                         "%s), %.1f s", src["source_id"], eps, 100 * stats["success_rate"],
                         stats["median_queries_success"], time.time() - start)
                rows.append({
                    "dataset": splits.meta["dataset"], "arch": target_meta["spec"]["arch"],
                    "compression": source_meta.get("compression_id") or "none",
                    "compression_family": source_meta.get("family") or "none",
                    "defense": source_meta.get("defense_id") or "none", "attack": attack_id,
                    "attack_method": params["method"],
                    "attack_kind": "query" if attack.is_query else "transfer",
                    "source_role": role, "source_id": src["source_id"],
                    "source_arch": source_meta["spec"]["arch"] if source_meta else "none",
                    "norm": params["norm"], "targeted": params["targeted"], "eps": float(eps),
                    "steps": params.get("steps"), "query_budget": params.get("queries"),
                    "n_examples": len(y), **stats,
                    "target_clean_acc": target_meta["test_accuracy"],
                    "source_clean_acc": source_meta.get("test_accuracy", np.nan),
                    "seed": params["seed"], "job_config_hash": src["job_hash"],
                    "code_version": code_version,
                })
        with atomic_path(out) as tmp:
            pd.DataFrame(rows).to_parquet(tmp, index=False)
