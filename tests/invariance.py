"""Batch-size invariance of every attack on the default run's architectures, at their
default widths: run as a script under a chosen CPU kernel family (tests/test_invariance.py
sets ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA), it attacks the same images in one batch,
in batches of 8 and some alone, and prints per (architecture, attack) whether every
image's adversarial input, success and query count came out bit for bit the same.

The models are untrained (seeded), the images random and labelled with the target's own
predictions: what is under test is the arithmetic of the kernels, not the attack's skill.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import yaml

from siblings.attacks import ATTACKS, Budget
from siblings.attacks.batch import run_batched
from siblings.cards import ModelSpec
from siblings.models import create_model

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("resnet18", "mobilenetv2")
N, SMALL, ALONE = 24, 8, (0, 13)  # images; the small batch; images also attacked alone
# Knobs and query budget per attack, radius per architecture: a setting where some images
# fall and some do not.
SETTINGS = {
    "pgd": ({"random_start": True, "steps": 5}, None),
    "prgf": ({"samples": 10, "step_size": 0.01}, 60),
    "rgf": ({"samples": 10, "step_size": 0.01}, 60),
    "square": ({}, 40),
}
EPS = {"resnet18": 0.025, "mobilenetv2": 0.005}


def model(arch: str, seed: int, x: torch.Tensor) -> torch.nn.Module:
    """``arch`` at the default run's width, initialised from ``seed``, its batch norm's
    statistics taken on ``x`` (at initialisation one class wins every input)."""
    width = yaml.safe_load((ROOT / "config/config.yaml").read_text())["archs"][arch]["width"]
    torch.manual_seed(seed)
    net = create_model(ModelSpec(arch, 1, 10, 32, (0.2860,), (0.3530,), width=width))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the passes below
    with torch.no_grad():
        for _ in range(3):
            net.train()(x)
    return net.eval()


def same(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_adv", "success", "queries"))


def check(arch: str, name: str) -> dict:
    """One attack on one architecture in three batchings; whether they agree exactly."""
    knobs, queries = SETTINGS[name]
    x = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    target, source = model(arch, 0, x), model(arch, 1, x)
    with torch.no_grad():
        y = target(x).argmax(1)
    attack = ATTACKS.get(name)(seed=0, **knobs)
    prior = source if attack.needs_source else None
    budget = Budget(EPS[arch], "linf", queries)
    whole = run_batched(attack, prior, target, x, y, budget, N)
    parts = run_batched(attack, prior, target, x, y, budget, SMALL)
    alone = [attack(prior, target, x[k:k + 1], y[k:k + 1], budget, torch.tensor([k]))
             for k in ALONE]
    agree = same(whole, parts) and all(
        torch.equal(whole.x_adv[k:k + 1], a.x_adv) and torch.equal(whole.success[k:k + 1],
                                                                    a.success)
        and torch.equal(whole.queries[k:k + 1], a.queries) for k, a in zip(ALONE, alone))
    return {"arch": arch, "attack": name, "same": agree, "fooled": int(whole.success.sum()),
            "images": N}


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(json.dumps([check(arch, name) for arch in ARCHS for name in SETTINGS]))
    sys.exit(0)
