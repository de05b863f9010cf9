"""The ``data`` stage: a registered dataset's seeded train/calibration/test splits, one artifact."""

from __future__ import annotations

from siblings.artifacts import save_tensors
from siblings.data import DATASETS, MIN_INPUT_SIZE, prepare
from siblings.logs import log
from siblings.stages.runner import stage


def run(out: str, name: str, root: str | None, download: bool, calib_size: int, seed: int,
        train_subset: int | None, test_subset: int | None, code_version: str,
        log_file: str | None = None, image_size: int | None = None) -> None:
    """Loads ``name`` and stores its seeded splits (uint8 images) as one artifact."""
    with stage(log_file, threads=1, seed=seed, device="cpu"):
        raw = DATASETS.get(name).load(root, download, image_size)
        tensors = prepare(raw, calib_size, seed, train_subset, test_subset)
        meta = {
            "dataset": name, "source": raw.source, "channels": int(raw.x_train.shape[1]),
            "num_classes": int(raw.y_train.max()) + 1,
            "input_size": max(MIN_INPUT_SIZE, raw.x_train.shape[-1]),
            "mean": list(raw.mean), "std": list(raw.std), "split_seed": seed,
            "sizes": {k[2:]: len(v) for k, v in tensors.items() if k.startswith("y_")},
            "code_version": code_version,
        }
        log.info("%s from %s: %s", name, raw.source, meta["sizes"])
        save_tensors(out, tensors, meta)
