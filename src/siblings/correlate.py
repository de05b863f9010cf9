"""Does a sibling's similarity to the full model predict how well attacks from it work?

Spearman's rho between each similarity metric and each attack's outcome over the
(architecture, sibling) pairs, published and defended siblings alike. Pooling the pairs of
every architecture answers a different question from the one asked: at a small eps transfer
success is set mostly by how easy the target is (white-box success differs several-fold
between architectures), so a pooled rho ranks architectures, not siblings. Two analyses
control for the target:

* **within-arch**: metric and outcome are ranked within each architecture only, so no
  architecture's overall ease or similarity level enters (:func:`spearman` with strata);
* **normalised_success**: transfer success divided by the white-box success on the same
  target at the same eps, a rate relative to what the target allows at all.

Both read transfer success at a per-architecture eps where the white-box attack is
mid-range (:func:`midrange_eps`): near 0 or 1 every source looks alike and ranks are ties.
The original pooled rows stay beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from siblings.aggregate import ATTACK, DATASET, STAMP
from siblings.schema import Column, TableSchema

CORRELATED = ["grad_cosine", "agreement", "kl", "cka"]
CORRELATION_ROLES = ("sibling", "defended")  # the published siblings, before and after defense
TARGET = ["dataset", "arch", "attack", "eps"]  # one target model under one attack setting
MIN_PAIRS = 3  # fewer pairs have no rank correlation worth the name
MIDRANGE = "mid-range white-box per arch"

RHO = "Spearman's rho, -1 to 1"
# One correlation (correlations()); the aggregate stage adds the dataset and the run stamp.
CORRELATION_COLUMNS = (
    ATTACK,
    Column("eps", pa.float64(), "`norm` distance, pixels in [0, 1]",
           "the eps the outcome is read at; null where eps_rule picks one per architecture"),
    Column("eps_rule", pa.string(), "name",
           f"how eps is chosen: smallest (the attack's smallest), `{MIDRANGE}` (per "
           "architecture, the eps whose white-box success is closest to 0.5) or each (every "
           "eps on its own row)"),
    Column("outcome", pa.string(), "name",
           "what is correlated with the metric: success_rate, normalised_success (transfer "
           "success / white-box success on the same target and eps) or query_reduction"),
    Column("analysis", pa.string(), "name",
           "pooled (all pairs ranked together) or within-arch (ranked within each "
           "architecture only, so no architecture's overall level enters)"),
    Column("metric", pa.string(), "name",
           "the similarity metric (a column of similarity.parquet): grad_cosine, agreement, "
           "kl or cka"),
    Column("n_pairs", pa.int64(), "pairs",
           "(architecture, sibling or defended sibling) pairs with both values; within-arch: "
           f"only architectures with at least {MIN_PAIRS} such pairs"),
    Column("n_archs", pa.int64(), "architectures", "architectures those pairs span"),
    Column("spearman", pa.float64(), RHO,
           f"rank correlation of metric and outcome over the pairs (within-arch: of the ranks "
           f"within each architecture); null with fewer than {MIN_PAIRS} pairs or no spread"),
    *(Column(f"ci_{end}", pa.float64(), RHO,
             f"{side} end of the 95% percentile interval of spearman over 2,000 bootstrap "
             "resamples of the pairs (seed 0; within-arch: resampled within each architecture)")
      for end, side in (("low", "lower"), ("high", "upper"))),
)
CORRELATIONS = TableSchema("correlations", 1, (
    "Does a sibling's similarity to its full model predict how well attacks from it work? "
    "One row per (attack, eps, outcome, analysis, metric): Spearman's rho between the "
    "similarity metric and the attack outcome over the (architecture, sibling) pairs, "
    "published and defended siblings alike (siblings.correlate)."),
    (*CORRELATION_COLUMNS, DATASET, *STAMP))


def _strata(n: int, strata: np.ndarray | None) -> list[np.ndarray]:
    """Row indices of each stratum, strata in sorted order (so resampling is reproducible);
    all rows are one stratum without ``strata``."""
    if strata is None:
        return [np.arange(n)]
    codes, _ = pd.factorize(np.asarray(strata), sort=True)
    return [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]


def _rank_fractions(x: np.ndarray) -> np.ndarray:
    """Average ranks along each row, centred on the row's mean rank and divided by its
    length: every pair then weighs about alike, whatever the size of its stratum."""
    n = x.shape[1]
    return (pd.DataFrame(x).rank(axis=1).to_numpy() - (n + 1) / 2) / n


def _rank_correlation(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Pearson correlation, per row, of the within-stratum rank fractions of ``a`` and ``b``
    (one (draws, stratum size) array per stratum), pooled over strata. NaN where either
    side has no spread to rank."""
    u = np.concatenate([_rank_fractions(x) for x in a], axis=1)
    v = np.concatenate([_rank_fractions(x) for x in b], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (u * v).sum(axis=1) / np.sqrt((u * u).sum(axis=1) * (v * v).sum(axis=1))


def spearman(a: np.ndarray, b: np.ndarray, strata: np.ndarray | None = None) -> float:
    """Spearman's rank correlation (ties get average ranks).

    With ``strata``, the within-stratum rho: ``a`` and ``b`` are ranked within each stratum,
    each rank centred on its stratum's mean rank and divided by the stratum's size, and the
    Pearson correlation is taken over all pairs together. Without ties this is the mean of
    the per-stratum rhos weighted by (n**2 - 1) / n, about each stratum's number of pairs,
    so no stratum's level of ``a`` or ``b`` can create or hide a correlation.
    """
    groups = _strata(len(a), strata)
    return float(_rank_correlation([a[g][None] for g in groups], [b[g][None] for g in groups])[0])


def bootstrap_interval(a: np.ndarray, b: np.ndarray, strata: np.ndarray | None = None,
                       resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`spearman` over resampled pairs; with
    ``strata``, pairs are resampled within each stratum, so every draw keeps the design
    (the same architectures, each with its own number of pairs)."""
    rng = np.random.default_rng(seed)
    draws_idx = [g[rng.integers(0, len(g), (resamples, len(g)))]
                 for g in _strata(len(a), strata)]
    draws = _rank_correlation([a[i] for i in draws_idx], [b[i] for i in draws_idx])
    draws = draws[~np.isnan(draws)]  # a resample of tied values has no rank correlation
    if len(draws) == 0:
        return np.nan, np.nan
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def whitebox_success(df: pd.DataFrame) -> pd.Series:
    """Each row's white-box success: that of the row with source role ``whitebox`` on the
    same target under the same attack and eps (NaN where there is none), the most any
    source could achieve there."""
    whitebox = df[df.source_role == "whitebox"].set_index(TARGET)["success_rate"]
    if not whitebox.index.is_unique:
        raise ValueError("correlate: more than one white-box row for one target and eps")
    return pd.Series(whitebox.reindex(pd.MultiIndex.from_frame(df[TARGET])).to_numpy(),
                     index=df.index)


def midrange_eps(df: pd.DataFrame) -> pd.Series:
    """Per (dataset, arch, attack), the eps whose white-box success is closest to 0.5,
    read from the run's own white-box rows (ties: the smaller eps). There the outcome has
    the most room either way, on every target alike."""
    whitebox = df[(df.source_role == "whitebox") & df.success_rate.notna()]
    closest = (whitebox.assign(distance=(whitebox.success_rate - 0.5).abs())
               .sort_values(["distance", "eps"], kind="stable")
               .drop_duplicates(TARGET[:-1]))
    return closest.set_index(TARGET[:-1])["eps"].sort_index()


def _at_midrange(rows: pd.DataFrame, eps: pd.Series) -> pd.DataFrame:
    """The rows at their target's mid-range eps (none for a target without white-box rows)."""
    chosen = pd.MultiIndex.from_frame(rows[TARGET[:-1]]).map(lambda k: eps.get(k, np.nan))
    return rows[rows.eps.to_numpy() == chosen.to_numpy(dtype=float)]


def _outcomes(rows: pd.DataFrame, eps: pd.Series) -> list[tuple[dict, pd.DataFrame]]:
    """What each analysis of one attack correlates: its description and its pair rows.

    Transfer: success at the smallest eps, pooled (the original analysis); at the mid-range
    eps, normalised success pooled and raw success within architectures. Normalised
    success within architectures is not listed: one target's pairs share their divisor, so
    its ranks, and its rho, are those of raw success. Query: the query reduction at each
    eps, pooled and within architectures (reductions at different eps do not compare).
    """
    if (rows.attack_kind == "transfer").all():
        smallest = float(rows.eps.min())
        mid = _at_midrange(rows, eps)
        return [
            ({"eps": smallest, "eps_rule": "smallest", "outcome": "success_rate",
              "analysis": "pooled"}, rows[rows.eps == smallest]),
            ({"eps": np.nan, "eps_rule": MIDRANGE, "outcome": "normalised_success",
              "analysis": "pooled"}, mid),
            ({"eps": np.nan, "eps_rule": MIDRANGE, "outcome": "success_rate",
              "analysis": "within-arch"}, mid),
        ]
    if rows.query_reduction.isna().all():
        return []
    return [({"eps": float(e), "eps_rule": "each", "outcome": "query_reduction",
              "analysis": analysis}, at_eps)
            for e, at_eps in rows.groupby("eps") for analysis in ("pooled", "within-arch")]


def _correlate(rows: pd.DataFrame, metric: str, outcome: str, within: bool) -> dict:
    """rho and its interval over the pairs with both values; within architectures, only
    architectures with at least ``MIN_PAIRS`` such pairs count."""
    ok = rows[["arch", metric, outcome]].replace([np.inf, -np.inf], np.nan).dropna()
    if within:
        ok = ok[ok.groupby("arch")[metric].transform("size") >= MIN_PAIRS]
    a, b = ok[metric].to_numpy(float), ok[outcome].to_numpy(float)
    strata = ok["arch"].to_numpy() if within else None
    rho, (lo, hi) = ((spearman(a, b, strata), bootstrap_interval(a, b, strata))
                     if len(ok) >= MIN_PAIRS else (np.nan, (np.nan, np.nan)))
    return {"n_pairs": len(ok), "n_archs": ok["arch"].nunique(), "spearman": rho,
            "ci_low": lo, "ci_high": hi}


def correlations(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (attack, eps, outcome, analysis, metric): Spearman's rho with its 95%
    bootstrap interval (2,000 resamples, seed 0) between the metric and the outcome over
    the sibling and defended pairs (see :func:`_outcomes` for which). An attack's pooled
    rows come first, so its first row is the original pooled analysis."""
    pairs = df.assign(normalised_success=df.success_rate / whitebox_success(df))
    pairs = pairs[pairs.source_role.isin(CORRELATION_ROLES)]
    eps = midrange_eps(df)
    out = [{"attack": attack, **spec, "metric": metric,
            **_correlate(used, metric, spec["outcome"], spec["analysis"] == "within-arch")}
           for attack, rows in pairs.groupby("attack")
           for spec, used in _outcomes(rows, eps) for metric in CORRELATED]
    return pd.DataFrame(out) if out else pd.DataFrame(columns=[c.name for c in CORRELATION_COLUMNS])


def correlation_markdown(corr: pd.DataFrame) -> str:
    """The correlation table for the report: rho to 3 places, its interval to 2."""
    if corr.empty:
        return "(no sibling pairs to correlate)"
    return corr.assign(
        eps=[f"{e:g}" if pd.notna(e) else "per arch" for e in corr.eps],
        interval=[f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(corr.ci_low, corr.ci_high)],
        spearman=corr.spearman.round(3))[
            ["attack", "eps", "eps_rule", "outcome", "analysis", "metric", "n_pairs", "n_archs",
             "spearman", "interval"]].to_markdown(index=False)
