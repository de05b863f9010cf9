"""The ``report`` stage: every figure and ``summary.md`` from the aggregated Parquet files."""

from __future__ import annotations

from pathlib import Path

from siblings.artifacts import atomic_path, read_parquet
from siblings.logs import log
from siblings.figures import FIGURES
from siblings.report import DRAW, Tables, summary
from siblings.stages.runner import stage


def run(tables: dict[str, str], figures: dict[str, str], summary_out: str,
        log_file: str | None = None) -> None:
    """Draws every figure of ``FIGURES`` into ``figures[name]`` (PNG, and PDF beside it)
    and writes ``summary_out``; ``tables`` maps each field of ``Tables`` to its Parquet."""
    with stage(log_file, threads=1, seed=0, device=None):
        t = Tables(**{name: read_parquet(path) for name, path in tables.items()})
        for name in FIGURES:
            DRAW[name](t, Path(figures[name]))
        with atomic_path(summary_out) as tmp:
            tmp.write_text(summary(t))
        log.info("report written: %s, %s", ", ".join(figures.values()), summary_out)
