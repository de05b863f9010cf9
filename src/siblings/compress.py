"""The ``compress`` stage: a registry of methods that turn a full model into an on-device sibling.

A method is two functions: ``prepare`` changes the model's structure (so a saved sibling
can be rebuilt before its weights are loaded) and ``fit`` calibrates or fine-tunes it on
the data splits. Config names each method+level with a short stable id (``ptq-w8a8``)
whose parameters say which method to run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from siblings.artifacts import load_tensors, save_tensors
from siblings.data import Splits
from siblings.engine import load_splits, predict, setup_torch
from siblings.logs import log, log_to
from siblings.models import ModelSpec, SiblingNet, count_parameters, create_model
from siblings.quant import calibrate, quantize_modules
from siblings.registry import Registry


@dataclass(frozen=True)
class Compression:
    """``prepare(model, params)`` rebuilds the structure; ``fit(model, splits, params, seed)`` trains/calibrates."""

    prepare: Callable[[SiblingNet, dict], None]
    fit: Callable[[SiblingNet, Splits, dict, int], None]
    family: str


COMPRESSIONS: Registry[Compression] = Registry("compression method")


def _ptq_prepare(model: SiblingNet, params: dict) -> None:
    n = quantize_modules(model.backbone, params["weight_bits"], params["act_bits"],
                         params.get("per_channel", True))
    if n == 0:
        raise ValueError(f"{model.spec.arch} has no Conv2d/Linear layer to quantize")


def _ptq_fit(model: SiblingNet, splits: Splits, params: dict, seed: int) -> None:
    x = splits.images("calib")[: params.get("calib_size", len(splits.labels("calib")))]
    calibrate(model, x)


COMPRESSIONS.register("ptq")(Compression(prepare=_ptq_prepare, fit=_ptq_fit,
                                         family="quantization"))


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
        method.fit(model, splits, params, seed)
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
            "family": method.family, "test_accuracy": acc, "agreement_with_full": agree,
            "n_test": len(y_test), "parameters": count_parameters(model),
            "compress_seconds": time.time() - start, "code_version": code_version,
        }
        save_tensors(out, model.state_dict(), meta)


