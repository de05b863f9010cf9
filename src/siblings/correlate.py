"""Does a sibling's similarity to the full model predict how well attacks from it work?

Spearman's rho between each similarity metric and each attack's outcome over the
(architecture, sibling) pairs, published and defended siblings alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

CORRELATED = ["grad_cosine", "agreement", "kl", "cka"]
CORRELATION_ROLES = ("sibling", "defended")  # the published siblings, before and after defense


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get average ranks)."""
    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def bootstrap_interval(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's rho over resampled pairs."""
    rng = np.random.default_rng(seed)
    draws = np.array([spearman(a[idx], b[idx])
                      for idx in rng.integers(0, len(a), (resamples, len(a)))])
    draws = draws[~np.isnan(draws)]  # a resample of tied values has no rank correlation
    if len(draws) == 0:
        return np.nan, np.nan
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def correlations(df: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho (bootstrap 95% interval) between each similarity metric and each
    attack's outcome across all (architecture, sibling) pairs, defended siblings included:
    transfer success at the attack's smallest eps, and the query reduction factor."""
    pairs = df[df.source_role.isin(CORRELATION_ROLES)]
    outcomes = []
    for attack, rows in pairs.groupby("attack"):
        if (rows.attack_kind == "transfer").all():
            outcomes.append((attack, "success_rate", rows[rows.eps == rows.eps.min()]))
        elif rows.query_reduction.notna().any():
            outcomes.append((attack, "query_reduction", rows))
    out = []
    for attack, outcome, rows in outcomes:
        for metric in CORRELATED:
            ok = rows[[metric, outcome]].replace([np.inf, -np.inf], np.nan).dropna()
            a, b = ok[metric].to_numpy(float), ok[outcome].to_numpy(float)
            rho, (lo, hi) = ((spearman(a, b), bootstrap_interval(a, b)) if len(ok) >= 3
                             else (np.nan, (np.nan, np.nan)))
            out.append({"attack": attack, "eps": float(rows.eps.min()), "outcome": outcome,
                        "metric": metric, "n_pairs": len(ok), "spearman": rho,
                        "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(out)
