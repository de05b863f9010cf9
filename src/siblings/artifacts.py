"""Atomic, pickle-free storage of every artifact: safetensors tensors plus a JSON sidecar.

A job that dies leaves no half-written file: everything is written to a temporary file
in the target folder and renamed into place. Loading refuses anything that is not a
safetensors file, so a checkpoint a user hands in is never unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # torch loads only where tensors are read or written: the aggregate and
    import torch   # report stages handle JSON and Parquet only and start faster without it


_UMASK = os.umask(0)
os.umask(_UMASK)


class UnsafeArtifactError(ValueError):
    """A weights file that is not safetensors (e.g. a pickle checkpoint): we refuse to load it."""


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
    return json.loads(Path(path).read_text())


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
    """Writes tensors as safetensors and ``meta`` as the JSON sidecar, both atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in _without_aliases(tensors).items()},
                  str(tmp))
    write_json(sidecar_path(path), meta)


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
    """Loads a safetensors file and its JSON sidecar; refuses non-safetensors input."""
    from safetensors.torch import load_file

    path = Path(path)
    check_safetensors(path)
    return load_file(str(path)), read_json(sidecar_path(path))
