"""How close the attacks run to the model's own speed: three ratios per architecture.

Not a test. On this machine, for two architectures at the default run's widths (fresh
weights: speed does not depend on them), at one batch of images:
  1. PGD seconds per step / seconds of one forward+backward pass (target at most 1.10);
  2. our PGD's wall time / torchattacks' PGD's, same inputs and settings (target at most 1);
  3. P-RGF queries per second / the target's raw forward throughput at the batch P-RGF
     sends it (images x samples) (target at least 0.8). The prior comes from a second,
     independently initialised model, so lambda < 1 and every iteration samples.
Each time is the median of ``--repeats`` interleaved runs after a warm-up.
Usage:
    .venv/bin/python benchmarks/attacks.py [--archs resnet18 mobilenetv2] [--batch 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torchattacks
from torch.nn import functional as F

from siblings.attacks import ATTACKS, Budget
from siblings.models import create_model
from siblings.train import model_spec

# Fashion-MNIST as the data stage describes it (28x28 grey, resized to 32 by the model).
FASHION_MNIST = {"channels": 1, "num_classes": 10, "input_size": 32, "mean": [0.286],
                 "std": [0.353]}
WIDTHS = {"alexnet": 0.5, "vgg16": 0.125, "resnet18": 0.25, "mobilenetv2": 0.35}


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, timed in interleaved rounds after a warm-up, so
    that drift in the machine's speed (a shared VM's is large) hits all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def forward_backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    xg = x.clone().requires_grad_(True)
    torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)


def bench(arch: str, batch: int, steps: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(model_spec(arch, WIDTHS.get(arch, 1.0), FASHION_MNIST)).eval()
    prior = create_model(model_spec(arch, WIDTHS.get(arch, 1.0), FASHION_MNIST)).eval()
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    pgd = ATTACKS.get("pgd")(steps=steps)
    reference = torchattacks.PGD(model, eps=0.03, alpha=2.5 * 0.03 / steps, steps=steps,
                                 random_start=False)
    samples, iterations = 50, 3
    prgf = ATTACKS.get("prgf")(samples=samples, max_iterations=iterations)
    spent = {}

    def attack() -> None:
        result = prgf(prior, model, x, y, Budget(0.05, "linf", 100_000))
        spent["queries"] = result.queries.sum().item()

    big = torch.rand(batch * samples, 1, 28, 28)

    def forward() -> None:
        with torch.no_grad():
            model(big)

    t = median_seconds({"fb": lambda: forward_backward(model, x, y),
                        "ours": lambda: pgd.perturb(model, x, y, Budget(0.03)),
                        "theirs": lambda: reference(x, y), "prgf": attack, "raw": forward},
                       repeats)
    query_rate, forward_rate = spent["queries"] / t["prgf"], len(big) / t["raw"]
    return {"fwd+bwd s": t["fb"], "PGD s/step": t["ours"] / steps,
            "PGD/fwd+bwd": t["ours"] / steps / t["fb"], "ours s": t["ours"],
            "torchattacks s": t["theirs"], "ours/torchattacks": t["ours"] / t["theirs"],
            "P-RGF queries/s": query_rate, "forward images/s": forward_rate,
            "P-RGF/forward": query_rate / forward_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18", "mobilenetv2"])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, PGD {args.steps} steps, {args.threads} threads, "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__}")
    for arch in args.archs:
        r = bench(arch, args.batch, args.steps, args.repeats)
        print(f"{arch:12s} PGD step / fwd+bwd = {r['PGD/fwd+bwd']:.3f} "
              f"({r['PGD s/step'] * 1000:.1f} vs {r['fwd+bwd s'] * 1000:.1f} ms) | "
              f"ours / torchattacks = {r['ours/torchattacks']:.3f} "
              f"({r['ours s']:.2f} vs {r['torchattacks s']:.2f} s) | "
              f"P-RGF queries/s / forward images/s = {r['P-RGF/forward']:.3f} "
              f"({r['P-RGF queries/s']:.0f} vs {r['forward images/s']:.0f})", flush=True)


if __name__ == "__main__":
    main()
