"""Atomic, pickle-free, checked storage of every artifact: safetensors tensors plus a JSON
sidecar, and Parquet tables.

A job that dies leaves no half-written file: everything is written to a temporary file
in the target folder and renamed into place. Loading refuses anything that is not a
safetensors file, so a checkpoint a user hands in is never unpickled. What the workflow
wrote is checked when a job reads it: the sidecar records the weights' SHA-256, Parquet
files carry page checksums, so a truncated or altered file (a full disk, a bad copy) is
refused by name with the command that regenerates it (:class:`CorruptArtifactError`),
never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # torch loads only where tensors are read or written: the aggregate and
    import pandas as pd  # report stages handle JSON and Parquet only and start faster without it
    import pyarrow as pa
    import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


class UnsafeArtifactError(ValueError):
    """A weights file that is not safetensors (e.g. a pickle checkpoint): we refuse to load it."""


# The command that regenerates an artifact; the workflow sets it to the run's own command.
RERUN_VARIABLE = "SIBLINGS_RERUN"
CHECKSUM_KEY = "weights_sha256"


class CorruptArtifactError(ValueError):
    """An artifact the workflow wrote that is truncated, altered or not what its reader
    expects; the message names it and the command that regenerates it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        rerun = os.environ.get(RERUN_VARIABLE, "make bench")
        super().__init__(f"{path} is corrupted ({reason}), so it is not used. Delete it and "
                         f"rerun `{rerun}`: that regenerates it and everything made from it.")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; results are shared
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sidecar_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def write_json(path: str | Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    """A JSON object the workflow wrote; CorruptArtifactError when it does not parse."""
    try:
        obj = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptArtifactError(path, f"not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise CorruptArtifactError(path, "not a JSON object")
    return obj


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_sidecar(path: str | Path) -> dict:
    """The sidecar of the tensors at ``path``, once the tensors' SHA-256 matches the one it
    recorded when both were written (the checksum itself left out)."""
    meta = read_json(sidecar_path(path))
    recorded = meta.pop(CHECKSUM_KEY, None)
    if recorded is None:
        raise CorruptArtifactError(sidecar_path(path), f"it records no {CHECKSUM_KEY}")
    if not Path(path).is_file():
        raise CorruptArtifactError(path, "it is missing beside its sidecar")
    if file_sha256(path) != recorded:
        raise CorruptArtifactError(path, "its SHA-256 differs from the one recorded when it "
                                         "was written: truncated or altered since")
    return meta


def _without_aliases(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One name per tensor: a module registered twice (quantization graphs share observers
    between ops) shows up under two names, and safetensors refuses shared storage."""
    seen: set[tuple] = set()
    unique = {}
    for name in sorted(tensors):
        t = tensors[name]
        key = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if t.numel() and key in seen:
            continue
        seen.add(key)
        unique[name] = t
    return unique


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Writes tensors as safetensors and ``meta`` as the JSON sidecar, both atomically; the
    sidecar records the tensors' SHA-256."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in _without_aliases(tensors).items()},
                  str(tmp))
        digest = file_sha256(tmp)
    write_json(sidecar_path(path), {**meta, CHECKSUM_KEY: digest})


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Loads saved ``tensors`` into ``model``; names dropped as aliases must alias a loaded one."""
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    state = model.state_dict()
    loaded = {state[k].data_ptr() for k in tensors if k in state}
    unfilled = [k for k in missing if state[k].data_ptr() not in loaded]
    if unexpected or unfilled:
        raise RuntimeError(f"weights do not fit the model (saved by other code?): "
                           f"{len(unfilled)} missing, e.g. {unfilled[:3]}; "
                           f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")


def check_safetensors(path: Path) -> None:
    """A safetensors file starts with an 8-byte little-endian header length, then a JSON '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    if len(head) < 9 or head[8:9] != b"{" or size <= 0 or 8 + size > path.stat().st_size:
        raise UnsafeArtifactError(
            f"refusing to load {path}: it is not a safetensors file (pickle checkpoints are "
            "never loaded, they can run arbitrary code). Convert it with "
            "safetensors.torch.save_file(torch.load(p, weights_only=True), out) first."
        )


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Loads a safetensors file the workflow wrote and its checked JSON sidecar."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = verified_sidecar(path)
    check_safetensors(path)
    return load_file(str(path)), meta


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """Writes a Parquet table atomically, with page checksums its readers verify."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)


def read_parquet(path: str | Path) -> pd.DataFrame:
    """A Parquet table the workflow wrote, its page checksums verified."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, page_checksum_verification=True).to_pandas()
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as err:  # truncated, or a page's checksum fails
        raise CorruptArtifactError(path, f"Parquet that does not read back: {err}") from None
