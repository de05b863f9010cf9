"""An attack as a config entry runs it: built from its knobs, on a seeded image set, in
batches, summarised into the fields of one result row.

The attacks themselves live beside this module; the ``attack`` stage calls these helpers
for every source of a role and writes what the report needs: success rates, and for query
attacks every image's queries at success (the curves).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from siblings.attacks.base import ATTACKS, CHUNK, Attack, AttackResult, Budget
from siblings.engine import eval_mode, fixed_forward
from siblings.knobs import STRING, Knob, integer, names, number, one_of, per_device
from siblings.logs import log


# The keys of every attack's config entry, which the stage reads rather than the attack.
ENTRY_KNOBS = {
    "method": Knob(STRING, "the registered attack method", required=True),
    "eps": Knob({**names(), "items": number(above=0)}, "radii in pixel units; L-inf radii lie "
                "in (0, 1]", required=True),
    "n_examples": Knob(integer(1), "seeded test images the target classifies correctly", 500),
    "batch_size": Knob(per_device(integer(1)), "images per attack call", 250),
}
# ... of an attack that takes a source (transfer attacks, P-RGF's prior).
SOURCE_KNOBS = {
    "roles": Knob(names(), "source roles it attacks from (default: source_roles)"),
    "siblings": Knob(names(), "compression ids the sibling and defended roles attack from "
                     "(default: all)"),
    "defenses": Knob(names(), "defense ids the defended and adaptive roles attack from "
                     "(default: all)"),
}
# ... of a query attack.
QUERY_KNOBS = {
    "queries": Knob(integer(1), "hard budget of target queries per image", required=True),
}


def norm_knob(cls: type[Attack]) -> Knob:
    return Knob(one_of(*cls.norms), "the norm of the ball", "linf")


def own_knobs(cls: type[Attack]) -> dict[str, Knob]:
    """The keys of ``cls``'s entry beyond those of every attack of its kind."""
    return {"norm": norm_knob(cls)} | cls.entry_knobs | cls.knobs()


def entry_knobs(cls: type[Attack]) -> dict[str, Knob]:
    """Every key of a config entry for attack class ``cls``."""
    return (ENTRY_KNOBS | (SOURCE_KNOBS if cls.needs_source else {})
            | (QUERY_KNOBS if cls.is_query else {}) | own_knobs(cls))


def build(params: dict) -> Attack:
    """The attack a validated config entry describes. A key that is neither the attack's
    knob nor its entry's is an error, never silently dropped."""
    cls = ATTACKS.get(params["method"])
    unknown = set(params) - set(entry_knobs(cls))
    if unknown:
        raise ValueError(f"attack method '{params['method']}' takes no {sorted(unknown)}")
    return cls(**{k: v for k, v in params.items() if k in cls.knobs()})


def attack_set(target: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n: int,
               seed: int, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images, in a seeded order, that the target classifies correctly
    (the same for every source), scored on the attack's fixed ``chunk`` shape. Scored in
    steps until ``n`` are found: every attack job would otherwise classify the whole test
    set."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    found: list[torch.Tensor] = []
    for start in range(0, len(order), 2 * n):
        idx = order[start:start + 2 * n]
        with torch.no_grad(), eval_mode(target):
            pred = fixed_forward(target, x[idx], chunk).argmax(1)
        found.append(idx[(pred == y[idx]).cpu()])
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
