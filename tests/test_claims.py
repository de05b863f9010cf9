import pandas as pd
import pytest

from siblings.claims import BEGIN, END, block, change, ratio, strongest_attacker, sync_readme

from conftest import ROOT


def test_ratios_carry_their_interval_and_mark_bounds_never_inf():
    assert ratio(8.0, 2.25, 12.0) == "8.00x [2.25, 12.00]"
    assert ratio(3.0, 1.0, 5.0, True) == "> 3.00x [1.00, 5.00]"
    assert ratio(3.0, 1.0, 5.0, "<") == "< 3.00x [1.00, 5.00]"
    assert ratio(float("nan"), 1.0, 2.0) == "n/a"
    assert change(0.31, 0.08, 0.6) == "-69% [-92, -40]"


def test_the_strongest_attacker_is_the_most_successful_and_ties_go_to_the_own_gradient():
    rows = pd.DataFrame({"source_role": ["averaged", "defended", "extracted"],
                         "success_rate": [0.2, 0.2, 0.1]})
    assert strongest_attacker(rows).source_role == "defended"
    assert strongest_attacker(rows.assign(success_rate=[0.3, 0.2, 0.1])).source_role == "averaged"


def test_the_readme_shows_the_default_runs_claims_block_as_generated():
    summary = (ROOT / "reports/default/summary.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert block(readme) == block(summary), (
        "README's claims block differs from reports/default/summary.md: run "
        "`siblings claims reports/default/summary.md --into README.md`")


def test_sync_replaces_only_the_block(tmp_path):
    summary, readme = tmp_path / "summary.md", tmp_path / "README.md"
    summary.write_text(f"# run\n{BEGIN}\nnew numbers\n{END}\nmore")
    readme.write_text(f"intro\n\n{BEGIN}\nold\n{END}\n\nrest\n")
    sync_readme(summary, readme)
    assert readme.read_text() == f"intro\n\n{BEGIN}\nnew numbers\n{END}\n\nrest\n"
    with pytest.raises(ValueError, match="claims:begin"):
        block("no block here")


def sibling_rows(attacks=("pgd",), eps=(0.01, 0.05)) -> pd.DataFrame:
    """Transfer rows of two siblings on two architectures, per attack and eps."""
    return pd.DataFrame([
        {"run_name": "t", "attack": a, "attack_kind": "transfer", "eps": e, "arch": arch,
         "source_role": "sibling", "source_id": c, "compression": c, "defense": "none",
         "amplification": 2.0 + k, "amplification_ci_low": 1.0, "amplification_ci_high": 4.0,
         "amplification_bound": k == 1, "success_rate": 0.2, "defense_lambda": float("nan")}
        for a in attacks for e in eps for arch in ("a1", "a2")
        for k, c in enumerate(("ptq", "prune"))])


NO_READINGS = pd.DataFrame(columns=["attack", "eps", "arch", "source_role", "source_id",
                                    "reference", "statistic", "level", "value", "ci_low",
                                    "ci_high", "bound"])
NO_CORRELATIONS = pd.DataFrame(columns=["metric", "attack", "outcome", "analysis", "eps",
                                        "eps_rule", "n_pairs", "spearman", "ci_low", "ci_high"])


def test_a_run_without_queries_or_defense_says_what_it_did_not_measure():
    from siblings.claims import claims_markdown

    text = claims_markdown(sibling_rows(), NO_CORRELATIONS, NO_READINGS)
    assert text.count("(not measured in this run's config)") == 2  # claims 2 and 3
    assert "> 3.00x [1.00, 4.00]" in text and "eps == 0.01" in text and "0.05" not in text


def test_each_transfer_attack_gets_its_own_amplification_table():
    from siblings.claims import transfer_amplification

    readings = transfer_amplification(sibling_rows(attacks=("mifgsm", "pgd")))
    assert [r.filters[0].query.split(" and ")[0] for r in readings] == [
        "attack == 'mifgsm'", "attack == 'pgd'"]


def test_adaptive_attackers_without_the_defended_sibling_itself_are_left_out():
    from siblings.claims import defense_reduction

    rows = sibling_rows().assign(source_role="averaged", defense="u1", defense_lambda=1.0,
                                 control_success_ratio=0.5, control_success_ratio_ci_low=0.2,
                                 control_success_ratio_ci_high=0.9, defense_accuracy_cost=1.0)
    (reading,) = defense_reduction(rows, NO_READINGS)
    assert reading.table.empty


def defense_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """PGD rows of two defended siblings and their control on one architecture (the
    averaged attacker beats one's own gradient), and P-RGF readings with each as prior."""
    def row(defense, lam, role, rate, ratio, selected, cost):
        return {"attack": "pgd", "attack_kind": "transfer", "eps": 0.01, "arch": "a",
                "compression": "q8", "defense": defense, "source_role": role,
                "source_id": f"q8+{defense}", "defense_lambda": lam,
                "defense_variant": "control" if lam == 0 else "abs/ball",
                "defense_selected": None if lam == 0 else selected,
                "defense_control": None if lam == 0 else "u0", "defense_accuracy_cost": cost,
                "success_rate": rate, "control_success_ratio": ratio,
                "control_success_ratio_ci_low": ratio / 2, "control_success_ratio_ci_high":
                ratio * 2}
    df = pd.DataFrame([row("u0", 0.0, "defended", 0.4, float("nan"), None, 0.1),
                       row("u1", 1.0, "defended", 0.1, 0.25, True, 0.8),
                       row("u1", 1.0, "averaged", 0.16, 0.4, True, 0.8),
                       row("u3", 3.0, "defended", 0.04, 0.1, False, 2.5)])
    readings = pd.DataFrame([{"attack": "prgf", "eps": 0.05, "arch": "a", "source_role":
                              "defended", "source_id": f"q8+{d}", "reference": "independent",
                              "statistic": "query_factor", "level": "final", "value": v,
                              "ci_low": v / 2, "ci_high": v * 2, "bound": ""}
                             for d, v in (("u0", 20.0), ("u1", 1.2), ("u3", 0.9))])
    return df, readings


def test_defense_outcomes_read_the_strongest_attacker_and_the_prior_against_the_target():
    from siblings.claims import best_defenses, defense_outcomes

    out = defense_outcomes(*defense_rows()).set_index("defense")
    assert out.loc["u1", "strongest"] == "averaged" and out.loc["u1", "transfer"] == 0.4
    assert out.loc["u0", "transfer"] == 1.0 and out.loc["u0", "control"] == "u0"
    assert out.loc["u1", "prior"] == 1.2 and bool(out.loc["u1", "meets"])
    assert not out.loc["u3", "meets"]  # halves transfer but costs 2.5 points
    (best,) = best_defenses(out.reset_index()).itertuples()
    assert best.defense == "u1"  # u3 transfers less but is not the selected lam


def test_the_frontier_draws_each_variant_from_its_control_in_its_architecture_panel(
        monkeypatch, tmp_path):
    from siblings.claims import defense_outcomes
    from siblings.report import sweep_figure

    df, readings = defense_rows()
    other = df.assign(arch="b")
    out = defense_outcomes(pd.concat([df, other]), pd.concat([readings,
                                                              readings.assign(arch="b")]))
    figures = []
    monkeypatch.setattr("siblings.report._save", lambda figure, out: figures.append(figure))
    sweep_figure(out, tmp_path / "sweep.png")
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes[:2]] == ["a", "b"] and len(axes) == 4  # pgd, prior
    assert sorted(t.get_text() for t in axes[0].texts) == ["0", "1", "3"]
    rings = [c for c in axes[0].collections if c.get_label().startswith("selected")]
    assert rings[0].get_offsets().tolist() == [[0.8, 0.4]]  # u1 at its cost and transfer


def test_the_target_counts_every_defended_architecture_and_names_those_without_a_lam():
    from siblings.claims import defense_outcomes
    from siblings.report import target_markdown

    df, readings = defense_rows()
    unselected = df.assign(arch="b", defense_selected=df.defense_selected.map(
        lambda v: None if v is None else False))
    out = defense_outcomes(pd.concat([df, unselected]),
                           pd.concat([readings, readings.assign(arch="b")]))
    text = target_markdown(out)
    assert text.startswith("Target met on 1 of 2 architectures (pgd); no lam within tolerance "
                           "on the calibration split: b.")
    assert "| pgd eps 0.01 | a " in text and "| yes " in text
    assert target_markdown(out[out.arch == "b"]).count("\n") == 0
