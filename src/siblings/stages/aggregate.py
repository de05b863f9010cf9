"""The ``aggregate`` stage: every per-job table into the run's typed, provenance-stamped
Parquet tables, each checked against its declaration (:mod:`siblings.schema`)."""

from __future__ import annotations

import pandas as pd
import yaml

from siblings.aggregate import (BENCHMARK, MODELS, QUERIES, SIMILARITY, SUPPORT, model_row,
                                query_readings, similarity_table, with_amplification,
                                with_defense, with_query_columns, with_sibling_measurements,
                                with_selection, with_similarity, with_success_intervals)
from siblings.artifacts import atomic_path, read_parquet
from siblings.cards import read_card
from siblings.correlate import CORRELATIONS, correlations
from siblings.logs import log
from siblings.provenance import config_hash, git_commit, package_versions
from siblings.stages.runner import stage


def run(attack_tables: list[str], similarity_tables: list[str],
        model_sidecars: dict[str, list[str]], config: dict, benchmark_out: str,
        models_out: str, similarity_out: str, correlations_out: str, queries_out: str,
        config_out: str,
        support: list[dict], support_out: str, log_file: str | None = None) -> None:
    """Concatenates attack tables into ``benchmark_out``, model sidecars into
    ``models_out`` and similarity tables into ``similarity_out``; correlates similarity
    with attack outcomes into ``correlations_out``; every query attack's readings against
    its references (the no-prior baseline, the independent prior) into ``queries_out``.

    ``model_sidecars`` maps a role (full, independent, sibling, defended, extracted) to its
    sidecar paths. The validated ``config`` is saved beside them, so every row's
    ``config_hash`` resolves, and the planner's ``support`` matrix into ``support_out``.
    """
    with stage(log_file, threads=1, seed=0, device=None):
        digest = config_hash(config)
        stamp = {"config_hash": digest, "run_name": config["name"]}
        dataset = config["dataset"]["name"]
        models = with_selection(pd.DataFrame([model_row(read_card(p), role, dataset)
                                              for role, paths in model_sidecars.items()
                                              for p in paths]), config["defenses"])
        sim = similarity_table([read_parquet(p) for p in similarity_tables])
        df = pd.concat([read_parquet(p) for p in attack_tables], ignore_index=True)
        df = with_success_intervals(with_sibling_measurements(df, models))
        df = with_similarity(df, sim)
        df = with_amplification(df)
        readings = query_readings(df, config["attacks"])
        df = with_query_columns(df, readings)
        df = with_defense(df, models, config["defenses"])
        df = df.assign(**stamp, git_commit=git_commit(),
                       package_versions=str(sorted(package_versions().items())))
        df = df.sort_values(["arch", "attack", "source_role", "source_id", "eps"])
        corr = correlations(df)
        BENCHMARK.write(df, benchmark_out)
        MODELS.write(models.assign(**stamp), models_out)
        SIMILARITY.write(sim.assign(dataset=dataset, **stamp), similarity_out)
        CORRELATIONS.write(corr.assign(dataset=dataset, **stamp), correlations_out)
        QUERIES.write(readings.assign(**stamp), queries_out)
        SUPPORT.write(pd.DataFrame(support).assign(dataset=dataset, **stamp), support_out)
        with atomic_path(config_out) as tmp:
            tmp.write_text(f"# config_hash: {digest}\n" + yaml.safe_dump(config, sort_keys=True))
        for _, c in corr[corr.metric == "grad_cosine"].iterrows():
            log.info("Spearman(grad cosine, %s of %s, %s, eps %s) = %.3f [%.3f, %.3f], %d pairs",
                     c.outcome, c.attack, c.analysis, c.eps_rule, c.spearman, c.ci_low,
                     c.ci_high, c.n_pairs)
        log.info("aggregated %d attack rows, %d models, %d similarity pairs", len(df),
                 len(models), len(sim))
