"""The ``defend`` stage: fine-tune a published sibling so it stops helping attack its full model."""

from __future__ import annotations

import time
from dataclasses import replace

from siblings.artifacts import save_tensors
from siblings.cards import Parent
from siblings.checkpoints import load_model
from siblings.compress import COMPRESSIONS
from siblings.defend import CHECK_IMAGES, DEFENSES, DefenseJob, mean_cosine
from siblings.engine import n_correct, n_equal, percent, percent_equal, predict, within_points
from siblings.logs import log
from siblings.measure import measure
from siblings.models import count_parameters
from siblings.quant import observe_during_training
from siblings.stages.runner import stage


def run(data: str, full: str, sibling: str, out: str, defense_id: str, params: dict,
        seed: int, code_version: str, log_file: str | None = None, threads: int = 1,
        device: str = "cpu") -> None:
    """Defends the sibling at ``sibling`` (of the full model ``full``) into ``out``; a
    defended sibling that loses more than ``tolerance`` test points is stored marked failed.
    Its accuracy cost on the calibration split is stored too: lam is chosen on that split,
    never on the test split that the results report."""
    with stage(log_file, threads, seed, device, data) as env:
        splits = env.splits
        teacher, _ = load_model(full, env.device)
        for w in teacher.parameters():
            w.requires_grad_(False)
        model, sib = load_model(sibling, env.device)
        observe_during_training(model, False)
        check_x, check_y = splits.images("calib")[:CHECK_IMAGES], splits.labels("calib")[:CHECK_IMAGES]
        before = mean_cosine(teacher, model, check_x, check_y)
        x_cal, y_cal = splits.images("calib"), splits.labels("calib")
        calib_before = n_correct(model, x_cal, y_cal)
        start = time.time()
        measured = DEFENSES.get(params["method"]).run(model, DefenseJob(splits, params, seed,
                                                                        teacher))
        seconds = time.time() - start
        after = mean_cosine(teacher, model, check_x, check_y)
        calib_lost = calib_before - n_correct(model, x_cal, y_cal)
        calib_cost = percent(calib_lost, len(y_cal))
        x_test, y_test = splits.images("test"), splits.labels("test")
        pred = predict(model, x_test)
        correct = n_equal(pred, y_test)
        acc = percent(correct, len(y_test))
        agree = percent_equal(pred, predict(teacher, x_test))
        cost = percent(sib.n_correct - correct, len(y_test))
        failed = not within_points(sib.n_correct - correct, len(y_test), params["tolerance"])
        fell = after < before
        log.info("%s %s + %s: gradient cosine %.3f -> %.3f on %d held-out images; accuracy "
                 "%.2f%% -> %.2f%% (cost %.2f, tolerance %.2f)%s; cost on the %d calibration "
                 "images (what lam is chosen on) %.2f; %.0f s",
                 sib.spec.arch, sib.compression_id, defense_id, before, after, len(check_y),
                 sib.test_accuracy, acc, cost, params["tolerance"],
                 " FAILED" if failed else "", len(y_cal), calib_cost, seconds)
        if params["lam"] > 0 and not fell:
            log.warning("the gradient similarity did not fall: the defense did nothing")
        product = measure(COMPRESSIONS.get(sib.compression["method"]).deploy(
            model.cpu(), sib.compression), x_test.cpu(), y_test.cpu(), reference=pred.cpu())
        card = replace(
            sib, kind="defended", seed=seed, n_correct=correct, n_test=len(y_test),
            parameters=count_parameters(model), seconds=seconds, code_version=code_version,
            device=env.device_name, product=product,
            parent=Parent(str(sibling), sib.n_correct, sib.code_version),
            defense_id=defense_id, defense=params, agreement_with_full=agree,
            accuracy_cost=cost, failed=failed,
            measured={**measured, "similarity_before": before, "similarity_after": after,
                      "similarity_fell": fell, "calibration_lost": calib_lost,
                      "calibration_cost": calib_cost, "calibration_images": len(y_cal)})
        save_tensors(out, model.state_dict(), card.to_dict())
