import math

import numpy as np
import pandas as pd
import pytest

from siblings.aggregate import (queries_to_reach, query_factor, query_readings, rate_ratio,
                                with_amplification, with_defense, with_query_columns,
                                with_selection, with_success_intervals)

NAN = float("nan")
INF = math.inf


def test_queries_to_reach_reads_the_success_curve():
    q = np.array([5.0, INF, 50.0, 20.0, INF])  # 3 of 5 succeed, at 5, 20 and 50 queries
    levels = [0.0, 0.2, 0.4, 0.6, 0.8]
    assert queries_to_reach(np.tile(q, (5, 1)), np.array(levels)).tolist() == [0, 5, 20, 50, INF]


def rows(**by_attack) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "arch": "a", "eps": 0.05, "attack": attack,
                          "attack_kind": "query", "source_role": role, "source_id": role,
                          "queries_at_success": q, "query_budget": 1000,
                          "success_rate": float(np.mean(~np.isnan(q)))}
                         for attack, (role, q) in by_attack.items()])


def with_queries(df: pd.DataFrame) -> pd.DataFrame:
    attacks = {"rgf": {}, "prgf": {"baseline": "rgf"}}
    return with_query_columns(df, query_readings(df, attacks)).set_index("attack")


def test_query_reduction_at_equal_success():
    df = rows(rgf=("none", [100.0, 400.0, NAN, NAN]), prgf=("sibling", [10.0, 20.0, 40.0, NAN]))
    out = with_queries(df)
    # RGF reaches its final 50% at 400 queries; P-RGF reaches 50% at 20: 20x fewer.
    assert out.loc["prgf", "baseline_queries_needed"] == 400
    assert out.loc["prgf", "queries_needed"] == 20
    assert out.loc["prgf", "query_reduction"] == pytest.approx(20.0)
    assert out.loc["prgf", "query_reduction_bound"] == ""
    low, high = out.loc["prgf", ["query_reduction_ci_low", "query_reduction_ci_high"]]
    assert low <= 20.0 <= high and low < high
    assert np.isnan(out.loc["rgf", "query_reduction"])


def test_a_query_factor_that_one_side_never_reached_is_a_bound_never_inf():
    """Read at the budget: a reference that never got there gives '>', an attack that never
    got there '<'; queries_needed stays finite or NaN."""
    df = rows(rgf=("none", [100.0, 400.0, NAN, NAN]), prgf=("sibling", [10.0, NAN, NAN, NAN]))
    out = with_queries(df)
    assert np.isnan(out.loc["prgf", "queries_needed"])
    assert out.loc["prgf", "query_reduction"] == pytest.approx(400 / 1000)
    assert out.loc["prgf", "query_reduction_bound"] == "<"
    ref, this = np.array([[INF, INF, 300.0, 20.0]]), np.array([[5.0, 10.0, 30.0, INF]])
    factor, bound, ref_needed, needed = query_factor(ref, this, 0.75, 1000)
    assert factor[0] == pytest.approx(1000 / 30) and bound[0] == ">"
    assert np.isnan(ref_needed[0]) and needed[0] == 30
    numbers = out.select_dtypes("number").to_numpy(dtype=float)
    assert not np.isinf(numbers).any()


def test_query_amplification_compares_the_sibling_prior_with_the_independent_prior():
    df = pd.concat([rows(prgf=("sibling", [10.0, 20.0, 40.0, NAN])),
                    rows(prgf=("independent", [50.0, 200.0, NAN, NAN]))], ignore_index=True)
    out = with_query_columns(df, query_readings(df, {"prgf": {}}))
    sibling = out[out.source_role == "sibling"].iloc[0]
    assert sibling.query_amplification == pytest.approx(200 / 20)  # at the independent's 50%
    assert np.isnan(out[out.source_role == "independent"].query_amplification.iloc[0])


def test_query_readings_take_several_levels_and_the_area_between_curves():
    df = rows(rgf=("none", [100.0, 400.0, NAN, NAN]), prgf=("sibling", [10.0, 20.0, 40.0, NAN]))
    readings = query_readings(df, {"rgf": {}, "prgf": {"baseline": "rgf"}})
    by_level = readings.set_index("level")
    assert set(by_level.index) == {"final", "25%", "50%", "area"}
    assert by_level.loc["25%", "value"] == pytest.approx(100 / 10)
    # areas: P-RGF (990 + 980 + 960) / 4000, RGF (900 + 600) / 4000, in points
    assert by_level.loc["area", "value"] == pytest.approx(100 * (2930 - 1500) / 4000)
    assert (readings.ci_low <= readings.value).all() and (readings.value <= readings.ci_high).all()


def success_rows(sibling: list[bool], independent: list[bool]) -> pd.DataFrame:
    return pd.DataFrame([
        {"dataset": "d", "arch": "a", "attack": "pgd", "eps": 0.1, "source_role": r,
         "source_id": r, "image_success": s, "success_rate": float(np.mean(s))}
        for r, s in [("sibling", sibling), ("independent", independent),
                     ("whitebox", [True] * len(sibling))]])


def test_amplification_divides_by_the_independent_source_with_a_paired_interval():
    out = with_amplification(success_rows([True] * 6 + [False] * 14, [True] * 2 + [False] * 18))
    assert out.amplification[0] == pytest.approx(3.0) and out.amplification[1:].isna().all()
    assert not out.amplification_bound[0]
    assert out.amplification_ci_low[0] < 3.0 < out.amplification_ci_high[0]
    # pairing: the same image draws for both sources, so identical sources give exactly 1
    same = with_amplification(success_rows([True, False] * 10, [True, False] * 10))
    assert same.amplification_ci_low[0] == same.amplification_ci_high[0] == 1.0


def test_amplification_over_an_independent_source_that_fooled_nothing_is_a_lower_bound():
    out = with_amplification(success_rows([True] * 31 + [False] * 69, [False] * 100))
    assert out.amplification[0] == 31 and out.amplification_bound[0]  # "> 31x, 0/100"
    assert np.isfinite(out.loc[0, ["amplification_ci_low", "amplification_ci_high"]].to_numpy(float)).all()
    ratio, bound = rate_ratio(np.zeros((1, 5), bool), np.zeros((1, 5), bool))
    assert np.isnan(ratio[0]) and not bound[0]


def defended_rows() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """PGD from a sibling, its control and its unpaired version; their two model rows."""
    base = {"dataset": "d", "arch": "a", "attack": "pgd", "eps": 0.01, "attack_kind": "transfer",
            "compression": "q8", "query_reduction": NAN}
    df = with_success_intervals(pd.DataFrame([
        {**base, "source_role": role, "defense": defense, "n_success": k, "n_examples": 20,
         "success_rate": k / 20, "image_success": [True] * k + [False] * (20 - k),
         "source_clean_acc": acc}
        for role, defense, k, acc in (("sibling", "none", 8, 88.0), ("defended", "u0", 6, 87.5),
                                      ("defended", "u5", 2, 86.0), ("reversed", "u5", 1, 86.0))]))
    models = pd.DataFrame([{"role": "defended", "arch": "a", "compression": "q8", "defense": d,
                            "failed": f, "accuracy_cost": c, "calibration_cost": c - 0.1,
                            "calibration_lost": round(10 * (c - 0.1)), "n_calibration": 1000,
                            "defense_variant": v, "defense_selected": s}
                           for d, f, c, v, s in (("u0", False, 0.5, "control", None),
                                                 ("u5", True, 2.0, "abs/clean", False))])
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
        assert row.defense_calibration_cost == 1.9 and row.defense_variant == "abs/clean"
        assert row.defense_selected is False
    control = out.loc[("defended", "u0")]
    assert control.defense_control is None and np.isnan(control.control_success_rate)
    assert np.isnan(out.loc[("sibling", "none")].defense_lambda)


def test_lam_is_selected_per_sibling_and_variant_on_the_calibration_cost():
    rows = [("resnet", "abs/ball", 0.3, 2), ("resnet", "abs/ball", 1.0, 10),
            ("resnet", "abs/ball", 3.0, 25), ("resnet", "sign/ball", 1.0, 15),
            ("vgg", "abs/ball", 1.0, 4), ("resnet", "control", 0.0, 1)]  # lost of 1,000
    models = pd.DataFrame([{"dataset": "d", "role": "defended", "compression": "q8",
                            "arch": a, "defense_variant": v, "defense_lambda": lam,
                            "calibration_lost": lost, "n_calibration": 1000,
                            "defense": f"{v}-{lam}"}
                           for a, v, lam, lost in rows])
    models = pd.concat([models, pd.DataFrame([{"dataset": "d", "role": "sibling", "arch": "vgg",
                                               "compression": "q8", "defense": "none"}])])
    defenses = {f"{v}-{lam}": {"tolerance": 1.0} for _, v, lam, _ in rows}
    out = with_selection(models.reset_index(drop=True), defenses)
    picked = out[out.defense_selected == True]  # noqa: E712
    assert sorted(zip(picked.arch, picked.defense_lambda)) == [("resnet", 1.0), ("vgg", 1.0)]
    assert (out[out.defense_variant == "sign/ball"].defense_selected == False).all()  # noqa: E712
    assert out[out.defense_lambda.isna() | (out.defense_lambda == 0)].defense_selected.isna().all()


def test_every_success_rate_gets_its_wilson_interval():
    df = pd.DataFrame({"n_success": [15, 0], "n_examples": [100, 40], "success_rate": [0.15, 0.0]})
    out = with_success_intervals(df)
    assert out.success_ci_low.tolist() == pytest.approx([0.09306, 0.0], abs=5e-5)
    assert out.success_ci_high.tolist() == pytest.approx([0.23284, 0.08762], abs=5e-5)
