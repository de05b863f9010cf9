import numpy as np
import pandas as pd
import pytest

from siblings.correlate import bootstrap_interval, correlations, spearman

from test_aggregate import defended_rows


def test_spearman_is_the_rank_correlation():
    a = np.array([0.1, 0.5, 0.2, 0.9, 0.7])
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.array([1.0, 3.0, 2.0, 5.0, 4.0])) == pytest.approx(1.0)
    assert spearman(a, np.array([2.0, 3.0, 1.0, 4.0, 5.0])) == pytest.approx(0.8)  # 1 - 6*4/120


def test_bootstrap_interval_brackets_the_estimate_and_widens_with_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    lo, hi = bootstrap_interval(x, x + 0.1 * rng.normal(size=40))
    assert 0.9 < lo < hi <= 1.0
    lo_noisy, hi_noisy = bootstrap_interval(x, x + 2 * rng.normal(size=40))
    assert hi_noisy - lo_noisy > 3 * (hi - lo)


def test_correlations_cover_every_metric_over_sibling_pairs_only():
    df, _, _ = defended_rows()
    df = pd.concat([df, df.assign(arch="b", success_rate=df.success_rate / 2)], ignore_index=True)
    # Monotone in success for the sibling pairs; the reversed row would break it if counted.
    df = df.assign(grad_cosine=np.where(df.source_role == "reversed", 0.99, 0.5 + df.success_rate),
                   agreement=0.9, kl=1 - df.success_rate, cka=0.8)
    corr = correlations(df).set_index("metric")
    assert corr.loc["grad_cosine", "n_pairs"] == 6  # sibling + defended roles, two archs
    assert corr.loc["grad_cosine", "spearman"] == pytest.approx(1.0)
    assert corr.loc["kl", "spearman"] == pytest.approx(-1.0)
    assert np.isnan(corr.loc["agreement", "spearman"])  # constant: no rank correlation
