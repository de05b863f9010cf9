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
from siblings.engine import n_equal, percent, percent_equal, predict, within_points
from siblings.extract import distil_until_close
from siblings.logs import log
from siblings.cards import ModelCard, Parent
from siblings.models import count_parameters, create_model
from siblings.stages.runner import stage


def run(data: str, victim: str, out: str, params: dict, seed: int, code_version: str,
        log_file: str | None = None, threads: int = 1, device: str = "cpu") -> None:
    """Distils the (defended) sibling at ``victim`` into a fresh surrogate at ``out``."""
    with stage(log_file, threads, seed, device, data) as env:
        splits = env.splits
        model, victim_card = load_model(victim, env.device)
        surrogate = create_model(replace(victim_card.spec, pretrained=False))
        surrogate.to(env.device)
        start = time.time()
        x_cal, y_cal = splits.images("calib"), splits.labels("calib")
        spent, calib_correct, goal = distil_until_close(
            surrogate, model, splits.images("train"), x_cal, y_cal, params, seed)
        seconds = time.time() - start
        failed = not within_points(goal - calib_correct, len(y_cal), params["within"])
        x_test, y_test = splits.images("test"), splits.labels("test")
        pred = predict(surrogate, x_test)
        correct = n_equal(pred, y_test)
        acc = percent(correct, len(y_test))
        agree = percent_equal(pred, predict(model, x_test))
        log.info("surrogate of %s %s%s: accuracy %.2f%% (the sibling's %.2f%%), agrees with "
                 "it on %.2f%% of test images; %.2f epochs, %.0f s%s", victim_card.spec.arch,
                 victim_card.compression_id,
                 f"+{victim_card.defense_id}" if victim_card.defense_id else "",
                 acc, victim_card.test_accuracy, agree, spent, seconds,
                 f"; FAILED to come within {params['within']} points" if failed else "")
        card = ModelCard(
            kind="extracted", spec=surrogate.spec, seed=seed, n_correct=correct,
            n_test=len(y_test), parameters=count_parameters(surrogate), seconds=seconds,
            code_version=code_version, device=env.device_name, settings=params,
            parent=Parent(str(victim), victim_card.n_correct, victim_card.code_version),
            compression_id=victim_card.compression_id, family=victim_card.family,
            defense_id=victim_card.defense_id,
            accuracy_cost=percent(victim_card.n_correct - correct, len(y_test)),
            failed=failed,
            measured={"agreement_with_victim": agree, "epochs": spent,
                      "calib_accuracy": percent(calib_correct, len(y_cal)),
                      "victim_calib_accuracy": percent(goal, len(y_cal))})
        save_tensors(out, surrogate.state_dict(), card.to_dict())
