"""The ``extract`` stage: the adaptive attacker's surrogate of a defended sibling.

The attacker owns the published sibling and knows it was unpaired, so its own input
gradients are suspect. Instead it extracts the sibling's *function*: a fresh float model
of the same architecture, distilled from the defended sibling's output scores on
unlabelled in-distribution images (the train split's images, without labels). The
surrogate learns what the sibling predicts, not how its gradients were bent, and is then
used as an ordinary transfer source or P-RGF prior.
"""

from __future__ import annotations

import time
from dataclasses import replace

from siblings.artifacts import save_tensors
from siblings.checkpoints import load_model
from siblings.compress import kd_loss
from siblings.engine import logits, percent_equal, predict
from siblings.logs import log
from siblings.models import ModelSpec, count_parameters, create_model
from siblings.stages.runner import stage
from siblings.train import fit


def run(data: str, defended: str, out: str, params: dict, seed: int, code_version: str,
        log_file: str | None = None, threads: int = 1, device: str = "cpu") -> None:
    """Distils the defended sibling at ``defended`` into a fresh surrogate at ``out``."""
    with stage(log_file, threads, seed, device, data) as env:
        splits = env.splits
        victim, meta = load_model(defended, env.device)
        surrogate = create_model(replace(ModelSpec.from_dict(meta["spec"]), pretrained=False))
        surrogate.to(env.device)
        x = splits.images("train")
        start = time.time()
        fit(surrogate, x, logits(victim, x), params["epochs"], params["batch_size"],
            params["lr"], 0.0, seed, f"extract {meta['spec']['arch']}",
            kd_loss(params["temperature"]))
        seconds = time.time() - start
        x_test, y_test = splits.images("test"), splits.labels("test")
        pred = predict(surrogate, x_test)
        acc = percent_equal(pred, y_test)
        agree = percent_equal(pred, predict(victim, x_test))
        log.info("surrogate of %s %s+%s: accuracy %.2f%%, agrees with the defended sibling on "
                 "%.2f%% of test images; %.0f s", meta["spec"]["arch"], meta["compression_id"],
                 meta["defense_id"], acc, agree, seconds)
        save_tensors(out, surrogate.state_dict(), {
            "kind": "extracted", "spec": surrogate.spec.to_dict(), "seed": seed,
            "compression": None, "compression_id": meta["compression_id"],
            "family": meta["family"], "defense_id": meta["defense_id"],
            "parent": {"path": str(defended), "test_accuracy": meta["test_accuracy"],
                       "code_version": meta["code_version"]},
            "extract": params, "test_accuracy": acc, "agreement_with_defended": agree,
            "n_test": len(y_test), "parameters": count_parameters(surrogate),
            "extract_seconds": seconds, "code_version": code_version,
            "device": env.device_name,
        })
