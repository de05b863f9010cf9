import math

import numpy as np
import pandas as pd
import pytest

from siblings.aggregate import amplification, queries_to_reach, query_reduction

NAN = float("nan")


def test_queries_to_reach_reads_the_success_curve():
    q = [5.0, NAN, 50.0, 20.0, NAN]  # 3 of 5 succeed, at 5, 20 and 50 queries
    assert queries_to_reach(q, 0.0) == 0
    assert queries_to_reach(q, 0.2) == 5
    assert queries_to_reach(q, 0.4) == 20
    assert queries_to_reach(q, 0.6) == 50
    assert queries_to_reach(q, 0.8) == math.inf  # failures never succeed


def rows(**by_attack) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "arch": "a", "eps": 0.05, "attack": attack,
                          "source_role": role, "queries_at_success": q,
                          "success_rate": float(np.mean(~np.isnan(q)))}
                         for attack, (role, q) in by_attack.items()])


def test_query_reduction_at_equal_success():
    df = rows(rgf=("none", [100.0, 400.0, NAN, NAN]), prgf=("sibling", [10.0, 20.0, 40.0, NAN]))
    out = query_reduction(df, {"rgf": {}, "prgf": {"baseline": "rgf"}}).set_index("attack")
    # RGF reaches its final 50% at 400 queries; P-RGF reaches 50% at 20: 20x fewer.
    assert out.loc["prgf", "baseline_queries_needed"] == 400
    assert out.loc["prgf", "queries_needed"] == 20
    assert out.loc["prgf", "query_reduction"] == pytest.approx(20.0)
    assert np.isnan(out.loc["rgf", "query_reduction"])


def test_query_reduction_is_not_claimed_when_the_prior_attack_falls_short():
    df = rows(rgf=("none", [100.0, 400.0, NAN, NAN]), prgf=("sibling", [10.0, NAN, NAN, NAN]))
    out = query_reduction(df, {"rgf": {}, "prgf": {"baseline": "rgf"}}).set_index("attack")
    assert out.loc["prgf", "queries_needed"] == math.inf
    assert np.isnan(out.loc["prgf", "query_reduction"])


def test_amplification_divides_by_the_independent_source():
    df = pd.DataFrame([
        {"dataset": "d", "arch": "a", "attack": "pgd", "eps": 0.1, "source_role": r, "success_rate": s}
        for r, s in [("sibling", 0.6), ("independent", 0.2), ("whitebox", 0.9)]])
    amp = amplification(df)
    assert amp[0] == pytest.approx(3.0) and amp[1:].isna().all()
