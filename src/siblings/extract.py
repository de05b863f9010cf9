"""Model extraction: the adaptive attacker distils a sibling's function into a model it owns.

A weak surrogate would make a defense look stronger than it is, so distillation goes on,
``epochs`` at a time, until the surrogate is within ``within`` points of the sibling's
accuracy on the calibration split (never the test split), or ``max_epochs`` are spent.
"""

from __future__ import annotations

import torch

from siblings.compress import kd_loss
from siblings.engine import logits, n_correct, percent, within_points
from siblings.knobs import Knob, integer, names, number
from siblings.logs import log
from siblings.train import fit


# The ``extract`` section: the adaptive attacker's surrogate (role ``extracted``).
EXTRACT_KNOBS = {
    "epochs": Knob(number(above=0), "epochs per round of distillation", 1.0),
    "max_epochs": Knob(number(above=0), "stop after this many epochs, the attempt then "
                       "reported as failed", 4.0),
    "within": Knob(number(0), "stop once the surrogate is this many points or fewer below "
                   "the sibling's accuracy on the calibration split", 3.0),
    "lr": Knob(number(above=0), "learning rate (AdamW, one-cycle)", 0.003),
    "batch_size": Knob(integer(1), "distillation batch size", 128),
    "temperature": Knob(number(above=0), "softmax temperature of the sibling's scores", 4.0),
    "siblings": Knob(names(), "compression ids whose defended siblings are extracted "
                     "(default: all)"),
}


def distil_until_close(surrogate: torch.nn.Module, victim: torch.nn.Module, x: torch.Tensor,
                       x_calib: torch.Tensor, y_calib: torch.Tensor, params: dict,
                       seed: int) -> tuple[float, int, int]:
    """Distils ``victim`` into ``surrogate`` in rounds of ``params['epochs']`` until its
    calibration accuracy is within ``params['within']`` points of the victim's or
    ``params['max_epochs']`` are spent. Returns (epochs spent, how many calibration images
    the surrogate and the victim label right)."""
    teacher = logits(victim, x)
    goal = n_correct(victim, x_calib, y_calib)
    spent, correct, round_ = 0.0, 0, 0
    while spent < params["max_epochs"] - 1e-9:
        epochs = min(params["epochs"], params["max_epochs"] - spent)
        fit(surrogate, x, teacher, epochs, params["batch_size"], params["lr"], 0.0,
            seed + round_, f"extract round {round_}", kd_loss(params["temperature"]))
        spent, round_ = spent + epochs, round_ + 1
        correct = n_correct(surrogate, x_calib, y_calib)
        log.info("extract round %d (%.2f epochs): surrogate %.2f%%, sibling %.2f%% on the "
                 "calibration split", round_, spent, percent(correct, len(y_calib)),
                 percent(goal, len(y_calib)))
        if within_points(goal - correct, len(y_calib), params["within"]):
            break
    return spent, correct, goal
