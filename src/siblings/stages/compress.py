"""The ``compress`` stage: the full model through one compression method into an on-device sibling."""

from __future__ import annotations

import time

from siblings.artifacts import save_tensors
from siblings.cards import ModelCard, Parent
from siblings.checkpoints import load_model
from siblings.compress import COMPRESSIONS, Job
from siblings.engine import n_equal, percent, percent_equal, predict
from siblings.logs import log
from siblings.measure import measure
from siblings.models import count_parameters
from siblings.stages.runner import stage


def run(data: str, full: str, out: str, compression_id: str, params: dict, seed: int,
        code_version: str, log_file: str | None = None, threads: int = 1,
        device: str = "cpu") -> None:
    """Compresses the full model ``full`` with method ``params['method']`` into ``out``.

    The structure changes on the CPU (as it does when the sibling is reloaded), the method
    calibrates or fine-tunes on the stage's device, and the deployed form is built and
    measured on the CPU, where the int8 kernels run."""
    with stage(log_file, threads, seed, device, data) as env:
        splits = env.splits
        model, full_card = load_model(full)
        teacher, _ = load_model(full, env.device)
        x_test, y_test = splits.images("test"), splits.labels("test")
        full_pred = predict(teacher, x_test)
        method = COMPRESSIONS.get(params["method"])
        start = time.time()
        structure = method.prepare(model, params, None)
        model.to(env.device)
        measured = method.fit(model, Job(splits, params, seed, teacher))
        seconds = time.time() - start
        pred = predict(model, x_test)
        correct = n_equal(pred, y_test)
        acc = percent(correct, len(y_test))
        agree = percent_equal(pred, full_pred)
        product = measure(method.deploy(model.cpu(), params), x_test.cpu(), y_test.cpu(),
                          reference=pred.cpu())
        log.info("%s %s: accuracy %.2f%% (full %.2f%%), agreement with full %.2f%%; "
                 "deployed as %s: %s", full_card.spec.arch, compression_id, acc,
                 full_card.test_accuracy, agree, product["runtime"], product)
        card = ModelCard(
            kind="sibling", spec=full_card.spec, seed=seed, n_correct=correct,
            n_test=len(y_test), parameters=count_parameters(model), seconds=seconds,
            code_version=code_version, device=env.device_name, product=product,
            parent=Parent(str(full), full_card.n_correct, full_card.code_version),
            compression_id=compression_id, compression=params, family=method.family,
            structure=structure, agreement_with_full=agree, measured=measured)
        save_tensors(out, model.state_dict(), card.to_dict())
