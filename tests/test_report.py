from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from siblings.aggregate import with_defense
from siblings.report import defense_markdown, defense_table

from conftest import ROOT
from test_aggregate import defended_rows


def test_defense_table_sets_each_defended_sibling_against_its_control_and_the_original():
    df, models, defenses = defended_rows()
    df = with_defense(df.assign(median_queries_success=np.nan), models,
                      defenses)
    table = defense_table(df).set_index("measure")
    success = table.loc["success_rate"]
    assert (success.undefended, success.control, success.defended, success.reversed) == (
        0.4, 0.3, 0.1, 0.05)
    assert np.isnan(success.extracted)  # no such row: blank, not invented
    accuracy = table.loc["source_clean_acc"]
    assert (accuracy.undefended, accuracy.control, accuracy.defended) == (88.0, 87.5, 86.0)
    assert bool(success.failed)
    text = defense_markdown(defense_table(df))
    assert "-67% [" in text and "FAILED" in text and "-1.50" in text
    assert "10.0 [2.8, 30.1] (2/20)" in text  # every rate with its interval and count


def test_controls_are_not_defenses_of_their_own():
    df, models, defenses = defended_rows()
    df = with_defense(df[df.defense != "u5"].assign(median_queries_success=np.nan), models,
                      defenses)
    assert defense_table(df).empty


def test_headline_prints_each_rate_with_its_interval_and_count_and_marks_a_missing_role():
    from siblings.aggregate import with_success_intervals
    from siblings.report import headline_table

    base = {"arch": "a", "attack": "pgd", "eps": 0.01, "n_examples": 100,
            "source_clean_acc": 88.0, "target_clean_acc": 89.0, "amplification": 15.0,
            "amplification_ci_low": 9.0, "amplification_ci_high": 24.0,
            "amplification_bound": True}
    rows = [{**base, "source_role": "sibling", "compression": "ptq-w8a8", "n_success": 15},
            {**base, "source_role": "independent", "compression": None, "n_success": 0}]
    df = with_success_intervals(pd.DataFrame(rows).assign(
        success_rate=lambda d: d.n_success / d.n_examples))
    row = headline_table(df).iloc[0]
    assert row["sibling success (%)"] == "15.0 [9.3, 23.3] (15/100)"
    assert row["independent success (%)"] == "0.0 [0.0, 3.7] (0/100)"
    assert row["white-box success (%)"] == "n/a"
    assert row["amplification"] == "> 15.00x [9.00, 24.00]"


def test_the_query_headline_reads_each_prior_against_the_independent_prior():
    from siblings.aggregate import query_readings
    from siblings.report import query_control_table

    nan = np.nan
    df = pd.DataFrame([{"dataset": "d", "arch": "a", "eps": 0.05, "attack": "prgf",
                        "attack_kind": "query", "source_role": role, "source_id": role,
                        "queries_at_success": q, "query_budget": 100,
                        "success_rate": float(np.mean(~np.isnan(q)))}
                       for role, q in (("sibling", [2.0, 4.0, 8.0, nan]),
                                       ("independent", [10.0, 40.0, nan, nan]),
                                       ("whitebox", [2.0, 2.0, 2.0, 2.0]))])
    table = query_control_table(query_readings(df, {"prgf": {}})).set_index("prior")
    assert set(table.index) == {"sibling", "whitebox"}
    assert table.loc["sibling", "x fewer queries (at independent's final rate)"].startswith("10.00x [")
    assert "inf" not in table.to_string()


def test_a_sibling_that_fooled_nothing_does_not_break_the_amplification_heatmap(
        monkeypatch, tmp_path):
    from siblings.report import heatmap_figure

    rows = pd.DataFrame([{"attack": "pgd", "attack_kind": "transfer", "eps": 0.01, "arch": a,
                          "source_role": "sibling", "compression": c, "amplification": v,
                          "amplification_ci_low": 0.0, "amplification_ci_high": v + 1,
                          "amplification_bound": False}
                         for a, c, v in (("a1", "ptq", 0.0), ("a1", "prune", 4.0),
                                         ("a2", "ptq", 2.0), ("a2", "prune", 1.0))])
    readings = pd.DataFrame(columns=["attack", "eps", "arch", "source_role", "source_id",
                                     "reference", "statistic", "level", "value", "ci_low",
                                     "ci_high", "bound"])
    figures = []
    monkeypatch.setattr("siblings.report._save", lambda figure, out: figures.append(figure))
    heatmap_figure(rows, readings, tmp_path / "amplification.png")
    cells = sorted(t.get_text() for t in figures[0].axes[0].texts)
    assert cells[0].startswith("0.0x") and len(cells) == 4


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_caption_renders_from_every_config_without_a_missing_key(config):
    """Captions quote the run's settings; a key a config lacks must fail here, not blank out
    in a report (Snakemake renders them leniently)."""
    import jinja2
    import yaml

    from siblings.config import validate

    cfg = validate(yaml.safe_load((ROOT / "config" / config).read_text()))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for caption in sorted((ROOT / "workflow/report").glob("*.rst")):
        text = env.from_string(caption.read_text()).render(snakemake=SimpleNamespace(config=cfg))
        assert f"``{cfg['name']}``" in text, caption.name  # every caption names its run
