"""The analysis behind ``benchmark.parquet``: typed schemas, the joins that put every
comparison on one row, amplification and query reduction (the similarity correlations
are :mod:`siblings.correlate`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from siblings.artifacts import atomic_path
from siblings.intervals import wilson

BENCHMARK_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("arch", pa.string()), ("compression", pa.string()),
    ("compression_family", pa.string()), ("defense", pa.string()), ("attack", pa.string()),
    ("attack_method", pa.string()), ("attack_kind", pa.string()), ("source_role", pa.string()),
    ("source_id", pa.string()), ("source_arch", pa.string()), ("norm", pa.string()),
    ("targeted", pa.bool_()), ("eps", pa.float64()), ("steps", pa.int64()),
    ("query_budget", pa.int64()), ("n_examples", pa.int64()), ("n_success", pa.int64()),
    ("success_rate", pa.float64()), ("success_ci_low", pa.float64()),
    ("success_ci_high", pa.float64()), ("source_success_rate", pa.float64()),
    ("queries_at_success", pa.list_(pa.float64())), ("mean_queries_success", pa.float64()),
    ("median_queries_success", pa.float64()), ("prior_lambda_one", pa.float64()),
    ("amplification", pa.float64()), ("baseline_attack", pa.string()),
    ("baseline_success_rate", pa.float64()), ("baseline_queries_needed", pa.float64()),
    ("queries_needed", pa.float64()), ("query_reduction", pa.float64()),
    ("grad_cosine", pa.float64()), ("grad_cosine_median", pa.float64()),
    ("grad_cosine_q10", pa.float64()), ("grad_cosine_q90", pa.float64()),
    ("agreement", pa.float64()), ("kl", pa.float64()), ("cka", pa.float64()),
    ("defense_lambda", pa.float64()), ("defense_form", pa.string()),
    ("defense_control", pa.string()), ("defense_failed", pa.bool_()),
    ("defense_accuracy_cost", pa.float64()), ("control_success_rate", pa.float64()),
    ("control_query_reduction", pa.float64()), ("control_clean_acc", pa.float64()),
    ("undefended_success_rate", pa.float64()), ("undefended_query_reduction", pa.float64()),
    ("target_clean_acc", pa.float64()), ("source_clean_acc", pa.float64()),
    ("source_agreement_with_full", pa.float64()), ("source_parameters", pa.int64()),
    ("source_size_bytes", pa.int64()), ("source_latency_ms", pa.float64()),
    ("source_runtime", pa.string()), ("source_deployed_agreement", pa.float64()),
    ("seed", pa.int64()), ("job_config_hash", pa.string()), ("code_version", pa.string()),
    ("device", pa.string()), ("config_hash", pa.string()), ("run_name", pa.string()),
    ("git_commit", pa.string()), ("package_versions", pa.string()),
])

MODELS_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("arch", pa.string()), ("role", pa.string()),
    ("compression", pa.string()), ("compression_family", pa.string()), ("width", pa.float64()),
    ("seed", pa.int64()), ("parameters", pa.int64()), ("test_accuracy", pa.float64()),
    ("agreement_with_full", pa.float64()), ("sparsity", pa.float64()),
    ("parameter_reduction", pa.float64()), ("defense", pa.string()),
    ("defense_lambda", pa.float64()), ("accuracy_cost", pa.float64()), ("failed", pa.bool_()),
    ("similarity_before", pa.float64()), ("similarity_after", pa.float64()), ("size_bytes", pa.int64()),
    ("latency_ms", pa.float64()), ("runtime", pa.string()), ("deployed_accuracy", pa.float64()),
    ("deployed_agreement", pa.float64()), ("measured", pa.string()), ("n_test", pa.int64()),
    ("code_version", pa.string()), ("device", pa.string()),
    ("config_hash", pa.string()), ("run_name", pa.string()),
])


def with_success_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """Wilson 95% interval of every row's success rate, from its own image count."""
    low, high = wilson(df["n_success"].to_numpy(), df["n_examples"].to_numpy())
    return df.assign(success_ci_low=low, success_ci_high=high)


def amplification(df: pd.DataFrame) -> pd.Series:
    """Sibling-source success / independent-source success at the same arch, attack and eps.

    NaN for rows that are not sibling rows or have no independent counterpart; +inf when
    the independent model never succeeded but the sibling did.
    """
    keys = ["dataset", "arch", "attack", "eps"]
    indep = df[df.source_role == "independent"].set_index(keys)["success_rate"]
    base = df.set_index(keys).index.map(lambda k: indep.get(k, np.nan)).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = df["success_rate"].to_numpy(dtype=float) / base
    ratio[(df["source_role"] != "sibling").to_numpy()] = np.nan
    return pd.Series(ratio, index=df.index)


def queries_to_reach(queries_at_success: list[float], rate: float) -> float:
    """Fewest queries by which a fraction ``rate`` of the images had succeeded, read off
    the per-image queries at success (NaN = never succeeded within the budget); +inf if
    the attack never got there. ``rate`` 0 needs no queries."""
    needed = math.ceil(rate * len(queries_at_success) - 1e-9)
    done = np.sort(np.asarray(queries_at_success, dtype=float))
    done = done[~np.isnan(done)]
    if needed == 0:
        return 0.0
    return float(done[needed - 1]) if needed <= len(done) else math.inf


def query_reduction(df: pd.DataFrame, attacks: dict) -> pd.DataFrame:
    """For each query attack with a ``baseline`` (P-RGF vs RGF), the query reduction factor
    at equal success: the queries the baseline needed to reach its final success rate,
    divided by the queries this attack needed to reach that same rate (same arch, eps).

    Censoring: an image that failed counts as never succeeding. If this attack never
    reaches the baseline's rate within its budget, ``queries_needed`` is inf and the factor
    is NaN (no claim); if the baseline succeeded on nothing, the factor is NaN too.
    """
    out = df.assign(baseline_attack=None, baseline_success_rate=np.nan,
                    baseline_queries_needed=np.nan, queries_needed=np.nan, query_reduction=np.nan)
    keys = ["dataset", "arch", "eps"]
    for attack_id, params in attacks.items():
        base_id = params.get("baseline")
        if base_id is None:
            continue
        base = df[df.attack == base_id].set_index(keys)
        for i, row in df[df.attack == attack_id].iterrows():
            key = tuple(row[k] for k in keys)
            if key not in base.index:
                continue
            b = base.loc[key]
            base_needed = queries_to_reach(b.queries_at_success, b.success_rate)
            needed = queries_to_reach(row.queries_at_success, b.success_rate)
            factor = base_needed / needed if b.success_rate > 0 and math.isfinite(needed) else np.nan
            out.loc[i, ["baseline_attack", "baseline_success_rate", "baseline_queries_needed",
                        "queries_needed", "query_reduction"]] = [
                base_id, b.success_rate, base_needed, needed, factor]
    return out


# Per-pair similarity values joined onto every attack row of that (arch, role, source).
SIMILARITY_COLUMNS = ["grad_cosine", "grad_cosine_median", "grad_cosine_q10", "grad_cosine_q90",
                      "agreement", "kl", "cka"]


def with_similarity(df: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    keys = ["arch", "source_role", "source_id"]
    sim = sim.reindex(columns=[*keys, *SIMILARITY_COLUMNS])
    return df.merge(sim, on=keys, how="left")


def with_defense(df: pd.DataFrame, models: pd.DataFrame, defenses: dict) -> pd.DataFrame:
    """On rows whose source is a defended sibling or derived from one: the defense's lam,
    form and control, whether it failed its accuracy tolerance, its accuracy cost against
    the undefended sibling, and the same attack's results (same eps) from its lam = 0
    control (role ``defended``) and from the undefended sibling: the comparisons the
    defense is judged by."""
    cols = ["defense_lambda", "defense_form", "defense_control", "defense_failed",
            "defense_accuracy_cost", "control_success_rate", "control_query_reduction",
            "control_clean_acc", "undefended_success_rate", "undefended_query_reduction"]
    out = df.assign(**{c: None for c in cols})
    defended = models[models.role == "defended"].set_index(["arch", "compression", "defense"])
    by_source = df.set_index(["dataset", "arch", "attack", "eps", "source_role", "compression",
                              "defense"])
    measures = ["success_rate", "query_reduction", "source_clean_acc"]

    def lookup(row: pd.Series, role: str, defense: str) -> list[float]:
        key = (row.dataset, row.arch, row.attack, row.eps, role, row.compression, defense)
        return by_source.loc[key, measures].tolist() if key in by_source.index else [np.nan] * 3

    for i, row in df[df.defense != "none"].iterrows():
        params = defenses[row.defense]
        model = defended.loc[(row.arch, row.compression, row.defense)]
        control = params.get("control") if params["lam"] > 0 else None
        ctrl = lookup(row, "defended", control) if control else [np.nan] * 3
        undefended = lookup(row, "sibling", "none")
        out.loc[i, cols] = [float(params["lam"]), params["form"], control, bool(model.failed),
                            float(model.accuracy_cost), *ctrl, *undefended[:2]]
    return out.astype({c: float for c in cols if c not in ("defense_form", "defense_control",
                                                              "defense_failed")})


def write_table(df: pd.DataFrame, schema: pa.Schema, out: str | Path) -> None:
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        raise ValueError(f"aggregate: per-job tables lack columns {missing}")
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


# Sibling measurements copied onto every attack row whose source is that sibling.
SOURCE_COLUMNS = {"agreement_with_full": "source_agreement_with_full",
                  "parameters": "source_parameters", "size_bytes": "source_size_bytes",
                  "latency_ms": "source_latency_ms", "runtime": "source_runtime",
                  "deployed_agreement": "source_deployed_agreement"}


def with_sibling_measurements(df: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Joins each sibling's product measurements onto the attack rows it is the source of."""
    sib = models[models.role == "sibling"][["arch", "compression", *SOURCE_COLUMNS]]
    out = df.merge(sib.rename(columns=SOURCE_COLUMNS), on=["arch", "compression"], how="left")
    out.loc[out.source_role != "sibling", list(SOURCE_COLUMNS.values())] = None
    return out


def model_row(meta: dict, role: str, dataset: str) -> dict:
    """One row of ``models.parquet`` from a weights sidecar."""
    measured = meta.get("measured", {})
    defense = meta.get("defense") or {}
    return {**{k: meta.get("product", {}).get(k) for k in
               ("size_bytes", "latency_ms", "runtime", "deployed_accuracy", "deployed_agreement")},
        "dataset": dataset, "arch": meta["spec"]["arch"], "role": role,
        "compression": meta.get("compression_id") or "none",
        "compression_family": meta.get("family") or "none",
        "width": float(meta["spec"]["width"]), "seed": meta["seed"],
        "parameters": meta["parameters"], "test_accuracy": meta["test_accuracy"],
        "agreement_with_full": meta.get("agreement_with_full", np.nan),
        "sparsity": measured.get("sparsity", np.nan),
        "parameter_reduction": measured.get("parameter_reduction", np.nan),
        "defense": meta.get("defense_id") or "none", "defense_lambda": defense.get("lam", np.nan),
        "accuracy_cost": meta.get("accuracy_cost", np.nan), "failed": meta.get("failed"),
        "similarity_before": measured.get("similarity_before", np.nan),
        "similarity_after": measured.get("similarity_after", np.nan),
        "measured": json.dumps(measured, sort_keys=True),
        "n_test": meta["n_test"], "code_version": meta["code_version"],
        "device": meta.get("device"),
    }


def write_frame(df: pd.DataFrame, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False)
