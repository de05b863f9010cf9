"""The ``extract`` stage: the adaptive attacker's surrogate of a (defended) sibling.

The attacker owns the published sibling and knows it was unpaired, so its own input
gradients are suspect. Instead it extracts the sibling's *function*: a fresh float model
of the same architecture, distilled from the sibling's output scores on unlabelled
in-distribution images (the train split's images, without labels). The surrogate learns
what the sibling predicts, not how its gradients were bent, and is then used as an
ordinary transfer source or P-RGF prior.

Distillation goes on until the surrogate is close to the sibling
(:func:`siblings.extract.distil_until_close`); the sidecar records an attempt that never
got there as failed, with its accuracy. The same attacker extracts the undefended sibling
too, as the reference.
"""

from __future__ import annotations

import time
from dataclasses import replace

from siblings.artifacts import save_tensors
from siblings.checkpoints import load_model
from siblings.engine import percent_equal, predict
from siblings.extract import distil_until_close
from siblings.logs import log
from siblings.models import ModelSpec, count_parameters, create_model
from siblings.stages.runner import stage


def run(data: str, victim: str, out: str, params: dict, seed: int, code_version: str,
        log_file: str | None = None, threads: int = 1, device: str = "cpu") -> None:
    """Distils the (defended) sibling at ``victim`` into a fresh surrogate at ``out``."""
    with stage(log_file, threads, seed, device, data) as env:
        splits = env.splits
        model, meta = load_model(victim, env.device)
        surrogate = create_model(replace(ModelSpec.from_dict(meta["spec"]), pretrained=False))
        surrogate.to(env.device)
        start = time.time()
        spent, calib_acc, goal = distil_until_close(
            surrogate, model, splits.images("train"), splits.images("calib"),
            splits.labels("calib"), params, seed)
        seconds = time.time() - start
        failed = calib_acc < goal - params["within"]
        x_test, y_test = splits.images("test"), splits.labels("test")
        pred = predict(surrogate, x_test)
        acc = percent_equal(pred, y_test)
        agree = percent_equal(pred, predict(model, x_test))
        log.info("surrogate of %s %s%s: accuracy %.2f%% (the sibling's %.2f%%), agrees with "
                 "it on %.2f%% of test images; %.2f epochs, %.0f s%s", meta["spec"]["arch"],
                 meta["compression_id"], f"+{meta['defense_id']}" if meta.get("defense_id") else "",
                 acc, meta["test_accuracy"], agree, spent, seconds,
                 f"; FAILED to come within {params['within']} points" if failed else "")
        save_tensors(out, surrogate.state_dict(), {
            "kind": "extracted", "spec": surrogate.spec.to_dict(), "seed": seed,
            "compression": None, "compression_id": meta["compression_id"],
            "family": meta["family"], "defense_id": meta.get("defense_id"),
            "parent": {"path": str(victim), "test_accuracy": meta["test_accuracy"],
                       "code_version": meta["code_version"]},
            "extract": params, "test_accuracy": acc, "agreement_with_defended": agree,
            "extract_epochs": spent, "calib_accuracy": calib_acc,
            "victim_calib_accuracy": goal, "failed": failed,
            "accuracy_cost": meta["test_accuracy"] - acc,
            "n_test": len(y_test), "parameters": count_parameters(surrogate),
            "extract_seconds": seconds, "code_version": code_version,
            "device": env.device_name,
        })
