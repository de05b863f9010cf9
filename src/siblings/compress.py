"""The ``compress`` stage: a registry of methods that turn a full model into an on-device sibling.

A method is two functions: ``prepare`` changes the model's structure (so a saved sibling
can be rebuilt before its weights are loaded) and ``fit`` calibrates or fine-tunes it on
the data splits and returns what it measured (e.g. the real sparsity). Config names each method+level with a short stable id (``ptq-w8a8``)
whose parameters say which method to run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from siblings.artifacts import load_tensors, save_tensors
from siblings.data import Splits
from siblings.engine import load_splits, predict, setup_torch
from siblings.logs import log, log_to
from siblings.models import ModelSpec, SiblingNet, count_parameters, create_model
from siblings.quant import calibrate, quantize_modules
from siblings.registry import Registry
from siblings.train import fit


@dataclass(frozen=True)
class Compression:
    """``prepare(model, params)`` rebuilds the structure; ``fit(model, splits, params, seed)``
    calibrates or fine-tunes and returns measured properties for the sidecar."""

    prepare: Callable[[SiblingNet, dict], None]
    fit: Callable[[SiblingNet, Splits, dict, int], dict]
    family: str


COMPRESSIONS: Registry[Compression] = Registry("compression method")


def _ptq_prepare(model: SiblingNet, params: dict) -> None:
    n = quantize_modules(model.backbone, params["weight_bits"], params["act_bits"],
                         params.get("per_channel", True))
    if n == 0:
        raise ValueError(f"{model.spec.arch} has no Conv2d/Linear layer to quantize")


def _ptq_fit(model: SiblingNet, splits: Splits, params: dict, seed: int) -> dict:
    x = splits.images("calib")[: params.get("calib_size", len(splits.labels("calib")))]
    calibrate(model, x)
    return {"calibration_images": len(x)}


COMPRESSIONS.register("ptq")(Compression(prepare=_ptq_prepare, fit=_ptq_fit,
                                         family="quantization"))


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Conv and linear weights that global magnitude pruning competes over.

    The first (input) and last (classifier) layers stay dense, as is common practice: the
    few weights of a 1-channel stem look small globally, and pruning 90% of them (what a
    global 80% threshold did to ResNet-18) breaks the network beyond fine-tuning.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return [(m, "weight") for m in layers[1:-1]]


def sparsity(model: nn.Module) -> float:
    """Measured fraction of exact zeros among the prunable weights."""
    weights = [getattr(m, name) for m, name in prunable_weights(model)]
    return sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights)


def _no_structure_change(model: SiblingNet, params: dict) -> None:
    """Unstructured pruning keeps shapes: the zeros live in the saved weights."""


def _prune_fit(model: SiblingNet, splits: Splits, params: dict, seed: int) -> dict:
    """Global L1 magnitude pruning, fine-tuned with the mask fixed, then made permanent."""
    model.to(memory_format=torch.contiguous_format)  # global pruning flattens with view()
    targets = prunable_weights(model.backbone)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured,
                              amount=params["sparsity"])
    log.info("pruned to %.4f sparsity; fine-tuning %s epochs", sparsity(model.backbone),
             params["finetune_epochs"])
    fit(model, splits.images("train"), splits.labels("train"), params["finetune_epochs"],
        params.get("batch_size", 128), params.get("lr", 1e-3), 0.0, seed, "fine-tune")
    for module, name in targets:
        prune.remove(module, name)
    return {"sparsity": sparsity(model.backbone)}


COMPRESSIONS.register("prune")(Compression(prepare=_no_structure_change, fit=_prune_fit,
                                           family="unstructured pruning"))


def load_model(path: str | Path) -> tuple[SiblingNet, dict]:
    """Rebuilds a full model or sibling from its safetensors weights and JSON sidecar."""
    tensors, meta = load_tensors(path)
    # The stored weights replace any pretrained ones: never fetch them again.
    model = create_model(replace(ModelSpec.from_dict(meta["spec"]), pretrained=False))
    if meta.get("compression"):
        comp = meta["compression"]
        COMPRESSIONS.get(comp["method"]).prepare(model, comp)
    model.load_state_dict(tensors)
    model.eval()
    return model, meta


def run(data: str, full: str, out: str, compression_id: str, params: dict, seed: int,
        code_version: str, log_file: str | None = None, threads: int = 1) -> None:
    """Compresses the full model ``full`` with method ``params['method']`` into ``out``."""
    with log_to(log_file):
        setup_torch(threads, seed)
        splits = load_splits(data)
        model, full_meta = load_model(full)
        x_test, y_test = splits.images("test"), splits.labels("test")
        full_pred = predict(model, x_test)
        method = COMPRESSIONS.get(params["method"])
        start = time.time()
        method.prepare(model, params)
        measured = method.fit(model, splits, params, seed)
        pred = predict(model, x_test)
        acc = 100.0 * (pred == y_test).float().mean().item()
        agree = 100.0 * (pred == full_pred).float().mean().item()
        log.info("%s %s: accuracy %.2f%% (full %.2f%%), agreement with full %.2f%%",
                 full_meta["spec"]["arch"], compression_id, acc, full_meta["test_accuracy"], agree)
        meta = {
            "kind": "sibling", "spec": full_meta["spec"], "seed": seed,
            "parent": {"path": str(full), "test_accuracy": full_meta["test_accuracy"],
                       "code_version": full_meta["code_version"]},
            "compression_id": compression_id, "compression": params,
            "family": method.family, "measured": measured, "test_accuracy": acc, "agreement_with_full": agree,
            "n_test": len(y_test), "parameters": count_parameters(model),
            "compress_seconds": time.time() - start, "code_version": code_version,
        }
        save_tensors(out, model.state_dict(), meta)


