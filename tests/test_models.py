import pytest
import torch

from siblings.cards import ModelSpec
from siblings.models import ARCHITECTURES, CORE_ARCHITECTURES, Architecture, create_model

SMALL_WIDTH = {"alexnet": 0.25, "vgg16": 0.125, "resnet18": 0.125, "mobilenetv2": 0.35,
               "resnet34": 0.25, "resnet50": 0.25, "wide_resnet50": 0.125, "densenet121": 0.25,
               "convnext_atto": 0.5, "deit_tiny": 0.5, "mixer_s4": 0.25}


def test_nineteen_architectures_including_the_core_four():
    assert len(ARCHITECTURES.names()) == 19
    assert set(CORE_ARCHITECTURES) <= set(ARCHITECTURES.names())


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
@pytest.mark.parametrize("chans,size", [(1, 28), (3, 32)])
def test_every_architecture_classifies_small_images(arch, chans, size):
    spec = ModelSpec(arch, chans, 10, 32, (0.5,) * chans, (0.5,) * chans,
                     width=SMALL_WIDTH.get(arch, 1.0))
    model = create_model(spec).eval()
    with torch.no_grad():
        out = model(torch.rand(2, chans, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_width_knob_shrinks_the_model():
    def params(width):
        m = create_model(ModelSpec("resnet18", 1, 10, 32, (0.5,), (0.5,), width=width))
        return sum(p.numel() for p in m.parameters())

    assert params(0.25) < params(0.5) / 3


def _meta_parameters(arch: str, width: float) -> int:
    """Parameters of ``arch`` at ``width``, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = ARCHITECTURES.get(arch).factory(in_chans=1, num_classes=10, width=width,
                                                pretrained=False, input_size=32)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_every_architecture_has_a_width_knob_that_narrows_it(arch):
    assert ARCHITECTURES.get(arch).why_not("width") is None
    assert _meta_parameters(arch, 0.5) < 0.6 * _meta_parameters(arch, 1.0)


def test_pretrained_is_refused_where_declared_unsupported():
    assert "rebuilt" in ARCHITECTURES.get("alexnet").why_not("pretrained")
    with pytest.raises(ValueError, match="no pretrained weights for 'alexnet'.*rebuilt"):
        create_model(ModelSpec("alexnet", 1, 10, 32, (0.5,), (0.5,), width=1.0, pretrained=True))
    with pytest.raises(ValueError, match="no pretrained weights for .resnet18.: they fit width 1.0"):
        create_model(ModelSpec("resnet18", 1, 10, 32, (0.5,), (0.5,), width=0.5, pretrained=True))


def test_an_unknown_capability_is_a_programming_error():
    with pytest.raises(KeyError, match="unknown capability 'wings'"):
        ARCHITECTURES.get("resnet18").why_not("wings")


def test_padding_is_black_in_pixel_space():
    from siblings.models import Preprocess

    pre = Preprocess(32, (0.5,), (0.25,))
    out = pre(torch.ones(1, 1, 28, 28))
    assert out[0, 0, 0, 0].item() == pytest.approx((0 - 0.5) / 0.25)
    assert out[0, 0, 16, 16].item() == pytest.approx((1 - 0.5) / 0.25)


@pytest.mark.parametrize("arch", CORE_ARCHITECTURES)
def test_a_shell_built_for_loading_computes_what_the_model_it_loads_computes(arch):
    spec = ModelSpec(arch, 1, 10, 32, (0.5,), (0.5,), width=SMALL_WIDTH[arch])
    model = create_model(spec).eval()
    shell = create_model(spec, initialise=False)
    assert not any(p.detach().any() for p in shell.parameters())  # nothing random
    shell.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(shell.eval()(x), model(x))


def test_a_shell_keeps_buffers_a_state_dict_would_not_restore(monkeypatch):
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 10)
            self.register_buffer("scale", torch.full((1,), 3.0), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.flatten(1)[:, :4]) * self.scale

    monkeypatch.setitem(ARCHITECTURES._items, "scaled",
                        Architecture(lambda **kw: Scaled(), "test", "test"))
    shell = create_model(ModelSpec("scaled", 1, 10, 2, (0.5,), (0.5,)), initialise=False)
    assert float(shell.backbone.scale) == 3.0


def test_any_timm_or_torchvision_classifier_adapts_by_name():
    from siblings.models import adapt_problem

    for name in ("timm/resnet10t", "torchvision/resnet18"):
        entry = ARCHITECTURES.get(name)
        assert entry.probe and entry.why_not("width") and entry.why_not("channel_pruning")
        assert entry.why_not("double_backward") is None  # the defense applies
        spec = ModelSpec(name, 1, 10, 32, (0.5,), (0.5,))
        assert adapt_problem(spec) is None
        assert create_model(spec)(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert ARCHITECTURES.get("timm/resnet10t").published == "resnet10t"


def test_a_model_that_cannot_adapt_says_why_and_an_unknown_one_lists_close_names():
    from siblings.models import adapt_problem
    from siblings.registry import UnknownNameError

    problem = adapt_problem(ModelSpec("torchvision/vit_b_16", 1, 10, 32, (0.5,), (0.5,)))
    assert problem == "AssertionError: Wrong image height! Expected 224 but got 32!"
    problem = adapt_problem(ModelSpec("torchvision/googlenet", 1, 10, 32, (0.5,), (0.5,)))
    assert problem == "it returns a GoogLeNetOutputs, not one tensor of scores"  # aux heads
    with pytest.raises(UnknownNameError, match="timm has no model 'resnet10x'; close: resnet10t"):
        ARCHITECTURES.get("timm/resnet10x")
    with pytest.raises(UnknownNameError, match="torchvision has no classification model"):
        ARCHITECTURES.get("torchvision/fasterrcnn_resnet50_fpn")


def test_a_factory_the_meta_device_cannot_run_is_built_for_real(monkeypatch):
    """timm 1.0.29's RegNet sized its stages with ``torch.unique`` on a tensor made on the
    current device, which has no meta kernel: on a GPU node with that timm every RegNetX
    job failed loading its model. Loading and checking checkpoints then build it for real."""
    from timm.models import regnet

    from siblings.checkpoints import backbone_shapes

    original = regnet.generate_regnet

    def as_in_timm_1_0_29(*args, **kwargs):
        torch.unique(torch.arange(3.0))  # no device pinned: meta under torch.device("meta")
        return original(*args, **kwargs)

    monkeypatch.setattr(regnet, "generate_regnet", as_in_timm_1_0_29)
    spec = ModelSpec("regnetx_002", 1, 10, 32, (0.5,), (0.5,), width=0.5)
    with pytest.raises(NotImplementedError), torch.device("meta"):
        create_model(spec)
    loaded = create_model(spec, initialise=False)
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    real = {k: tuple(v.shape) for k, v in create_model(spec).backbone.state_dict().items()}
    assert backbone_shapes(spec) == real
    assert {k: tuple(v.shape) for k, v in loaded.backbone.state_dict().items()} == real
