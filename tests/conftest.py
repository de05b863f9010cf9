"""Shared fixtures: a tiny synthetic dataset artifact and small trained models, built once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from siblings.cards import ModelSpec
from siblings.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(arch: str = "resnet18", width: float = 0.125) -> ModelSpec:
    return ModelSpec(arch=arch, in_chans=1, num_classes=10, input_size=32, mean=(0.5,),
                     std=(0.5,), width=width)


@pytest.fixture(scope="session")
def blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable 10-class image set: each class is a bright square at its own place."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(40)
    x = torch.rand(len(y), 1, 28, 28, generator=g) * 0.3
    for i, c in enumerate(y.tolist()):
        r, col = 2 + 8 * (c // 4), 2 + 6 * (c % 4)
        x[i, 0, r:r + 6, col:col + 5] += 0.6
    return x.clamp(0, 1), y


@pytest.fixture(scope="session")
def trained(blobs) -> torch.nn.Module:
    """A tiny ResNet-18 fitted to ``blobs`` (near 100% accuracy), for attack tests."""
    from siblings.train import fit

    torch.manual_seed(0)
    model = create_model(tiny_spec())
    x, y = blobs
    fit(model, x, y, epochs=8, batch_size=40, lr=0.01, weight_decay=0.0, seed=0)
    return model


@pytest.fixture(scope="session")
def data_artifact(blobs, tmp_path_factory) -> str:
    """``blobs`` as a data-stage artifact: 300 train, 50 calibration, 50 test images."""
    from siblings.artifacts import save_tensors

    x, y = blobs
    xu8 = (x * 255).round().to(torch.uint8)
    parts = {"train": slice(0, 300), "calib": slice(300, 350), "test": slice(350, 400)}
    tensors = {f"{k}_{split}": t[s].contiguous() for split, s in parts.items()
               for k, t in (("x", xu8), ("y", y))}
    path = tmp_path_factory.mktemp("data") / "data.safetensors"
    save_tensors(path, tensors, {"dataset": "blobs", "channels": 1, "num_classes": 10,
                                 "input_size": 32, "mean": [0.5], "std": [0.5]})
    return str(path)


def save_model(path: Path, model: torch.nn.Module, **card: object) -> None:
    """Stores ``model`` as a stage would, with a model card; ``card`` overrides its fields
    (a full model's, by default)."""
    from siblings.artifacts import save_tensors
    from siblings.cards import ModelCard

    fields = {"kind": "full", "spec": model.spec, "seed": 0, "n_correct": 0, "n_test": 1,
              "parameters": 0, "seconds": 0.0, "code_version": "test", "device": "cpu"}
    save_tensors(path, model.state_dict(), ModelCard(**{**fields, **card}).to_dict())


def project_copy(dest: Path) -> Path:
    """A copy of the workflow and its package, so a test may edit code or write results."""
    for name in ("workflow", "src", "config"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs Snakemake on the project copy in ``workdir`` with the laptop profile."""
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile",
           str(workdir / "workflow/profiles/default"), "-d", str(workdir), "-s",
           str(workdir / "workflow/Snakefile"), *args]
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}  # the copy's package, not ours
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir,
                          env=env)


def readme_example(name: str, language: str) -> str:
    """The code block after ``<!-- example: name -->`` in the README."""
    import re

    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- example: {name} -->\n```{language}\n(.*?)```", readme, re.S)
    assert match, f"README lost its '{name}' example"
    return match.group(1)
