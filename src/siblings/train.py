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


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: float, batch_size: int,
        lr: float, weight_decay: float, seed: int, desc: str = "train",
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
        ) -> nn.Module:
    """AdamW with a one-cycle schedule: the fastest reliable way to a good model in few epochs.

    ``y`` holds what ``loss_fn`` compares outputs with: labels, or a teacher's logits when
    distilling. ``epochs`` may be fractional (fine-tuning). Batches come from a seeded permutation, so
    the same seed gives the same model on the same machine.
    """
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, len(x) // batch_size)
    total = max(1, round(epochs * steps_per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    model.to(memory_format=torch.channels_last).train()  # 1.5-2x faster convs on CPU
    perm = torch.randperm(len(x), generator=g)
    bar = tqdm(range(total), desc=desc, mininterval=5.0)
    for step in bar:
        i = step % steps_per_epoch
        if i == 0 and step > 0:
            perm = torch.randperm(len(x), generator=g)
        idx = perm[i * batch_size:(i + 1) * batch_size]
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
