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
        "`.venv/bin/python -m siblings.claims reports/default/summary.md README.md`")


def test_sync_replaces_only_the_block(tmp_path):
    summary, readme = tmp_path / "summary.md", tmp_path / "README.md"
    summary.write_text(f"# run\n{BEGIN}\nnew numbers\n{END}\nmore")
    readme.write_text(f"intro\n\n{BEGIN}\nold\n{END}\n\nrest\n")
    sync_readme(summary, readme)
    assert readme.read_text() == f"intro\n\n{BEGIN}\nnew numbers\n{END}\n\nrest\n"
    with pytest.raises(ValueError, match="claims:begin"):
        block("no block here")
