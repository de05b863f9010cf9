import numpy as np
import pandas as pd
import pytest

from siblings.correlate import (bootstrap_interval, correlation_markdown, correlations,
                                midrange_eps, spearman, whitebox_success)

from test_aggregate import defended_rows

EPS = (0.01, 0.05)


def test_spearman_is_the_rank_correlation():
    a = np.array([0.1, 0.5, 0.2, 0.9, 0.7])
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.array([1.0, 3.0, 2.0, 5.0, 4.0])) == pytest.approx(1.0)
    assert spearman(a, np.array([2.0, 3.0, 1.0, 4.0, 5.0])) == pytest.approx(0.8)  # 1 - 6*4/120


def test_within_stratum_rho_is_the_size_weighted_mean_of_the_strata_rhos():
    rng = np.random.default_rng(3)
    sizes = [3, 5, 9]
    strata = np.repeat(np.arange(3), sizes)
    a, b = rng.normal(size=len(strata)), rng.normal(size=len(strata))
    rhos = [spearman(a[strata == k], b[strata == k]) for k in range(3)]
    weights = [(n * n - 1) / n for n in sizes]
    assert spearman(a, b, strata) == pytest.approx(np.average(rhos, weights=weights))
    assert spearman(a, b, strata) != pytest.approx(spearman(a, b))


def test_bootstrap_interval_brackets_the_estimate_and_widens_with_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    lo, hi = bootstrap_interval(x, x + 0.1 * rng.normal(size=40))
    assert 0.9 < lo < hi <= 1.0
    lo_noisy, hi_noisy = bootstrap_interval(x, x + 2 * rng.normal(size=40))
    assert hi_noisy - lo_noisy > 3 * (hi - lo)


def test_stratified_bootstrap_keeps_each_stratum_s_pairs():
    """One stratum rises, one falls, 20 pairs each: rho 0. Resampling within strata keeps
    20 a side, so rho stays near 0; resampling all pairs together would tip the balance
    (about +-0.3 at 95%)."""
    x = np.arange(20.0)
    a, b, strata = np.r_[x, x], np.r_[x, -x], np.repeat(["up", "down"], 20)
    assert spearman(a, b, strata) == pytest.approx(0.0)
    lo, hi = bootstrap_interval(a, b, strata)
    assert -0.05 < lo <= 0 <= hi < 0.05


def test_correlations_cover_every_metric_over_sibling_pairs_only():
    df, _, _ = defended_rows()
    df = pd.concat([df, df.assign(arch="b", success_rate=df.success_rate / 2)], ignore_index=True)
    # Monotone in success for the sibling pairs; the reversed row would break it if counted.
    df = df.assign(grad_cosine=np.where(df.source_role == "reversed", 0.99, 0.5 + df.success_rate),
                   agreement=0.9, kl=1 - df.success_rate, cka=0.8)
    corr = correlations(df)
    corr = corr[(corr.analysis == "pooled") & (corr.outcome == "success_rate")].set_index("metric")
    assert corr.loc["grad_cosine", "n_pairs"] == 6  # sibling + defended roles, two archs
    assert corr.loc["grad_cosine", "n_archs"] == 2
    assert corr.loc["grad_cosine", "spearman"] == pytest.approx(1.0)
    assert corr.loc["kl", "spearman"] == pytest.approx(-1.0)
    assert np.isnan(corr.loc["agreement", "spearman"])  # constant: no rank correlation


def row(arch: str, eps: float, role: str, success: float, cosine: float = np.nan,
        source: str = "s") -> dict:
    return {"dataset": "d", "arch": arch, "attack": "pgd", "attack_kind": "transfer", "eps": eps,
            "source_role": role, "source_id": source, "success_rate": success,
            "query_reduction": np.nan, "grad_cosine": cosine, "agreement": cosine,
            "kl": -cosine, "cka": cosine}


def confounded(pairs: int = 8) -> pd.DataFrame:
    """Four targets whose ease falls as their siblings' similarity rises (so the pooled
    ranks mislead); within each target success rises with the gradient cosine, noisily."""
    rng = np.random.default_rng(0)
    rows = []
    targets = [("a", 0.05, 0.9, (0.10, 0.50)), ("b", 0.15, 0.7, (0.25, 0.70)),
               ("c", 0.30, 0.5, (0.45, 0.90)), ("d", 0.45, 0.3, (0.60, 0.97))]
    for arch, base, level, whitebox in targets:
        for eps, wb, lift in zip(EPS, whitebox, (0.0, 0.3)):
            rows.append(row(arch, eps, "whitebox", wb))
            for i in range(pairs):
                success = base + lift + 0.01 * i + rng.normal(0, 0.01)
                rows.append(row(arch, eps, "sibling", success, level + 0.02 * i, f"s{i}"))
    return pd.DataFrame(rows)


def pick(corr: pd.DataFrame, analysis: str, outcome: str = "success_rate",
         metric: str = "grad_cosine") -> pd.Series:
    hit = corr[(corr.analysis == analysis) & (corr.outcome == outcome) & (corr.metric == metric)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_within_architecture_rho_sees_what_pooling_over_targets_hides():
    corr = correlations(confounded())
    pooled, within = pick(corr, "pooled"), pick(corr, "within-arch")
    assert pooled.spearman < 0.1 and pooled.eps == 0.01 and pooled.eps_rule == "smallest"
    assert within.spearman > 0.8 and 0 < within.ci_low <= within.spearman <= within.ci_high
    assert within.n_pairs == 32 and within.n_archs == 4 and np.isnan(within.eps)
    assert pick(corr, "within-arch", metric="kl").spearman == pytest.approx(-within.spearman)


def test_within_architecture_rho_ignores_a_target_s_scale_and_its_stragglers():
    df = confounded()
    base = pick(correlations(df), "within-arch")
    sibling_a = (df.arch == "a") & (df.source_role == "sibling")
    easier = df.assign(success_rate=np.where(sibling_a, 3 * df.success_rate, df.success_rate))
    assert pick(correlations(easier), "within-arch").spearman == pytest.approx(base.spearman)
    assert pick(correlations(easier), "pooled").spearman != pytest.approx(
        pick(correlations(df), "pooled").spearman)
    # A target with two pairs, against the trend, has no within-target ranking to add.
    few = pd.DataFrame([row("e", eps, *r) for eps in EPS for r in
                        [("whitebox", 0.5), ("sibling", 0.9, 0.1, "s0"),
                         ("sibling", 0.1, 0.9, "s1")]])
    more = pick(correlations(pd.concat([df, few], ignore_index=True)), "within-arch")
    assert (more.n_pairs, more.n_archs) == (32, 4)
    assert more.spearman == pytest.approx(base.spearman)


def normalising_frame() -> pd.DataFrame:
    """Two targets; at eps 0.05 (white-box mid-range) the siblings' success relative to
    their target rises with the cosine across both, their raw success does not. At eps
    0.2 the white-box attack always succeeds."""
    rows = []
    for arch, whitebox, successes, cosines in [("a", 0.9, (0.09, 0.18, 0.27), (0.1, 0.2, 0.3)),
                                               ("b", 0.5, (0.2, 0.25, 0.3), (0.4, 0.5, 0.6))]:
        rows += [row(arch, 0.05, "whitebox", whitebox), row(arch, 0.2, "whitebox", 1.0)]
        for i, (success, cosine) in enumerate(zip(successes, cosines)):
            rows += [row(arch, eps, "sibling", success * lift, cosine, f"s{i}")
                     for eps, lift in ((0.05, 1.0), (0.2, 2.0))]
    return pd.DataFrame(rows)


def test_normalised_success_divides_by_the_same_targets_whitebox_at_the_same_eps():
    df = normalising_frame()
    keyed = df.assign(wb=whitebox_success(df)).set_index(["arch", "eps", "source_id"]).wb
    assert keyed[("a", 0.05, "s1")] == 0.9 and keyed[("b", 0.05, "s1")] == 0.5
    assert keyed[("a", 0.2, "s1")] == 1.0
    # Relative to the target: a 0.1, 0.2, 0.3; b 0.4, 0.5, 0.6, in the cosine's order.
    # Raw, a's best (0.27) beats b's worst (0.2); so would any other eps's divisor (1.0).
    normalised = pick(correlations(df), "pooled", "normalised_success")
    assert normalised.n_pairs == 6 and normalised.n_archs == 2
    assert normalised.spearman == pytest.approx(1.0)
    assert spearman(np.array([0.09, 0.18, 0.27, 0.2, 0.25, 0.3]), np.arange(6.0)) < 0.9


def test_no_whitebox_row_no_normalised_success():
    df = normalising_frame()
    df = df[~((df.arch == "b") & (df.source_role == "whitebox"))]
    assert whitebox_success(df)[df.arch == "b"].isna().all()
    normalised = pick(correlations(df), "pooled", "normalised_success")
    assert (normalised.n_pairs, normalised.n_archs) == (3, 1)


def test_midrange_eps_is_where_the_whitebox_attack_succeeds_half_the_time():
    rates = {"a": [0.1, 0.3, 0.62, 0.95], "b": [0.1, 0.45, 0.9, 1.0], "c": [0.4, 0.6, 0.8, 1.0]}
    eps = [0.005, 0.01, 0.02, 0.05]
    df = pd.DataFrame([row(arch, e, "whitebox", r) for arch, rs in rates.items()
                       for e, r in zip(eps, rs)]
                      + [row("a", 0.05, "sibling", 0.5, 0.9)])  # a sibling at 0.5 does not count
    chosen = midrange_eps(df)
    assert chosen[("d", "a", "pgd")] == 0.02
    assert chosen[("d", "b", "pgd")] == 0.01
    assert chosen[("d", "c", "pgd")] == 0.005  # 0.4 and 0.6 tie: the smaller eps


def test_within_architecture_transfer_reads_the_midrange_eps():
    """At each target's mid-range eps success rises with the cosine; at its other eps
    it falls. Only the mid-range reading is perfectly monotone."""
    rows = []
    for arch, mid in (("a", 0.01), ("b", 0.05), ("c", 0.05)):
        for eps in EPS:
            rows.append(row(arch, eps, "whitebox", 0.5 if eps == mid else 0.99))
            sign = 1 if eps == mid else -1
            rows += [row(arch, eps, "sibling", 0.5 + sign * 0.1 * i, 0.1 * i, f"s{i}")
                     for i in range(4)]
    within = pick(correlations(pd.DataFrame(rows)), "within-arch")
    assert within.spearman == pytest.approx(1.0) and within.eps_rule.startswith("mid-range")


def test_correlations_are_deterministic():
    df = confounded()
    pd.testing.assert_frame_equal(correlations(df), correlations(df))
    x = df.grad_cosine.to_numpy()[:20]
    y = df.success_rate.to_numpy()[:20]
    assert bootstrap_interval(x, y) == bootstrap_interval(x, y)
    assert bootstrap_interval(x, y) != bootstrap_interval(x, y, seed=1)


def test_query_attacks_are_correlated_per_eps_pooled_and_within():
    rows = [{**row(arch, 0.05, "sibling", 0.5, 0.1 * i + k, f"s{i}"), "attack": "prgf",
             "attack_kind": "query", "query_reduction": 1.0 + i + 10 * k}
            for k, arch in enumerate("ab") for i in range(3)]
    corr = correlations(pd.DataFrame(rows))
    assert set(corr.outcome) == {"query_reduction"} and set(corr.eps_rule) == {"each"}
    assert pick(corr, "pooled", "query_reduction").spearman == pytest.approx(1.0)
    assert pick(corr, "within-arch", "query_reduction").n_archs == 2


def test_markdown_names_the_analysis_and_the_eps_rule():
    text = correlation_markdown(correlations(confounded()))
    lines = text.splitlines()
    assert "eps_rule" in lines[0] and "analysis" in lines[0] and "n_archs" in lines[0]
    assert any("within-arch" in line and "per arch" in line for line in lines)
    assert any("| smallest" in line and "0.01" in line for line in lines)
    assert correlation_markdown(pd.DataFrame()) == "(no sibling pairs to correlate)"
