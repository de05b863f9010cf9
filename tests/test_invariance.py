"""An image's attack result does not depend on the batch it shares, on the default run's
architectures at their default widths, under several CPU kernel families of this machine:
every pass that decides an outcome runs on one fixed shape (siblings.engine.fixed_forward).

What this cannot promise, and does not test: the same numbers under another kernel family,
another thread count or a GPU (those round differently; docs/running.md says so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

# A kernel family per environment: PyTorch's own kernels (ATEN_CPU_CAPABILITY) and oneDNN's
# convolutions (ONEDNN_MAX_CPU_ISA). Where the CPU lacks an ISA, the library takes the
# best it has.
FAMILIES = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "sse41": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


@pytest.fixture(scope="module")
def checked() -> dict[str, list[dict]]:
    """tests/invariance.py under each family, side by side (one thread each)."""
    runs = {family: subprocess.Popen(
        [sys.executable, str(ROOT / "tests/invariance.py")], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env})
        for family, env in FAMILIES.items()}
    out = {}
    for family, run in runs.items():
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-3000:]
        out[family] = json.loads(stdout)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_every_attack_gives_each_image_the_same_result_alone_in_8_or_in_24(checked, family):
    rows = checked[family]
    assert {(r["arch"], r["attack"]) for r in rows} == {
        (a, k) for a in ("resnet18", "mobilenetv2") for k in ("pgd", "prgf", "rgf", "square")}
    assert all(0 < r["fooled"] < r["images"] for r in rows), rows  # the draws matter
    assert [r for r in rows if not r["same"]] == []
