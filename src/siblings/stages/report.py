"""The ``report`` stage: every figure and ``summary.md`` from the aggregated Parquet files."""

from __future__ import annotations

from siblings.artifacts import atomic_path, read_parquet
from siblings.logs import log
from siblings.report import (defense_figure, defense_table, efficiency_figure, query_figure,
                             similarity_figure, summary_markdown, sweep_figure, transfer_figure)
from siblings.roles import DEFENDED_ROLES
from siblings.stages.runner import stage


def run(benchmark: str, models: str, correlations: str, queries: str, support: str,
        outputs: dict[str, str], log_file: str | None = None) -> None:
    """Draws every figure and ``summary.md``; ``outputs`` maps figure/efficiency/queries/
    similarity/defense/sweep/summary to their paths."""
    with stage(log_file, threads=1, seed=0, device=None):
        df, mdf = read_parquet(benchmark), read_parquet(models)
        corr = read_parquet(correlations)
        plain = df[~df.source_role.isin(DEFENDED_ROLES)]
        transfer_figure(plain[plain.attack_kind == "transfer"], outputs["figure"])
        query_figure(df, outputs["queries"])
        efficiency_figure(mdf, outputs["efficiency"])
        similarity_figure(df, corr, outputs["similarity"])
        defense_figure(defense_table(df), outputs["defense"])
        sweep_figure(df, outputs["sweep"])
        with atomic_path(outputs["summary"]) as tmp:
            tmp.write_text(summary_markdown(df, mdf, corr, read_parquet(queries),
                                            read_parquet(support)))
        log.info("report written: %s", ", ".join(outputs.values()))
