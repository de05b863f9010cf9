import math

import numpy as np
import pandas as pd
import pytest

from siblings.aggregate import (amplification, queries_to_reach, query_reduction, with_defense,
                                with_success_intervals)

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


def defended_rows() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """PGD from a sibling, its control and its unpaired version; their two model rows."""
    base = {"dataset": "d", "arch": "a", "attack": "pgd", "eps": 0.01, "attack_kind": "transfer",
            "compression": "q8", "query_reduction": NAN}
    df = pd.DataFrame([
        {**base, "source_role": "sibling", "defense": "none", "success_rate": 0.4, "source_clean_acc": 88.0},
        {**base, "source_role": "defended", "defense": "u0", "success_rate": 0.3, "source_clean_acc": 87.5},
        {**base, "source_role": "defended", "defense": "u5", "success_rate": 0.1, "source_clean_acc": 86.0},
        {**base, "source_role": "reversed", "defense": "u5", "success_rate": 0.05, "source_clean_acc": 86.0},
    ])
    models = pd.DataFrame([{"role": "defended", "arch": "a", "compression": "q8", "defense": d,
                            "failed": f, "accuracy_cost": c}
                           for d, f, c in (("u0", False, 0.5), ("u5", True, 2.0))])
    defenses = {"u0": {"lam": 0, "form": "abs"}, "u5": {"lam": 5, "form": "abs", "control": "u0"}}
    return df, models, defenses


def test_defended_rows_carry_their_control_and_the_undefended_sibling():
    df, models, defenses = defended_rows()
    out = with_defense(df, models, defenses).set_index(["source_role", "defense"])
    unpaired, reversed_ = out.loc[("defended", "u5")], out.loc[("reversed", "u5")]
    for row in (unpaired, reversed_):  # the adaptive attacker is judged against the same control
        assert row.control_success_rate == 0.3 and row.undefended_success_rate == 0.4
        assert row.control_clean_acc == 87.5 and row.defense_control == "u0"
        assert row.defense_lambda == 5 and bool(row.defense_failed) and row.defense_accuracy_cost == 2.0
    control = out.loc[("defended", "u0")]
    assert control.defense_control is None and np.isnan(control.control_success_rate)
    assert np.isnan(out.loc[("sibling", "none")].defense_lambda)


def test_every_success_rate_gets_its_wilson_interval():
    df = pd.DataFrame({"n_success": [15, 0], "n_examples": [100, 40], "success_rate": [0.15, 0.0]})
    out = with_success_intervals(df)
    assert out.success_ci_low.tolist() == pytest.approx([0.09306, 0.0], abs=5e-5)
    assert out.success_ci_high.tolist() == pytest.approx([0.23284, 0.08762], abs=5e-5)
