"""Recomputes the claims block of a summary.md from the Parquet files, running the pandas
lines the block prints: every table cell must equal the number its rows give."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

SECTION = re.compile(r"\n(\|.*?\|)\n\n```python\n(.*?)\n```", re.S)
ATTACKERS = ("defended", "reversed", "extracted", "averaged")


def markdown_table(text: str) -> pd.DataFrame:
    """A pipe table as written by ``DataFrame.to_markdown``, every cell a string."""
    lines = [line.strip().strip("|").split("|") for line in text.splitlines()]
    header, rows = [c.strip() for c in lines[0]], lines[2:]
    return pd.DataFrame([[c.strip() for c in row] for row in rows], columns=header)


def ratio(v: float, low: float, high: float, bound: object) -> str:
    if pd.isna(v):
        return "n/a"
    if isinstance(bound, (bool, np.bool_)):
        mark = "> " if bound else ""
    else:
        mark = f"{bound} " if bound else ""
    return f"{mark}{v:.2f}x [{low:.2f}, {high:.2f}]"


def change(v: float, low: float, high: float) -> str:
    return "n/a" if pd.isna(v) else (
        f"{100 * (v - 1):+.0f}% [{100 * (low - 1):+.0f}, {100 * (high - 1):+.0f}]")


def transfer_cells(table: pd.DataFrame, rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(printed, recomputed) for every (architecture, sibling) cell."""
    index = rows.set_index(["arch", "compression"])
    return [(cell, ratio(*index.loc[(r.arch, sibling), ["amplification",
                                                        "amplification_ci_low",
                                                        "amplification_ci_high",
                                                        "amplification_bound"]]))
            for r in table.itertuples(index=False) for sibling, cell in
            zip(table.columns[1:], r[1:]) if cell != "n/a"]


def query_cells(table: pd.DataFrame, rows: pd.DataFrame) -> list[tuple[str, str]]:
    index = rows.set_index(["arch", "source_id"])
    return [(cell, ratio(*index.loc[(r.arch, prior), ["value", "ci_low", "ci_high", "bound"]]))
            for r in table.itertuples(index=False) for prior, cell in
            zip(table.columns[1:], r[1:]) if cell != "n/a"]


def correlation_cells(table: pd.DataFrame, rows: pd.DataFrame) -> list[tuple[str, str]]:
    return [(f"{t['Spearman rho']} {t['pairs']}",
             f"{r.spearman:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] {r.n_pairs}")
            for (_, t), r in zip(table.iterrows(), rows.itertuples())] + [
        (str(len(table)), str(len(rows)))]


def defense_cells(table: pd.DataFrame, rows: pd.DataFrame,
                  priors: pd.DataFrame) -> list[tuple[object, object]]:
    out = []
    for _, t in table.iterrows():
        g = rows[(rows.arch == t.arch) & (rows.compression == t.sibling)
                 & (rows.defense == t.defense)]
        own = g[g.source_role == "defended"].iloc[0]
        named = g[g.source_role == t["strongest attacker"]].iloc[0]
        prior = priors[(priors.arch == t.arch)
                       & (priors.source_id == f"{t.sibling}+{t.defense}")]
        out += [
            (float(t["accuracy cost (pts)"]), round(own.defense_accuracy_cost, 2)),
            (t["defended vs control"], change(own.control_success_ratio,
                                              own.control_success_ratio_ci_low,
                                              own.control_success_ratio_ci_high)),
            (str(named.success_rate), str(g.success_rate.max())),  # the strongest, truly
            (t["strongest vs control"], change(named.control_success_ratio,
                                               named.control_success_ratio_ci_low,
                                               named.control_success_ratio_ci_high)),
            (t["P-RGF: independent prior's queries / defended prior's"],
             "n/a" if prior.empty else ratio(*prior.iloc[0][["value", "ci_low", "ci_high",
                                                              "bound"]])),
        ]
    return out


def recompute(summary: str, work: Path) -> list[tuple[object, object]]:
    """(printed, recomputed) pairs for every number of the claims block; the pandas lines
    run in ``work`` (the run's project directory)."""
    pairs = []
    for table_text, code in SECTION.findall(summary):
        table = markdown_table(table_text)
        code = code.replace('pd.read_parquet("', f'pd.read_parquet("{work}/')
        frames = [eval(line, {"pd": pd, "np": np}) for line in code.splitlines()]  # noqa: S307
        frames = [f.reset_index(drop=True) for f in frames]
        if "amplification" in frames[0]:
            pairs += transfer_cells(table, frames[0])
        elif "spearman" in frames[0]:
            pairs += correlation_cells(table, frames[0])
        elif "control_success_ratio" in frames[0]:
            pairs += defense_cells(table, frames[0], frames[1])
        else:
            pairs += query_cells(table, frames[0])
    return pairs
