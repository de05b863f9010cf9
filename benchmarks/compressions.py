"""Which compression methods work on which architecture: the support matrix of the README.

Not a test. For every model trained by ``benchmarks/zoo.py`` (results/zoo/), it runs the
structural part of each method without fine-tuning: 8-bit PTQ through PyTorch's FX tooling,
conversion to the real int8 model and its agreement with the fake-quantized one on the
test set, and 50% channel pruning with its parameter reduction. A failure prints the
error's first line, so an architecture PyTorch cannot quantize is named, not dropped.
Usage:
    .venv/bin/python benchmarks/compressions.py [--archs a b] [--n-test 2000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from siblings.checkpoints import load_model
from siblings.compress import COMPRESSIONS, Job
from siblings.data import Splits
from siblings.engine import predict
from siblings.stages.runner import seed_everything
from siblings.models import count_parameters

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "results/zoo"
PTQ = {"method": "ptq", "weight_bits": 8, "act_bits": 8, "calib_size": 500}
CHANNELS = {"method": "channel-prune", "channel_ratio": 0.5, "finetune_epochs": 1}


def _first_line(err: Exception) -> str:
    return f"fails: {type(err).__name__}: {str(err).strip().splitlines()[0][:90]}"


def int8_check(path: Path, splits, x: torch.Tensor) -> str:
    model, _ = load_model(path)
    method = COMPRESSIONS.get("ptq")
    method.prepare(model, PTQ)
    method.fit(model, Job(splits, PTQ, 0, model))
    deployed = method.deploy(model, PTQ)
    if deployed.model is None:
        return deployed.runtime
    agree = (predict(deployed.model, x) == predict(model, x)).float().mean().item()
    return f"{100 * agree:.2f}%"


def channel_check(path: Path) -> str:
    model, _ = load_model(path)
    before = count_parameters(model)
    COMPRESSIONS.get("channel-prune").prepare(model, CHANNELS)
    model(torch.zeros(2, model.spec.in_chans, model.spec.input_size, model.spec.input_size))
    return f"-{100 * (1 - count_parameters(model) / before):.1f}% params"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archs", nargs="*", default=None)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    seed_everything(args.threads, 0)
    splits = Splits.load(ZOO / "data.safetensors")
    x = splits.images("test")[: args.n_test]
    paths = sorted(ZOO.glob("*-e*.safetensors"))
    rows = []
    for path in paths:
        arch = path.name.rsplit("-e", 1)[0]
        if args.archs and arch not in args.archs:
            continue
        start = time.time()
        cells = []
        for check in (lambda: int8_check(path, splits, x), lambda: channel_check(path)):
            try:
                cells.append(check())
            except Exception as err:  # report every failure per architecture, keep going
                cells.append(_first_line(err))
        rows.append(f"| {arch} | {cells[0]} | {cells[1]} |")
        print(rows[-1], f"({time.time() - start:.0f} s)", flush=True)
    print(f"\n| architecture | int8 vs fake-quant agreement ({len(x)} test images) "
          "| channel-prune 50% |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
