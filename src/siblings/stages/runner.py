"""What every stage does before its work, in one place: log file, threads, seed, device, data.

Rules pass ``threads`` (Snakemake's ``threads:``), the seed, the config's ``device`` and the
data artifact; :func:`stage` routes all output to the rule's log, seeds every generator,
picks the device (``auto``: CUDA when visible), applies its exact-math settings and loads
the splits onto it. Each stage records ``env.device_name`` in what it writes.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from siblings import device as devices
from siblings.data import Splits
from siblings.logs import log, log_to


@dataclass(frozen=True)
class StageEnv:
    """The device a stage computes on and the data splits, already on it."""

    device: torch.device
    device_name: str
    splits: Splits | None


def seed_everything(threads: int, seed: int) -> None:
    """Fixes the thread count (Snakemake's ``threads:``) and every RNG, for repeatable tables."""
    torch.set_num_threads(max(1, threads))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def stage(log_file: str | None, threads: int, seed: int, device: str = "cpu",
          data: str | None = None) -> Iterator[StageEnv]:
    """Runs the body with its output in ``log_file``, seeded, on the resolved device."""
    with log_to(log_file):
        chosen = devices.resolve(device)
        devices.exact_math(chosen)
        seed_everything(threads, seed)
        name = devices.describe(chosen)
        log.info("device %s (config: %s), %d threads, seed %d", name, device, threads, seed)
        yield StageEnv(chosen, name, Splits.load(data, chosen) if data else None)
