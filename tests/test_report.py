import numpy as np
import pandas as pd
import pytest

from siblings.aggregate import with_defense
from siblings.report import defense_markdown, defense_table

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
    assert "67% lower" in text and "FAILED" in text and "-1.50" in text


def test_controls_are_not_defenses_of_their_own():
    df, models, defenses = defended_rows()
    df = with_defense(df[df.defense != "u5"].assign(median_queries_success=np.nan), models,
                      defenses)
    assert defense_table(df).empty
