"""The ``train`` stage: the full-scale model, and with another seed the attacker's independent model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from siblings.artifacts import save_tensors
from siblings.engine import accuracy, load_splits, setup_torch
from siblings.logs import log, log_to
from siblings.measure import float_deployment, measure
from siblings.models import ModelSpec, SiblingNet, count_parameters, create_model


def minibatches(n: int, batch_size: int, epochs: float, seed: int) -> list[torch.Tensor]:
    """Index batches for ``epochs`` (may be fractional) passes over ``n`` examples, each pass
    a fresh seeded permutation: the same seed gives the same batches on the same machine."""
    g = torch.Generator().manual_seed(seed)
    per_epoch = max(1, n // batch_size)
    batches: list[torch.Tensor] = []
    for step in range(max(1, round(epochs * per_epoch))):
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=g)
        i = step % per_epoch
        batches.append(perm[i * batch_size:(i + 1) * batch_size])
    return batches


def one_cycle(params, lr: float, weight_decay: float, total: int
              ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a one-cycle schedule: the fastest reliable way to a good model in few epochs."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: float, batch_size: int,
        lr: float, weight_decay: float, seed: int, desc: str = "train",
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
        ) -> nn.Module:
    """Trains ``model`` with :func:`one_cycle` over seeded :func:`minibatches`.

    ``y`` holds what ``loss_fn`` compares outputs with: labels, or a teacher's logits when
    distilling. ``epochs`` may be fractional (fine-tuning).
    """
    batches = minibatches(len(x), batch_size, epochs, seed)
    opt, sched = one_cycle(model.parameters(), lr, weight_decay, len(batches))
    model.to(memory_format=torch.channels_last).train()  # 1.5-2x faster convs on CPU
    bar = tqdm(batches, desc=desc, mininterval=5.0)
    for step, idx in enumerate(bar):
        xb = x[idx].contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model


def model_spec(arch: str, width: float, meta: dict, pretrained: bool = False) -> ModelSpec:
    """The spec of ``arch`` for the dataset described by the data artifact's ``meta``."""
    return ModelSpec(arch=arch, in_chans=meta["channels"], num_classes=meta["num_classes"],
                     input_size=meta["input_size"], mean=tuple(meta["mean"]),
                     std=tuple(meta["std"]), width=width, pretrained=pretrained)


def run(data: str, out: str, arch: str, width: float, seed: int, params: dict,
        code_version: str, log_file: str | None = None, threads: int = 1) -> None:
    """Trains ``arch`` with ``seed`` on the train split and stores it with its test accuracy."""
    with log_to(log_file):
        setup_torch(threads, seed)
        splits = load_splits(data)
        model: SiblingNet = create_model(model_spec(arch, width, splits.meta,
                                                    params.get("pretrained", False)))
        log.info("training %s (width %s, seed %d, %d params) on %d images",
                 arch, width, seed, count_parameters(model), len(splits.labels("train")))
        start = time.time()
        fit(model, splits.images("train"), splits.labels("train"), params["epochs"],
            params["batch_size"], params["lr"], params["weight_decay"], seed, f"train {arch}")
        seconds = time.time() - start
        acc = accuracy(model, splits.images("test"), splits.labels("test"))
        product = measure(float_deployment(model), splits.images("test"), splits.labels("test"),
                          reference=None)
        log.info("%s seed %d: test accuracy %.2f%% after %.0f s; %s", arch, seed, acc, seconds,
                 product)
        meta = {
            "kind": "full", "spec": model.spec.to_dict(), "seed": seed, "train": params,
            "test_accuracy": acc, "n_test": len(splits.labels("test")),
            "parameters": count_parameters(model), "product": product, "train_seconds": seconds,
            "code_version": code_version, "compression": None,
        }
        save_tensors(Path(out), model.state_dict(), meta)
