"""The ``train`` stage: the full-scale model, and with another seed the attacker's independent model."""

from __future__ import annotations

import time

from siblings.artifacts import save_tensors
from siblings.checkpoints import Start, starting_model
from siblings.engine import n_correct, percent
from siblings.cards import ModelCard
from siblings.logs import log
from siblings.measure import float_deployment, measure
from siblings.models import count_parameters
from siblings.stages.runner import stage
from siblings.train import fit


def run(data: str, out: str, arch: str, width: float, seed: int, params: dict,
        code_version: str, log_file: str | None = None, threads: int = 1,
        device: str = "cpu", init: str | None = None) -> None:
    """Trains ``arch`` with ``seed`` on the train split, from the starting weights ``init``
    (None: random; see :class:`Start`), and stores it with its test accuracy."""
    with stage(log_file, threads, seed, device, data) as env:
        splits = env.splits
        model = starting_model(arch, width, splits.meta, Start.parse(init)).to(env.device)
        log.info("training %s (width %s, seed %d, %d params, start: %s) on %d images for %g "
                 "epochs", arch, width, seed, count_parameters(model), init or "random",
                 len(splits.labels("train")), params["epochs"])
        start = time.time()
        if params["epochs"] > 0:
            fit(model, splits.images("train"), splits.labels("train"), params["epochs"],
                params["batch_size"], params["lr"], params["weight_decay"], seed,
                f"train {arch}")
        seconds = time.time() - start
        x_test, y_test = splits.images("test"), splits.labels("test")
        correct = n_correct(model, x_test, y_test)
        acc = percent(correct, len(y_test))
        product = measure(float_deployment(model.cpu()), x_test.cpu(), y_test.cpu(),
                          reference=None)
        log.info("%s seed %d: test accuracy %.2f%% after %.0f s; %s", arch, seed, acc, seconds,
                 product)
        card = ModelCard(
            kind="full", spec=model.spec, seed=seed, n_correct=correct, n_test=len(y_test),
            parameters=count_parameters(model), seconds=seconds, code_version=code_version,
            device=env.device_name, product=product, settings=params, start=init)
        save_tensors(out, model.state_dict(), card.to_dict())
