"""The device is picked in one place, refused where absent, recorded, and changes no CPU result."""

import pytest
import torch

from siblings import device as devices
from siblings.artifacts import read_json, sidecar_path
from siblings.attacks import ATTACKS, Budget
from siblings.attacks.batch import attack_set
from siblings.stages import train

from test_attacks import Counting


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(devices, "cuda_available", lambda: False)


def test_per_device_values_pick_the_device_entry():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert devices.for_device(250, cuda) == 250
    assert devices.for_device({"cpu": 100, "cuda": 1000}, cpu) == 100
    assert devices.for_device({"cpu": None, "cuda": 8192}, cuda) == 8192


def test_cuda_is_refused_where_none_is_visible_naming_the_key(no_cuda):
    with pytest.raises(devices.DeviceError, match="config key 'device': 'cuda'.*no CUDA device"):
        devices.resolve("cuda")
    assert devices.resolve("auto") == torch.device("cpu")
    assert devices.resolve("cpu") == torch.device("cpu")


def test_the_stage_records_its_device_in_the_sidecar(tmp_path, data_artifact):
    out = tmp_path / "full.safetensors"
    train.run(data_artifact, str(out), "resnet18", 0.125, 0,
              {"epochs": 0.2, "batch_size": 50, "lr": 0.01, "weight_decay": 0.0}, "t",
              device="auto")
    assert read_json(sidecar_path(out))["device"] == devices.describe(devices.resolve("auto"))


@pytest.mark.parametrize("name", ["prgf", "rgf", "square"])
def test_every_pass_of_the_target_has_the_chunks_shape(trained, blobs, name):
    """The chunk bounds memory on a GPU and fixes the kernels' shape: every pass has
    exactly ``chunk`` rows, and only the images sent count as queries."""
    x, y = attack_set(trained, blobs[0], blobs[1], 12, seed=0)
    knobs = {"samples": 10, "step_size": 0.02} if name != "square" else {}
    counted = Counting(trained)
    result = ATTACKS.get(name)(chunk=7, **knobs)(trained, counted, x, y,
                                                 Budget(0.1, queries=100))
    assert set(counted.rows) == {7}
    assert counted.images == int(result.queries.sum())
