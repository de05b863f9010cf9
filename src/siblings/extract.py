"""Model extraction: the adaptive attacker distils a sibling's function into a model it owns.

A weak surrogate would make a defense look stronger than it is, so distillation goes on,
``epochs`` at a time, until the surrogate is within ``within`` points of the sibling's
accuracy on the calibration split (never the test split), or ``max_epochs`` are spent.
"""

from __future__ import annotations

import torch

from siblings.compress import kd_loss
from siblings.engine import logits, percent_equal, predict
from siblings.logs import log
from siblings.train import fit


def distil_until_close(surrogate: torch.nn.Module, victim: torch.nn.Module, x: torch.Tensor,
                       x_calib: torch.Tensor, y_calib: torch.Tensor, params: dict,
                       seed: int) -> tuple[float, float, float]:
    """Distils ``victim`` into ``surrogate`` in rounds of ``params['epochs']`` until its
    calibration accuracy is within ``params['within']`` points of the victim's or
    ``params['max_epochs']`` are spent. Returns (epochs spent, surrogate's and victim's
    calibration accuracy)."""
    teacher = logits(victim, x)
    goal = percent_equal(predict(victim, x_calib), y_calib)
    spent, accuracy, round_ = 0.0, 0.0, 0
    while spent < params["max_epochs"] - 1e-9:
        epochs = min(params["epochs"], params["max_epochs"] - spent)
        fit(surrogate, x, teacher, epochs, params["batch_size"], params["lr"], 0.0,
            seed + round_, f"extract round {round_}", kd_loss(params["temperature"]))
        spent, round_ = spent + epochs, round_ + 1
        accuracy = percent_equal(predict(surrogate, x_calib), y_calib)
        log.info("extract round %d (%.2f epochs): surrogate %.2f%%, sibling %.2f%% on the "
                 "calibration split", round_, spent, accuracy, goal)
        if accuracy >= goal - params["within"]:
            break
    return spent, accuracy, goal
