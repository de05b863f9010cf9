"""Training: seeded minibatches, the one-cycle optimiser and the fit loop that every stage
which trains a model uses."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from siblings.cards import ModelSpec
from siblings.knobs import Knob, integer, number

# The ``train`` section: how the full and independent models are trained from their start.
TRAIN_KNOBS = {
    "epochs": Knob(number(above=0), "training epochs (archs.<a>.epochs overrides)", 2),
    "batch_size": Knob(integer(1), "training batch size", 128),
    "lr": Knob(number(above=0), "peak learning rate (AdamW, one-cycle; archs.<a>.lr "
               "overrides)", 0.003),
    "weight_decay": Knob(number(0), "AdamW weight decay", 0.0005),
}
# The ``seeds`` section.
SEED_KNOBS = {
    "full": Knob(integer(0), "seed of the full-scale (target) model", 0),
    "independent": Knob(integer(0), "seed of the attacker's own model of the same "
                        "architecture", 1),
}


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


def model_spec(arch: str, width: float, meta: dict, pretrained: bool | str = False
               ) -> ModelSpec:
    """The spec of ``arch`` for the dataset described by the data artifact's ``meta``."""
    return ModelSpec(arch=arch, in_chans=meta["channels"], num_classes=meta["num_classes"],
                     input_size=meta["input_size"], mean=tuple(meta["mean"]),
                     std=tuple(meta["std"]), width=width, pretrained=pretrained)
