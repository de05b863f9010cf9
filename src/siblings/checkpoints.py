"""Loading a stored model: rebuild its structure from the sidecar, then load its weights.

A library call every stage uses (attack sources, targets, teachers, siblings to defend);
it needs the compression registry only to rebuild a sibling's compressed structure.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from siblings.artifacts import load_state, load_tensors
from siblings.compress import COMPRESSIONS
from siblings.models import ModelSpec, SiblingNet, create_model


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[SiblingNet, dict]:
    """Rebuilds a full model or sibling from its safetensors weights and JSON sidecar, in
    eval mode on ``device``."""
    tensors, meta = load_tensors(path)
    # The stored weights replace any pretrained ones: never fetch them again.
    model = create_model(replace(ModelSpec.from_dict(meta["spec"]), pretrained=False),
                         initialise=False)
    if meta.get("compression"):
        comp = meta["compression"]
        COMPRESSIONS.get(comp["method"]).prepare(model, comp)
    load_state(model, tensors)
    model.to(device)
    model.eval()
    return model, meta
