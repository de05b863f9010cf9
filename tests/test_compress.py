import copy

import pytest
import torch

from siblings.checkpoints import load_model
from siblings.compress import COMPRESSIONS, Job, prunable_weights, sparsity
from siblings.models import count_parameters
from siblings.config import ConfigError, entry, validate
from siblings.data import Splits

from conftest import save_model, tiny_spec
from test_config import smoke
from test_quant import load_copy


def blob_splits(blobs) -> Splits:
    x, y = blobs
    xu8 = (x * 255).round().to(torch.uint8)
    return Splits({"x_train": xu8[:300], "y_train": y[:300], "x_calib": xu8[300:],
                   "y_calib": y[300:]}, {})


@pytest.mark.parametrize("amount", [0.5, 0.8])
def test_pruning_hits_the_requested_sparsity_and_reloads(tmp_path, trained, blobs, amount):
    model = load_copy(trained).to(memory_format=torch.channels_last)  # as `fit` leaves it
    params = entry("compressions", {"method": "prune", "sparsity": amount, "finetune_epochs": 4,
                                    "batch_size": 50, "lr": 0.01})
    method = COMPRESSIONS.get("prune")
    method.prepare(model, params)
    measured = method.fit(model, Job(blob_splits(blobs), params, 0, trained))
    assert measured["sparsity"] == pytest.approx(amount, abs=0.01)
    assert not any(hasattr(m, "weight_mask") for m, _ in prunable_weights(model))
    x, y = blobs
    with torch.no_grad():
        assert (model.eval()(x).argmax(1) == y).float().mean() > 0.7  # recovered by fine-tuning
    path = tmp_path / "p.safetensors"
    save_model(path, model, kind="sibling", compression=params)
    again, _ = load_model(path)
    assert sparsity(again.backbone) == pytest.approx(measured["sparsity"])


def compressed(trained, blobs, params: dict) -> tuple[torch.nn.Module, dict]:
    """``trained`` compressed by the config entry ``params``, completed as the validator
    completes it for the compress stage."""
    params = entry("compressions", params)
    model = load_copy(trained)
    method = COMPRESSIONS.get(params["method"])
    method.prepare(model, params)
    measured = method.fit(model, Job(blob_splits(blobs), params, 0, trained))
    return model.eval(), measured


def accuracy_on_blobs(model, blobs) -> float:
    x, y = blobs
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def reload(tmp_path, model, params):
    path = tmp_path / "s.safetensors"
    save_model(path, model, kind="sibling", spec=tiny_spec(), compression=params)
    return load_model(path)[0]


def test_channel_pruning_removes_parameters_and_reloads(tmp_path, trained, blobs):
    params = entry("compressions", {"method": "channel-prune", "channel_ratio": 0.5,
                                    "finetune_epochs": 12, "batch_size": 50, "lr": 0.01})
    model, measured = compressed(trained, blobs, params)
    assert measured["parameter_reduction"] >= 0.4
    assert count_parameters(model) <= 0.6 * count_parameters(trained)
    assert accuracy_on_blobs(model, blobs) > 0.7
    again = reload(tmp_path, model, params)
    with torch.no_grad():  # not bit-equal: fine-tuning leaves weights channels-last
        assert torch.allclose(again(blobs[0][:8]), model(blobs[0][:8]), atol=1e-4)


@pytest.mark.parametrize("student", ["self", "mobilenetv2"])
def test_distilled_student_learns_from_soft_labels_and_shares_no_weights(tmp_path, trained,
                                                                          blobs, student):
    params = entry("compressions", {"method": "kd", "student": student, "epochs": 20,
                                    "batch_size": 40, "lr": 0.01,
                                    **({"width_factor": 0.5} if student == "self" else
                                       {"width": 0.1})})
    model, measured = compressed(trained, blobs, params)
    assert measured["student"] == ("resnet18" if student == "self" else student)
    if student == "self":
        assert count_parameters(model) < count_parameters(trained)
    assert accuracy_on_blobs(model, blobs) > 0.7
    again = reload(tmp_path, model, params)
    with torch.no_grad():  # not bit-equal: fine-tuning leaves weights channels-last
        assert torch.allclose(again(blobs[0][:8]), model(blobs[0][:8]), atol=1e-4)


@pytest.mark.parametrize("distill", [False, True])
def test_qat_recovers_4bit_accuracy(trained, blobs, distill):
    params = {"method": "qat", "weight_bits": 4, "act_bits": 4, "edge_bits": 4,
              "observer": "ema", "finetune_epochs": 4, "batch_size": 50, "lr": 0.002,
              "distill": distill, "bias_correction": True}
    model, _ = compressed(trained, blobs, params)
    assert accuracy_on_blobs(model, blobs) > 0.9


BAD_COMPRESSIONS = {
    "bits 0": ({"method": "ptq", "weight_bits": 0, "act_bits": 8}, "weight_bits"),
    "bits 1": ({"method": "ptq", "weight_bits": 8, "act_bits": 1}, "act_bits"),
    "bits 33": ({"method": "ptq", "weight_bits": 8, "act_bits": 33}, "act_bits"),
    "bits eight": ({"method": "ptq", "weight_bits": "eight", "act_bits": 8}, "weight_bits"),
    "sparsity 1": ({"method": "prune", "sparsity": 1.0, "finetune_epochs": 1}, "sparsity"),
    "sparsity negative": ({"method": "prune", "sparsity": -0.1, "finetune_epochs": 1},
                          "sparsity"),
    "prune without sparsity": ({"method": "prune", "finetune_epochs": 1}, "sparsity"),
    "ratio 1": ({"method": "channel-prune", "channel_ratio": 1.0, "finetune_epochs": 1},
                "channel_ratio"),
    "unknown student": ({"method": "kd", "student": "resnet9000", "epochs": 1}, "student"),
    "qat 9 bits": ({"method": "qat", "weight_bits": 9, "act_bits": 8, "finetune_epochs": 1},
                   "weight_bits"),
}


@pytest.mark.parametrize("case", BAD_COMPRESSIONS)
def test_bad_compression_parameters_name_the_key(case):
    entry, key = BAD_COMPRESSIONS[case]
    cfg = copy.deepcopy(smoke())
    cfg["compressions"] = {"bad": entry}
    with pytest.raises(ConfigError, match=rf"compressions\.bad.*{key}"):
        validate(cfg)


def test_a_knob_that_does_not_apply_is_absent_and_the_method_runs_without_it(trained, blobs):
    """range_search does not apply with the histogram observer: the validated entry leaves
    it out, and calibration runs without it."""
    params = entry("compressions", {"method": "ptq", "weight_bits": 6, "act_bits": 6,
                                    "observer": "histogram"})
    assert "range_search" not in params
    model, measured = compressed(trained, blobs, params)
    assert measured == {"calibration_images": 100} and accuracy_on_blobs(model, blobs) > 0.7


def test_an_architecture_pytorch_cannot_convert_to_int8_is_flagged_not_dropped(
        trained, blobs, monkeypatch):
    model = load_copy(trained)
    params = entry("compressions", {"method": "ptq", "weight_bits": 8, "act_bits": 8})
    method = COMPRESSIONS.get("ptq")
    method.prepare(model, params)
    method.fit(model, Job(blob_splits(blobs), params, 0, trained))

    def unsupported(backbone):
        raise NotImplementedError("Could not run 'quantized::layer_norm' with arguments")

    monkeypatch.setattr("siblings.compress.to_int8", unsupported)
    deployment = method.deploy(model, params)
    assert deployment.model is None
    assert "int8 conversion failed: NotImplementedError: Could not run" in deployment.runtime
    assert 0 < deployment.size_bytes
