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

from siblings.artifacts import write_parquet
from siblings.cards import ModelCard
from siblings.intervals import percentile_interval, resamples, wilson

BENCHMARK_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("arch", pa.string()), ("compression", pa.string()),
    ("compression_family", pa.string()), ("defense", pa.string()), ("attack", pa.string()),
    ("attack_method", pa.string()), ("attack_kind", pa.string()), ("source_role", pa.string()),
    ("source_id", pa.string()), ("source_arch", pa.string()), ("norm", pa.string()),
    ("targeted", pa.bool_()), ("eps", pa.float64()), ("steps", pa.int64()),
    ("query_budget", pa.int64()), ("n_examples", pa.int64()), ("n_success", pa.int64()),
    ("success_rate", pa.float64()), ("success_ci_low", pa.float64()),
    ("success_ci_high", pa.float64()), ("image_success", pa.list_(pa.bool_())),
    ("source_success_rate", pa.float64()),
    ("queries_at_success", pa.list_(pa.float64())), ("mean_queries_success", pa.float64()),
    ("median_queries_success", pa.float64()), ("prior_lambda_one", pa.float64()),
    ("amplification", pa.float64()), ("amplification_ci_low", pa.float64()),
    ("amplification_ci_high", pa.float64()), ("amplification_bound", pa.bool_()),
    ("baseline_attack", pa.string()),
    ("baseline_success_rate", pa.float64()), ("baseline_queries_needed", pa.float64()),
    ("queries_needed", pa.float64()), ("query_reduction", pa.float64()),
    ("query_reduction_ci_low", pa.float64()), ("query_reduction_ci_high", pa.float64()),
    ("query_reduction_bound", pa.string()), ("query_amplification", pa.float64()),
    ("query_amplification_ci_low", pa.float64()), ("query_amplification_ci_high", pa.float64()),
    ("query_amplification_bound", pa.string()),
    ("grad_cosine", pa.float64()), ("grad_cosine_median", pa.float64()),
    ("grad_cosine_q10", pa.float64()), ("grad_cosine_q90", pa.float64()),
    ("agreement", pa.float64()), ("kl", pa.float64()), ("cka", pa.float64()),
    ("defense_lambda", pa.float64()), ("defense_form", pa.string()),
    ("defense_control", pa.string()), ("defense_failed", pa.bool_()),
    ("defense_accuracy_cost", pa.float64()), ("control_success_rate", pa.float64()),
    ("control_query_reduction", pa.float64()), ("control_clean_acc", pa.float64()),
    ("undefended_success_rate", pa.float64()), ("undefended_query_reduction", pa.float64()),
    ("control_success_ratio", pa.float64()), ("control_success_ratio_ci_low", pa.float64()),
    ("control_success_ratio_ci_high", pa.float64()),
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


def rate_ratio(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Success-rate ratio of paired per-image success matrices ``a`` over ``b`` (rows:
    resamples or one observed set, columns: images), and whether it is a lower bound: where
    ``b`` fooled no image it counts as one ("> x"), never inf; NaN where neither did."""
    ka, kb = a.sum(axis=-1).astype(float), b.sum(axis=-1).astype(float)
    bound = kb == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound, np.where(ka == 0, np.nan, ka), ka / kb)
    return ratio, bound & (ka > 0)


def _counterparts(rows: pd.DataFrame, candidates: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Index of the row of ``candidates`` with the same ``keys`` as each of ``rows``
    (NaN: none)."""
    ref = candidates.reset_index().drop_duplicates(keys).set_index(keys)["index"]
    return pd.Series(rows.set_index(keys).index.map(lambda k: ref.get(k, np.nan)),
                     index=rows.index, dtype=float)


def with_amplification(df: pd.DataFrame) -> pd.DataFrame:
    """Sibling-source success over independent-source success (same arch, attack, eps), with
    a paired bootstrap 95% interval: the two attacks ran on the same images, so both are
    resampled with the same image draws. A lower bound (``amplification_bound``) where the
    independent model fooled none; NaN on rows that are not sibling rows."""
    cols = {"amplification": np.nan, "amplification_ci_low": np.nan,
            "amplification_ci_high": np.nan, "amplification_bound": False}
    out = df.assign(**cols)
    ref = _counterparts(df, df[df.source_role == "independent"],
                        ["dataset", "arch", "attack", "eps"])
    for i in df.index[(df.source_role == "sibling") & ref.notna()]:
        a = np.asarray(df.at[i, "image_success"], dtype=bool)
        b = np.asarray(df.at[int(ref[i]), "image_success"], dtype=bool)
        if len(a) != len(b):
            raise ValueError(f"aggregate: {df.at[i, 'source_id']} and the independent source "
                             f"were attacked on different images ({len(a)} vs {len(b)})")
        (value,), (bound,) = rate_ratio(a[None], b[None])
        idx = resamples(len(a))
        low, high = percentile_interval(rate_ratio(a[idx], b[idx])[0])
        out.loc[i, list(cols)] = [value, low, high, bool(bound)]
    return out.astype({"amplification_bound": bool})


def _queries(row: pd.Series) -> np.ndarray:
    """Per-image queries at success, inf for an image never fooled within the budget."""
    q = np.asarray(row.queries_at_success, dtype=float)
    return np.where(np.isnan(q), np.inf, q)


def queries_to_reach(queries: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Per row of ``queries`` (images in columns, inf = never fooled): the fewest queries
    by which a fraction ``level`` of the images had been fooled; inf if never, 0 at 0."""
    queries = np.atleast_2d(queries)
    n = queries.shape[1]
    k = np.ceil(np.broadcast_to(level, len(queries)) * n - 1e-9).astype(int)
    ordered = np.sort(queries, axis=1)
    picked = ordered[np.arange(len(queries)), np.clip(k - 1, 0, n - 1)]
    return np.where(k == 0, 0.0, picked)


def query_factor(ref: np.ndarray, this: np.ndarray, level: np.ndarray | None,
                 budget: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How many times fewer queries ``this`` needed than ``ref`` to fool a fraction
    ``level`` of the images (None: the reference's own final success rate), per row of
    paired per-image query matrices. An attack that never got there is read at the budget,
    so the factor is a bound (``>`` if the reference never got there, ``<`` if this one
    never did); NaN at level 0 or when neither got there. Also returns both queries needed
    (NaN when not reached)."""
    ref, this = np.atleast_2d(ref), np.atleast_2d(this)
    level = np.isfinite(ref).mean(axis=1) if level is None else np.full(len(ref), level)
    ref_needed, needed = queries_to_reach(ref, level), queries_to_reach(this, level)
    undefined = (level == 0) | (np.isinf(ref_needed) & np.isinf(needed))
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(undefined, np.nan,
                          np.minimum(ref_needed, budget) / np.minimum(needed, budget))
    bound = np.where(undefined, "", np.where(np.isinf(ref_needed), ">",
                                             np.where(np.isinf(needed), "<", "")))
    finite = lambda q: np.where(np.isinf(q), np.nan, q)  # noqa: E731
    return factor, bound, finite(ref_needed), finite(needed)


def curve_gain(ref: np.ndarray, this: np.ndarray, budget: float) -> np.ndarray:
    """Area between the two success-vs-queries curves over the whole budget, divided by the
    budget: the mean over images of (budget - queries at success) / budget, this minus the
    reference, in points of success. One number per curve pair that no single image sets."""
    area = lambda q: np.where(np.isinf(q), 0.0, (budget - q) / budget).mean(axis=1)  # noqa: E731
    return 100 * (area(np.atleast_2d(this)) - area(np.atleast_2d(ref)))


# Where each query reading is taken: a fixed share of the images, or the reference's final
# success rate (None: the headline level, unaffected by how far past it the attack went).
QUERY_LEVELS = {"final": None, "25%": 0.25, "50%": 0.5}
QUERY_REFERENCES = ("baseline", "independent")


def query_readings(df: pd.DataFrame, attacks: dict) -> pd.DataFrame:
    """Every query-attack row against each of its references, in long form: the attack's
    no-prior ``baseline`` (RGF for P-RGF) and, for prior-guided rows, the same attack with
    the independent model as prior (the control). Per reference: the query factor at each
    of QUERY_LEVELS and the curve gain, each with a paired bootstrap 95% interval."""
    keys = ["dataset", "arch", "eps"]
    out = []
    for attack_id, params in attacks.items():
        rows = df[df.attack == attack_id]
        if rows.empty or (rows.attack_kind != "query").any():
            continue
        refs = {"independent": _counterparts(rows, rows[rows.source_role == "independent"],
                                             [*keys, "attack"])}
        if params.get("baseline") is not None:
            refs["baseline"] = _counterparts(rows, df[df.attack == params["baseline"]], keys)
        for reference, ref_index in refs.items():
            for i in rows.index[ref_index.notna()]:
                row, ref = df.loc[i], df.loc[int(ref_index[i])]
                if reference == "independent" and row.source_role == "independent":
                    continue
                out.extend(_readings(row, ref, reference))
    return pd.DataFrame(out)


def _readings(row: pd.Series, ref: pd.Series, reference: str) -> list[dict]:
    this, base, budget = _queries(row), _queries(ref), float(row.query_budget)
    if len(this) != len(base):
        raise ValueError(f"aggregate: {row.attack} {row.source_id} and its {reference} "
                         f"reference were attacked on different images")
    idx = resamples(len(this))
    common = {"dataset": row.dataset, "arch": row.arch, "attack": row.attack, "eps": row.eps,
              "source_role": row.source_role, "source_id": row.source_id,
              "reference": reference, "reference_attack": ref.attack,
              "reference_source": ref.source_id, "reference_success_rate": ref.success_rate,
              "query_budget": int(budget),
              "n_examples": len(this)}
    found = []
    for name, level in QUERY_LEVELS.items():
        (value,), (bound,), (ref_needed,), (needed,) = query_factor(base, this, level, budget)
        low, high = percentile_interval(query_factor(base[idx], this[idx], level, budget)[0])
        found.append({**common, "statistic": "query_factor", "level": name,
                      "value": value, "ci_low": low, "ci_high": high, "bound": bound,
                      "queries_needed": needed, "reference_queries_needed": ref_needed})
    low, high = percentile_interval(curve_gain(base[idx], this[idx], budget))
    found.append({**common, "statistic": "curve_gain", "level": "area", "bound": "",
                  "value": float(curve_gain(base, this, budget)[0]), "ci_low": low,
                  "ci_high": high, "queries_needed": np.nan, "reference_queries_needed": np.nan})
    return found


def with_query_columns(df: pd.DataFrame, readings: pd.DataFrame) -> pd.DataFrame:
    """The headline readings (factor at the reference's final success rate) on each row:
    ``query_reduction`` against the no-prior baseline, ``query_amplification`` against the
    independent prior, each with its interval and bound, and the queries needed."""
    keys = ["dataset", "arch", "attack", "eps", "source_role", "source_id"]
    out = df
    head = (readings[(readings.statistic == "query_factor") & (readings.level == "final")]
            if len(readings) else pd.DataFrame(columns=[*keys, "reference", "value", "ci_low",
                                                         "ci_high", "bound", "queries_needed",
                                                         "reference_queries_needed",
                                                         "reference_attack",
                                                         "reference_success_rate"]))
    for reference, name in (("baseline", "query_reduction"), ("independent", "query_amplification")):
        part = head[head.reference == reference].set_index(keys)
        picked = part.reindex(pd.MultiIndex.from_frame(df[keys]))
        out = out.assign(**{name: picked.value.to_numpy(dtype=float),
                            f"{name}_ci_low": picked.ci_low.to_numpy(dtype=float),
                            f"{name}_ci_high": picked.ci_high.to_numpy(dtype=float),
                            f"{name}_bound": picked.bound.fillna("").to_numpy(dtype=object)})
        if reference == "baseline":
            out = out.assign(baseline_attack=picked.reference_attack.to_numpy(dtype=object),
                             baseline_success_rate=picked.reference_success_rate.to_numpy(dtype=float),
                             baseline_queries_needed=picked.reference_queries_needed.to_numpy(dtype=float),
                             queries_needed=picked.queries_needed.to_numpy(dtype=float))
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
    defense is judged by. ``control_success_ratio``: this row's success over the control's,
    with a paired bootstrap 95% interval (both attacked the same images)."""
    cols = ["defense_lambda", "defense_form", "defense_control", "defense_failed",
            "defense_accuracy_cost", "control_success_rate", "control_query_reduction",
            "control_clean_acc", "undefended_success_rate", "undefended_query_reduction",
            "control_success_ratio", "control_success_ratio_ci_low",
            "control_success_ratio_ci_high"]
    out = df.assign(**{c: None for c in cols})
    defended = models[models.role == "defended"].set_index(["arch", "compression", "defense"])
    by_source = df.set_index(["dataset", "arch", "attack", "eps", "source_role", "compression",
                              "defense"])
    measures = ["success_rate", "query_reduction", "source_clean_acc", "image_success"]

    def lookup(row: pd.Series, role: str, defense: str | None) -> list:
        key = (row.dataset, row.arch, row.attack, row.eps, role, row.compression, defense)
        return by_source.loc[key, measures].tolist() if key in by_source.index else [np.nan] * 4

    for i, row in df[df.defense != "none"].iterrows():
        params = defenses[row.defense]
        model = defended.loc[(row.arch, row.compression, row.defense)]
        control = params.get("control") if params["lam"] > 0 else None
        ctrl = lookup(row, "defended", control)
        undefended = lookup(row, "sibling", "none")
        out.loc[i, cols] = [float(params["lam"]), params["form"], control, bool(model.failed),
                            float(model.accuracy_cost), *ctrl[:3], *undefended[:2],
                            *_success_ratio(row.image_success, ctrl[3])]
    return out.astype({c: float for c in cols if c not in ("defense_form", "defense_control",
                                                              "defense_failed")})


def _success_ratio(this: list[bool], reference: list[bool] | float) -> list[float]:
    """Success of ``this`` over ``reference`` on the same images, with its paired bootstrap
    interval; NaN where there is no reference or neither succeeded."""
    if not isinstance(reference, (list, np.ndarray)):
        return [np.nan] * 3
    a, b = np.asarray(this, dtype=bool), np.asarray(reference, dtype=bool)
    idx = resamples(len(a))
    return [float(rate_ratio(a[None], b[None])[0][0]),
            *percentile_interval(rate_ratio(a[idx], b[idx])[0])]


def write_table(df: pd.DataFrame, schema: pa.Schema, out: str | Path) -> None:
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        raise ValueError(f"aggregate: per-job tables lack columns {missing}")
    write_parquet(pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False),
                  out)


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


def _or_nan(value: float | None) -> float:
    return np.nan if value is None else value


def model_row(card: ModelCard, role: str, dataset: str) -> dict:
    """One row of ``models.parquet`` from a model card."""
    measured, product = card.measured, card.product or {}
    return {**{k: product.get(k) for k in
               ("size_bytes", "latency_ms", "runtime", "deployed_accuracy", "deployed_agreement")},
        "dataset": dataset, "arch": card.spec.arch, "role": role,
        "compression": card.compression_id or "none",
        "compression_family": card.family or "none",
        "width": float(card.spec.width), "seed": card.seed,
        "parameters": card.parameters, "test_accuracy": card.test_accuracy,
        "agreement_with_full": _or_nan(card.agreement_with_full),
        "sparsity": measured.get("sparsity", np.nan),
        "parameter_reduction": measured.get("parameter_reduction", np.nan),
        "defense": card.defense_id or "none",
        "defense_lambda": (card.defense or {}).get("lam", np.nan),
        "accuracy_cost": _or_nan(card.accuracy_cost), "failed": card.failed,
        "similarity_before": measured.get("similarity_before", np.nan),
        "similarity_after": measured.get("similarity_after", np.nan),
        "measured": json.dumps(measured, sort_keys=True),
        "n_test": card.n_test, "code_version": card.code_version, "device": card.device,
    }


def write_frame(df: pd.DataFrame, out: str | Path) -> None:
    write_parquet(pa.Table.from_pandas(df, preserve_index=False), out)
