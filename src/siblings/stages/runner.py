"""What every stage does before its work, in one place: log file, threads, seed, device, data.

Rules pass ``threads`` (Snakemake's ``threads:``), the seed, the config's ``device`` and the
data artifact; :func:`stage` routes all output to the rule's log, seeds every generator,
picks the device (``auto``: CUDA when visible), applies its exact-math settings and loads
the splits onto it. Each stage records ``env.device_name`` in what it writes. Stages that
compute nothing with tensors (aggregate, report) pass ``device=None`` and never import
torch: a job's start-up is mostly imports.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import siblings.extensions  # noqa: F401  (registers the user's own components)
from siblings.artifacts import CorruptArtifactError
from siblings.logs import log, log_to

if TYPE_CHECKING:
    from siblings.data import Splits


@dataclass(frozen=True)
class StageEnv:
    """The device a stage computes on and the data splits, already on it."""

    device: Any  # torch.device; None for the stages that never touch a tensor
    device_name: str
    splits: Splits | None


def seed_everything(threads: int, seed: int, with_torch: bool = True) -> None:
    """Fixes the thread count (Snakemake's ``threads:``) and every RNG, for repeatable tables."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if with_torch:
        import torch

        torch.set_num_threads(max(1, threads))
        torch.manual_seed(seed)


@contextmanager
def stage(log_file: str | None, threads: int, seed: int, device: str | None = "cpu",
          data: str | None = None) -> Iterator[StageEnv]:
    """Runs the body with its output in ``log_file``, seeded, on the resolved device. A
    corrupted input ends the job with its one-paragraph message, not a stack trace."""
    with log_to(log_file):
        try:
            yield _environment(threads, seed, device, data)
        except CorruptArtifactError as err:
            raise SystemExit(f"error: {err}") from None


def _environment(threads: int, seed: int, device: str | None, data: str | None) -> StageEnv:
    if device is None:
        seed_everything(threads, seed, with_torch=False)
        return StageEnv(None, "none", None)
    from siblings import device as devices
    from siblings.data import Splits

    chosen = devices.resolve(device)
    devices.exact_math(chosen)
    seed_everything(threads, seed)
    name = devices.describe(chosen)
    log.info("device %s (config: %s), %d threads, seed %d", name, device, threads, seed)
    return StageEnv(chosen, name, Splits.load(data, chosen) if data else None)
