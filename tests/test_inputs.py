"""What a config points at is checked before any job: the dataset root, starting weights."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from siblings.checkpoints import Start, starting_model
from siblings.config import ConfigError, validate
from siblings.inputs import check_inputs
from siblings.cards import ModelSpec
from siblings.models import create_model

from test_config import smoke


def with_weights(tmp_path, value: str, arch: str = "resnet18", width: float = 0.25) -> dict:
    cfg = smoke()
    cfg["archs"] = {arch: {"width": width, "weights": {"full": value}}}
    return validate(cfg)


def backbone_file(tmp_path, width: float = 0.25, classes: int = 10) -> str:
    spec = ModelSpec("resnet18", 1, classes, 32, (0.5,), (0.5,), width=width)
    path = tmp_path / f"resnet18-{width}-{classes}.safetensors"
    save_file(create_model(spec).backbone.state_dict(), str(path))
    return str(path)


def test_a_missing_dataset_root_names_the_key_and_the_path(tmp_path):
    cfg = smoke()
    cfg["dataset"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=rf"dataset\.root.*{tmp_path / 'nowhere'}"):
        check_inputs(validate(cfg))


def test_an_image_folder_needs_train_and_val_with_the_same_classes(tmp_path):
    from PIL import Image

    cfg = smoke()
    cfg["dataset"] = {"name": "imagefolder", "root": str(tmp_path), "image_size": 64,
                      "calib_size": 10}
    cfg["compressions"]["ptq-w8a8"]["calib_size"] = 10
    with pytest.raises(ConfigError, match="dataset 'imagefolder' not found"):
        check_inputs(validate(cfg))
    for part in ("train", "val"):
        for c in ("cat", "dog", "emu"):
            (tmp_path / part / c).mkdir(parents=True)
    with pytest.raises(ConfigError, match="'dataset.calib_size': 10 leaves no training "
                                          "images; the train part holds 0"):
        check_inputs(validate(cfg))  # class folders without images
    for part, n in (("train", 20), ("val", 20)):
        for c in ("cat", "dog", "emu"):
            for i in range(n):
                Image.new("RGB", (8, 8)).save(tmp_path / part / c / f"{i}.png")
    shape = check_inputs(validate(cfg))
    assert (shape.channels, shape.classes, shape.side, shape.train, shape.test) == (3, 3, 64,
                                                                                   60, 60)


def test_a_fitting_checkpoint_passes_and_loads_exactly(tmp_path):
    path = backbone_file(tmp_path)
    check_inputs(with_weights(tmp_path, path))
    model = starting_model("resnet18", 0.25, {"channels": 1, "num_classes": 10,
                                              "input_size": 32, "mean": [0.5], "std": [0.5]},
                           Start.parse(path))
    from safetensors.torch import load_file

    stored = load_file(path)
    assert all(torch.equal(v, stored[k]) for k, v in model.backbone.state_dict().items())


@pytest.mark.parametrize("wrong,message", [
    ("width", r"does not fit resnet18 \(width 0.25.*of another shape"),
    ("classes", r"does not fit resnet18.*10 classes.*of another shape.*fc"),
])
def test_a_checkpoint_of_another_model_is_refused_naming_the_key(tmp_path, wrong, message):
    path = backbone_file(tmp_path, width=0.5) if wrong == "width" else \
        backbone_file(tmp_path, classes=7)
    with pytest.raises(ConfigError, match=rf"archs\.resnet18\.weights\.full.*{message}"):
        check_inputs(with_weights(tmp_path, path))


def test_a_pickle_or_missing_checkpoint_is_refused(tmp_path):
    pickled = tmp_path / "resnet18.pt"
    pickled.write_bytes(pickle.dumps({"fc.weight": [1.0]}))
    with pytest.raises(ConfigError, match=r"weights\.full.*not a safetensors file"):
        check_inputs(with_weights(tmp_path, str(pickled)))
    with pytest.raises(ConfigError, match=r"weights\.full.*does not exist"):
        check_inputs(with_weights(tmp_path, str(tmp_path / "gone.safetensors")))


def test_published_weights_are_refused_where_they_cannot_apply(tmp_path):
    with pytest.raises(ConfigError, match=r"archs\.alexnet\.weights\.full.*rebuilt"):
        check_inputs(with_weights(tmp_path, "pretrained", arch="alexnet", width=1.0))
    with pytest.raises(ConfigError, match=r"width 1\.0 only, not 0\.25"):
        check_inputs(with_weights(tmp_path, "pretrained"))
    with pytest.raises(ConfigError, match=r"timm has no 'resnet18\.b9_in1k'; its tags: a1_in1k"):
        check_inputs(with_weights(tmp_path, "pretrained:b9_in1k", width=1.0))
    check_inputs(with_weights(tmp_path, "pretrained:tv_in1k", width=1.0))


def test_zero_epochs_need_starting_weights_for_both_models(tmp_path):
    cfg = with_weights(tmp_path, backbone_file(tmp_path))
    cfg["archs"]["resnet18"]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"archs\.resnet18\.epochs.*leaves the independent"):
        check_inputs(cfg)


def test_unreachable_published_weights_say_what_to_do(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    meta = {"channels": 1, "num_classes": 10, "input_size": 32, "mean": [0.5], "std": [0.5]}
    with pytest.raises(RuntimeError, match=r"could not fetch timm's published weights for "
                                           r"resnet18.*archs\.resnet18\.weights"):
        starting_model("resnet18", 1.0, meta, Start.parse("pretrained"))


def test_untrained_published_weights_must_fit_the_dataset_classes(tmp_path):
    cfg = with_weights(tmp_path, "pretrained:tv_in1k", width=1.0)
    cfg["archs"]["resnet18"].update(epochs=0, weights={"full": "pretrained:tv_in1k",
                                                       "independent": "pretrained:a1_in1k"})
    with pytest.raises(ConfigError, match=r"'resnet18\.tv_in1k' classifies 1000 classes and the "
                                          r"dataset has 10; with 0 epochs"):
        check_inputs(cfg)


def test_a_model_named_by_config_that_cannot_adapt_stops_the_run_before_any_job():
    cfg = smoke()
    cfg["archs"] = {"torchvision/vit_b_16": {}, "timm/resnet10t": {}}
    cfg["compressions"]["kd-googlenet"] = {"method": "kd", "student": "torchvision/googlenet",
                                           "epochs": 1}
    with pytest.raises(ConfigError) as err:
        check_inputs(validate(cfg))
    assert str(err.value) == (
        "invalid config:\n  config key 'archs.torchvision/vit_b_16': torchvision/vit_b_16 "
        "cannot adapt to the dataset (1 channels, 10 classes, 32 px): AssertionError: Wrong "
        "image height! Expected 224 but got 32!\n  config key 'compressions.kd-googlenet."
        "student': torchvision/googlenet cannot adapt to the dataset (1 channels, 10 classes, "
        "32 px): it returns a GoogLeNetOutputs, not one tensor of scores")


def test_an_unknown_named_model_is_refused_at_validation():
    cfg = smoke()
    cfg["archs"] = {"timm/resnet10x": {}}
    with pytest.raises(ConfigError, match=r"config key 'archs.timm/resnet10x': timm has no model "
                                          r"'resnet10x'; close: resnet10t"):
        validate(cfg)
