"""Loading a stored model: rebuild its structure from the sidecar, then load its weights;
and a full model's starting weights (random, published, or a checked safetensors file).

A library call every stage uses (attack sources, targets, teachers, siblings to defend);
it needs the compression registry only to rebuild a sibling's compressed structure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from siblings.artifacts import load_state, load_tensors, sidecar_path
from siblings.cards import ModelCard, ModelSpec, card_from
from siblings.compress import COMPRESSIONS
from siblings.models import SiblingNet, create_model, on_meta
from siblings.train import model_spec


def load_model(path: str | Path, device: torch.device | str = "cpu"
               ) -> tuple[SiblingNet, ModelCard]:
    """Rebuilds a full model or sibling from its safetensors weights and model card, in
    eval mode on ``device``."""
    tensors, meta = load_tensors(path)
    card = card_from(meta, sidecar_path(path))
    # The stored weights replace any pretrained ones: never fetch them again.
    model = create_model(replace(card.spec, pretrained=False), initialise=False)
    if card.compression:
        COMPRESSIONS.get(card.compression["method"]).prepare(model, card.compression,
                                                             card.structure)
    load_state(model, tensors)
    model.to(device)
    model.eval()
    return model, card


PRETRAINED = "pretrained"


class CheckpointError(ValueError):
    """A starting checkpoint that is not safetensors or does not fit its architecture."""


@dataclass(frozen=True)
class Start:
    """Where a full model's weights start before training: random, the architecture's
    published timm weights (``pretrained``: True, or one of its tags), or ``path``: a
    safetensors file of the backbone's state dict."""

    pretrained: bool | str = False
    path: Path | None = None

    @classmethod
    def parse(cls, value: str | None) -> "Start":
        """``None`` (random), ``pretrained``, ``pretrained:<tag>`` or a file path."""
        if value is None:
            return cls()
        if value == PRETRAINED:
            return cls(pretrained=True)
        if value.startswith(PRETRAINED + ":"):
            return cls(pretrained=value.split(":", 1)[1])
        return cls(path=Path(value))


def backbone_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the state dict of ``spec``'s backbone, built on the
    meta device where it can be (nothing allocated, nothing downloaded)."""
    spec = replace(spec, pretrained=False)
    backbone = on_meta(lambda: create_model(spec).backbone) or create_model(spec).backbone
    return {k: tuple(v.shape) for k, v in backbone.state_dict().items()}


def check_checkpoint(path: Path, spec: ModelSpec) -> None:
    """Refuses a file that is not safetensors, or whose tensors do not fit ``spec``'s
    backbone (missing, unexpected or differently shaped), reading its header only."""
    from safetensors import safe_open

    from siblings.artifacts import UnsafeArtifactError, check_safetensors

    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        check_safetensors(path)
    except UnsafeArtifactError as err:
        raise CheckpointError(str(err)) from err
    with safe_open(str(path), framework="pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    wanted = backbone_shapes(spec)
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(set(stored) - set(wanted))
    shapes = sorted(k for k in set(wanted) & set(stored) if wanted[k] != stored[k])
    problems = [f"{len(keys)} {what}, e.g. {examples}" for keys, what, examples in (
        (missing, "tensors missing", missing[:3]),
        (unexpected, "unexpected", unexpected[:3]),
        (shapes, "of another shape (stored, wanted)",
         [(k, stored[k], wanted[k]) for k in shapes[:2]])) if keys]
    if problems:
        raise CheckpointError(
            f"{path} does not fit {spec.arch} (width {spec.width:g}, {spec.in_chans} input "
            f"channels, {spec.num_classes} classes): " + "; ".join(problems))


def load_backbone(model: SiblingNet, path: Path) -> None:
    """Loads a checked backbone checkpoint into ``model``."""
    from safetensors.torch import load_file

    check_checkpoint(path, model.spec)
    model.backbone.load_state_dict(load_file(str(path)))


def starting_model(arch: str, width: float, meta: dict, start: Start) -> SiblingNet:
    """``arch`` for the dataset described by ``meta``, with its starting weights."""
    try:
        model = create_model(model_spec(arch, width, meta, start.pretrained))
    except OSError as err:  # the hub is unreachable and nothing is cached
        if not start.pretrained:
            raise
        raise RuntimeError(
            f"could not fetch timm's published weights for {arch} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). Without internet, save them as a safetensors "
            f"file of the backbone's state dict and set archs.{arch}.weights to its path"
        ) from err
    if start.path is not None:
        load_backbone(model, start.path)
    return model
