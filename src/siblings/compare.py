"""Two runs' result tables, value for value: did a change, or another executor, move a number?

``python -m siblings.compare RESULTS_A RESULTS_B`` compares every Parquet file the first
run wrote (``results/<name>/*.parquet``) with the second's, cell by cell: NaN equals NaN,
lists are compared element by element, and nothing is rounded. Wall-clock measurements
(latency) never repeat, so they are skipped; ``--ignore-provenance`` also skips what names
the code and config version, for comparing two commits. Columns only the second run has
(new ones) are listed, not compared. Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TIMING = ("latency_ms", "source_latency_ms")
PROVENANCE = ("code_version", "similarity_code_version", "git_commit", "config_hash",
              "job_config_hash", "package_versions")


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _same(a: object, b: object) -> bool:
    """Exact equality; NaN and None are both 'missing'; arrays and lists element by element."""
    if isinstance(a, (np.ndarray, list)) or isinstance(b, (np.ndarray, list)):
        if _missing(a) or _missing(b):
            return False
        a, b = list(a), list(b)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    return bool(a == b)


def table_differences(a: pd.DataFrame, b: pd.DataFrame, skip: set[str]) -> list[str]:
    """What differs between two versions of one table (same row order expected)."""
    out = []
    missing = [c for c in a.columns if c not in b.columns and c not in skip]
    if missing:
        out.append(f"columns missing from the second: {missing}")
    if len(a) != len(b):
        return out + [f"{len(a)} rows against {len(b)}"]
    for column in [c for c in a.columns if c in b.columns and c not in skip]:
        rows = [i for i, (x, y) in enumerate(zip(a[column], b[column])) if not _same(x, y)]
        if rows:
            out.append(f"column {column}: {len(rows)} of {len(a)} rows differ, first at row "
                       f"{rows[0]}: {a[column].iloc[rows[0]]!r} vs {b[column].iloc[rows[0]]!r}")
    return out


def compare(first: Path, second: Path, ignore_provenance: bool = False
            ) -> tuple[list[str], bool]:
    """Report lines (per Parquet file of ``first``: its size and whether ``second``'s
    equals it, then each difference) and whether everything was equal."""
    skip = set(TIMING) | (set(PROVENANCE) if ignore_provenance else set())
    lines, equal = [], True
    for path in sorted(first.glob("*.parquet")):
        other = second / path.name
        if not other.exists():
            lines.append(f"{path.name}: {other} does not exist")
            equal = False
            continue
        a, b = pd.read_parquet(path), pd.read_parquet(other)
        diffs = table_differences(a, b, skip)
        new = sorted(set(b.columns) - set(a.columns))
        lines.append(f"{path.name}: {len(a)} rows x {len(a.columns)} columns "
                     f"{'DIFFERENT' if diffs else 'equal'}"
                     + (f" (columns only in the second: {new})" if new else ""))
        lines += [f"  - {d}" for d in diffs]
        equal = equal and not diffs
    if not lines:
        return [f"no Parquet files in {first}"], False
    return lines, equal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siblings compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="results/<name> of the reference run")
    parser.add_argument("second", type=Path, help="results/<name> of the run to check")
    parser.add_argument("--ignore-provenance", action="store_true",
                        help=f"also skip {', '.join(PROVENANCE)}")
    args = parser.parse_args(argv)
    lines, equal = compare(args.first, args.second, args.ignore_provenance)
    print("\n".join(lines))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
