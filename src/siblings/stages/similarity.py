"""The ``similarity`` stage: how alike a full model and each of its sources are, on fixed images."""

from __future__ import annotations

import pyarrow as pa

from siblings.artifacts import write_parquet
from siblings.checkpoints import load_model
from siblings.logs import log
from siblings.similarity import compare, image_set, views
from siblings.sources import load_source
from siblings.stages.runner import stage


def run(data: str, full_path: str, sources: list[dict], out: str, params: dict,
        code_version: str, log_file: str | None = None, threads: int = 1,
        device: str = "cpu") -> None:
    """Compares the full model ``full_path`` with each source (``role``, ``source_id``,
    ``path``) and writes one row per pair."""
    with stage(log_file, threads, params["seed"], device, data) as env:
        splits = env.splits
        x, y = image_set(splits.images("test"), splits.labels("test"), params["n_examples"],
                         params["seed"])
        full, full_card = load_model(full_path, env.device)
        reference = views(full, x, y)
        rows = []
        for src in sources:
            model, _ = load_source(src["role"], src["path"], env.device)
            values = compare(reference, views(model, x, y), params["metrics"])
            log.info("%s %s/%s: %s", full_card.spec.arch, src["role"], src["source_id"],
                     {k: round(v, 4) for k, v in values.items() if isinstance(v, float)})
            rows.append({"arch": full_card.spec.arch, "source_role": src["role"],
                         "source_id": src["source_id"], "n_similarity": len(y), **values,
                         "similarity_code_version": code_version,
                         "similarity_device": env.device_name})
        write_parquet(pa.Table.from_pylist(rows), out)
