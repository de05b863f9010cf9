import re

import torch

from siblings.extract import distil_until_close
from siblings.models import create_model

from conftest import tiny_spec

PARAMS = {"epochs": 0.5, "max_epochs": 2.0, "batch_size": 50, "lr": 0.003, "temperature": 4.0}


def surrogate() -> torch.nn.Module:
    torch.manual_seed(3)
    return create_model(tiny_spec())


def test_distillation_stops_as_soon_as_the_surrogate_is_close(trained, blobs):
    x, y = blobs
    spent, correct, goal = distil_until_close(surrogate(), trained, x[:300], x[300:], y[300:],
                                              {**PARAMS, "within": 100.0}, seed=0)
    assert spent == 0.5 and goal == 100  # one round: any accuracy is within 100 points


ROUND = re.compile(r"extract round (\d+) \([\d.]+ epochs\): surrogate ([\d.]+)%, sibling "
                   r"([\d.]+)%")


def test_distillation_goes_on_until_the_first_close_round_or_out_of_epochs(trained, blobs,
                                                                          caplog):
    """Read off the rounds it logged: every round before the last was more than ``within``
    points behind the sibling, and the last was within them, unless the epochs ran out."""
    x, y = blobs
    with caplog.at_level("INFO", logger="siblings"):
        spent, correct, goal = distil_until_close(surrogate(), trained, x[:300], x[300:],
                                                  y[300:], {**PARAMS, "epochs": 0.25,
                                                            "within": 3.0}, seed=0)
    rounds = [tuple(map(float, m.groups())) for r in caplog.records
              if (m := ROUND.search(r.getMessage()))]
    assert len(rounds) == round(spent / 0.25) >= 2  # a setting that takes several rounds
    assert all(sibling - surrogate_ > 3.0 for _, surrogate_, sibling in rounds[:-1])
    assert rounds[-1][2] - rounds[-1][1] <= 3.0 or spent == PARAMS["max_epochs"]
    assert (rounds[-1][1], rounds[-1][2]) == (correct, goal)  # 100 images: counts = percent
    never = distil_until_close(surrogate(), trained, x[:300], x[300:], y[300:],
                               {**PARAMS, "within": -1.0}, seed=0)  # cannot be met
    assert never[0] == 2.0  # every epoch spent; the stage reports the attempt as failed
