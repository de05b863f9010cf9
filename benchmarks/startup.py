"""Start-up of a workflow job that does nothing: what every job pays before it works.

Not a test. For each stage, a fresh Python process imports the stage's entry point and
exits; for the stages that load models, another one also rebuilds a stored ResNet-18 and
an 8-bit sibling of it (what an attack job loads first). The floor is ``import torch``.
Median of ``--repeats`` runs, in seconds. To compare two checkouts, run it with each
one's interpreter and ``--src`` (a checkout older than the ``stages/`` layout is measured
through its ``siblings.<stage>`` modules):

    .venv/bin/python benchmarks/startup.py
    /old/.venv/bin/python benchmarks/startup.py --src /old/src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("data", "train", "compress", "defend", "extract", "similarity", "attack",
          "aggregate", "report")
MODEL_STAGES = ("compress", "similarity", "attack")


def stage_module(stage: str, src: Path) -> str:
    layout = "siblings.stages." if (src / "siblings/stages").is_dir() else "siblings."
    return layout + stage


def timed(code: str, src: Path, repeats: int) -> float:
    """Median wall time of a fresh interpreter running ``code``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stored_models(src: Path, folder: Path) -> tuple[Path, Path]:
    """A full ResNet-18 and its 8-bit PTQ sibling, written by the checkout under test."""
    code = f"""
import torch
from siblings.artifacts import save_tensors
from siblings.cards import ModelSpec
from siblings.models import create_model
from siblings.compress import COMPRESSIONS
spec = ModelSpec("resnet18", 1, 10, 32, (0.5,), (0.5,), width=0.25)
model = create_model(spec)
save_tensors("{folder}/full.safetensors", model.state_dict(), {{"spec": spec.to_dict(), "compression": None}})
params = {{"method": "ptq", "weight_bits": 8, "act_bits": 8}}
COMPRESSIONS.get("ptq").prepare(model, params)
save_tensors("{folder}/sibling.safetensors", model.state_dict(), {{"spec": spec.to_dict(), "compression": params}})
"""
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(src)},
                   check=True)
    return folder / "full.safetensors", folder / "sibling.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    src = args.src.resolve()
    loader = ("siblings.checkpoints" if (src / "siblings/checkpoints.py").exists()
              else "siblings.compress")
    print(f"{sys.executable} on {src} (median of {args.repeats}, seconds)")
    print(f"{'python -c pass':32s} {timed('pass', src, args.repeats):6.2f}")
    print(f"{'import torch':32s} {timed('import torch', src, args.repeats):6.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        full, sibling = stored_models(src, Path(tmp))
        for stage in STAGES:
            module = stage_module(stage, src)
            print(f"{'import ' + module:32s} {timed(f'import {module}', src, args.repeats):6.2f}",
                  flush=True)
            if stage in MODEL_STAGES:
                code = (f"import {module}\nfrom {loader} import load_model\n"
                        f"load_model('{full}')\nload_model('{sibling}')")
                print(f"{'  + load full and 8-bit sibling':32s} "
                      f"{timed(code, src, args.repeats):6.2f}", flush=True)


if __name__ == "__main__":
    main()
