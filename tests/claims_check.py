"""Recomputes the claims block of a summary.md from the Parquet files, running the pandas
lines the block prints with nothing but pandas imported: every table cell must equal what
the selected rows give, and every selected row must have its cell."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

SECTION = re.compile(r"\n(\|.*?\|)\n\n```python\n(.*?)\n```", re.S)
Pairs = list[tuple[object, object]]


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


def grid_cells(table: pd.DataFrame, rows: pd.DataFrame, across: str,
               values: list[str]) -> Pairs:
    """(printed, recomputed) for an architecture x ``across`` grid of ratios, plus the grid's
    pairs against the selected rows' pairs (none dropped, none invented)."""
    index = rows.set_index(["arch", across])
    shown = {(r.arch, col) for r in table.itertuples(index=False)
             for col, cell in zip(table.columns[1:], r[1:]) if cell != "n/a"}
    pairs: Pairs = [(sorted(shown), sorted(k for k in index.index
                                           if pd.notna(index.loc[k, values[0]])))]
    for arch, col in shown:
        printed = table.set_index("arch").loc[arch, col]
        pairs.append((printed, ratio(*index.loc[(arch, col), values])))
    return pairs


def correlation_cells(table: pd.DataFrame, rows: pd.DataFrame) -> Pairs:
    again = [(r.attack, r.outcome, r.analysis, f"{r.eps:g}" if pd.notna(r.eps) else r.eps_rule,
              str(r.n_pairs), f"{r.spearman:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]")
             for r in rows.itertuples()]
    return [(list(map(tuple, table[["attack", "outcome", "analysis", "eps", "pairs",
                                    "Spearman rho"]].to_numpy())), again)]


def defense_cells(table: pd.DataFrame, rows: pd.DataFrame, priors: list[pd.DataFrame]) -> Pairs:
    """Each defended sibling's row: its own and the strongest attacker's change against the
    control, its accuracy cost, and each prior-guided attack's reading."""
    defended = rows[rows.source_role == "defended"]
    pairs: Pairs = [(sorted(zip(table.arch, table.sibling, table.defense)),
                     sorted(zip(defended.arch, defended.compression, defended.defense)))]
    for _, t in table.iterrows():
        g = rows[(rows.arch == t.arch) & (rows.compression == t.sibling)
                 & (rows.defense == t.defense)]
        own = g[g.source_role == "defended"].iloc[0]
        named = g[g.source_role == t["strongest attacker"]].iloc[0]
        selected = own.defense_selected is not None and not pd.isna(own.defense_selected) \
            and bool(own.defense_selected)
        pairs += [
            (t.variant, own.defense_variant), (float(t.lam), own.defense_lambda),
            (t.selected, "yes" if selected else ""),
            (float(t["calibration cost (pts)"]), round(own.defense_calibration_cost, 2)),
            (float(t["accuracy cost (pts)"]), round(own.defense_accuracy_cost, 2)),
            (t["defended vs control"], change(own.control_success_ratio,
                                              own.control_success_ratio_ci_low,
                                              own.control_success_ratio_ci_high)),
            (named.success_rate, g.success_rate.max()),  # the strongest, truly
            (t["strongest vs control"], change(named.control_success_ratio,
                                               named.control_success_ratio_ci_low,
                                               named.control_success_ratio_ci_high)),
        ]
        for p in priors:
            title = (f"{p.attack.iloc[0]} eps {p.eps.iloc[0]:g}: independent prior's queries "
                     "/ defended prior's")
            r = p[(p.arch == t.arch) & (p.source_id == f"{t.sibling}+{t.defense}")]
            pairs.append((t[title], "n/a" if r.empty else ratio(
                *r.iloc[0][["value", "ci_low", "ci_high", "bound"]])))
    return pairs


def recompute(summary: str, work: Path) -> Pairs:
    """(printed, recomputed) pairs for every number of the claims block; the pandas lines
    read the run's files under ``work`` (its project directory)."""
    pairs: Pairs = []
    for table_text, code in SECTION.findall(summary):
        table = markdown_table(table_text)
        code = code.replace('pd.read_parquet("', f'pd.read_parquet("{work}/')
        frames = [eval(line, {"pd": pd}).reset_index(drop=True)  # noqa: S307
                  for line in code.splitlines()]
        if "amplification" in frames[0]:
            pairs += grid_cells(table, frames[0], "compression",
                                ["amplification", "amplification_ci_low",
                                 "amplification_ci_high", "amplification_bound"])
        elif "spearman" in frames[0]:
            pairs += correlation_cells(table, frames[0])
        elif "control_success_ratio" in frames[0]:
            pairs += defense_cells(table, frames[0], frames[1:])
        else:
            pairs += grid_cells(table, frames[0], "source_id",
                                ["value", "ci_low", "ci_high", "bound"])
    return pairs
