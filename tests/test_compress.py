import copy

import pytest
import torch

from siblings.artifacts import save_tensors
from siblings.compress import COMPRESSIONS, load_model, prunable_weights, sparsity
from siblings.config import ConfigError, validate
from siblings.data import Splits

from test_config import SCHEMA, smoke
from test_quant import load_copy


def blob_splits(blobs) -> Splits:
    x, y = blobs
    xu8 = (x * 255).round().to(torch.uint8)
    return Splits({"x_train": xu8[:300], "y_train": y[:300], "x_calib": xu8[300:],
                   "y_calib": y[300:]}, {})


@pytest.mark.parametrize("amount", [0.5, 0.8])
def test_pruning_hits_the_requested_sparsity_and_reloads(tmp_path, trained, blobs, amount):
    model = load_copy(trained).to(memory_format=torch.channels_last)  # as `fit` leaves it
    params = {"method": "prune", "sparsity": amount, "finetune_epochs": 4, "batch_size": 50,
              "lr": 0.01}
    method = COMPRESSIONS.get("prune")
    method.prepare(model, params)
    measured = method.fit(model, blob_splits(blobs), params, 0)
    assert measured["sparsity"] == pytest.approx(amount, abs=0.01)
    assert not any(hasattr(m, "weight_mask") for m, _ in prunable_weights(model))
    x, y = blobs
    with torch.no_grad():
        assert (model.eval()(x).argmax(1) == y).float().mean() > 0.7  # recovered by fine-tuning
    path = tmp_path / "p.safetensors"
    save_tensors(path, model.state_dict(), {"spec": model.spec.to_dict(), "compression": params})
    again, _ = load_model(path)
    assert sparsity(again.backbone) == pytest.approx(measured["sparsity"])


BAD_COMPRESSIONS = {
    "bits 0": ({"method": "ptq", "weight_bits": 0, "act_bits": 8}, "weight_bits"),
    "bits 1": ({"method": "ptq", "weight_bits": 8, "act_bits": 1}, "act_bits"),
    "bits 33": ({"method": "ptq", "weight_bits": 8, "act_bits": 33}, "act_bits"),
    "bits eight": ({"method": "ptq", "weight_bits": "eight", "act_bits": 8}, "weight_bits"),
    "sparsity 1": ({"method": "prune", "sparsity": 1.0, "finetune_epochs": 1}, "sparsity"),
    "sparsity negative": ({"method": "prune", "sparsity": -0.1, "finetune_epochs": 1},
                          "sparsity"),
    "prune without sparsity": ({"method": "prune", "finetune_epochs": 1}, "sparsity"),
}


@pytest.mark.parametrize("case", BAD_COMPRESSIONS)
def test_bad_compression_parameters_name_the_key(case):
    entry, key = BAD_COMPRESSIONS[case]
    cfg = copy.deepcopy(smoke())
    cfg["compressions"] = {"bad": entry}
    with pytest.raises(ConfigError, match=rf"compressions\.bad.*{key}"):
        validate(cfg, SCHEMA)
