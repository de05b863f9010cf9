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
    spent, accuracy, goal = distil_until_close(surrogate(), trained, x[:300], x[300:], y[300:],
                                               {**PARAMS, "within": 100.0}, seed=0)
    assert spent == 0.5 and goal == 100.0  # one round: any accuracy is within 100 points


def test_distillation_goes_on_until_close_or_out_of_epochs(trained, blobs):
    x, y = blobs
    close = distil_until_close(surrogate(), trained, x[:300], x[300:], y[300:],
                               {**PARAMS, "within": 3.0}, seed=0)
    assert close[1] >= close[2] - 3.0 or close[0] == 2.0
    never = distil_until_close(surrogate(), trained, x[:300], x[300:], y[300:],
                               {**PARAMS, "within": -1.0}, seed=0)  # cannot be met
    assert never[0] == 2.0  # every epoch spent; the stage reports the attempt as failed
