"""A model measured as a product: what a device loads (bytes), runs (latency) and predicts.

The differentiable model an attacker uses is not always what ships: an 8-bit sibling ships
as PyTorch's real int8 model, an unstructured-pruned one as sparse storage. Each compression
says how its sibling deploys (a ``Deployment``); this module measures any deployment the
same way, so full models and every sibling land in comparable columns.
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from siblings.engine import percent_equal, predict

LATENCY_REPEATS = 50


@dataclass
class Deployment:
    """``model`` maps raw pixels to logits as the device would run it (None: no CPU runtime
    exists for the format); ``size_bytes`` is what the device loads; ``runtime`` says which."""

    model: nn.Module | None
    size_bytes: int
    runtime: str


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights file: safetensors for plain tensors; PyTorch's own
    format where the state holds packed int8 parameters, which safetensors cannot store."""
    state = model.state_dict()
    if all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values()):
        return len(safetensors_bytes({k: v.detach().contiguous() for k, v in state.items()}))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def float_deployment(model: nn.Module) -> Deployment:
    return Deployment(model, state_bytes(model), "float32")


@torch.no_grad()
def latency_ms(model: nn.Module, example: torch.Tensor, repeats: int = LATENCY_REPEATS) -> float:
    """Median wall time of one batch-1 forward pass, after a warm-up, in milliseconds."""
    model.eval()
    x = example[:1]
    for _ in range(5):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def measure(deployment: Deployment, x_test: torch.Tensor, y_test: torch.Tensor,
            reference: torch.Tensor | None) -> dict:
    """Accuracy and top-1 agreement with ``reference`` predictions of the deployed model,
    its size and latency. Without a runnable model those are None (not guessed)."""
    row = {"size_bytes": deployment.size_bytes, "runtime": deployment.runtime,
           "latency_ms": None, "deployed_accuracy": None, "deployed_agreement": None}
    if deployment.model is None:
        return row
    pred = predict(deployment.model, x_test)
    row["deployed_accuracy"] = percent_equal(pred, y_test)
    if reference is not None:
        row["deployed_agreement"] = percent_equal(pred, reference)
    row["latency_ms"] = latency_ms(deployment.model, x_test)
    return row
