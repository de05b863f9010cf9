"""The ``attack`` stage: one attack from every source of one role against one full target,
one row per (source, eps)."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from siblings.artifacts import write_parquet
from siblings.attacks import Budget
from siblings.attacks.batch import attack_set, build, run_batched, summary, target_classes
from siblings.checkpoints import load_model
from siblings.device import for_device
from siblings.logs import log
from siblings.sources import load_source
from siblings.stages.runner import stage


def run(data: str, target_path: str, role: str, sources: list[dict], out: str, attack_id: str,
        params: dict, code_version: str, log_file: str | None = None, threads: int = 1,
        device: str = "cpu") -> None:
    """Runs attack ``attack_id`` from each of ``sources`` (``{source_id, path, job_hash}``;
    path None for no-prior query attacks) against the full target at every eps of its config
    entry. One job per role: the data, the target and the attack images are loaded once, and
    the seconds of imports a job starts with are paid once, not per source. Knobs given per
    device (``batch_size``, ``chunk``) take the stage's device's value."""
    with stage(log_file, threads, params["seed"], device, data) as env:
        params = {k: for_device(v, env.device) for k, v in params.items()}
        splits = env.splits
        target, target_card = load_model(target_path, env.device)
        attack = build(params)
        x, y = attack_set(target, splits.images("test"), splits.labels("test"),
                          params["n_examples"], params["seed"], attack.chunk)
        labels = (target_classes(y, target_card.spec.num_classes, params["seed"])
                  if params["targeted"] else y)
        rows = []
        for src in sources:
            source, card = (load_source(role, src["path"], env.device) if src["path"]
                            else (None, None))
            for eps in tqdm(params["eps"], desc=f"{attack_id} {role}/{src['source_id']}"):
                start = time.time()
                budget = Budget(float(eps), params["norm"], params.get("queries"))
                stats = summary(run_batched(attack, source, target, x, labels, budget,
                                            params["batch_size"]))
                log.info("%s eps %.4f: target fooled %.1f%% (median queries over successes "
                         "%s), %.1f s", src["source_id"], eps, 100 * stats["success_rate"],
                         stats["median_queries_success"], time.time() - start)
                rows.append({
                    "dataset": splits.meta["dataset"], "arch": target_card.spec.arch,
                    "compression": (card and card.compression_id) or "none",
                    "compression_family": (card and card.family) or "none",
                    "defense": (card and card.defense_id) or "none", "attack": attack_id,
                    "attack_method": params["method"],
                    "attack_kind": "query" if attack.is_query else "transfer",
                    "source_role": role, "source_id": src["source_id"],
                    "source_arch": card.spec.arch if card else "none",
                    "norm": params["norm"], "targeted": params["targeted"], "eps": float(eps),
                    "steps": params.get("steps"), "query_budget": params.get("queries"),
                    "n_examples": len(y), **stats,
                    "target_clean_acc": target_card.test_accuracy,
                    "source_clean_acc": card.test_accuracy if card else np.nan,
                    "seed": params["seed"], "job_config_hash": src["job_hash"],
                    "code_version": code_version, "device": env.device_name,
                })
        write_parquet(pa.Table.from_pylist(rows), out)
