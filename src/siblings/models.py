"""Architecture registry: 19 ImageNet architectures from timm/torchvision, adapted to small inputs.

Every model is the library's own factory output with at most two documented tweaks: the
input convolution takes the dataset's channel count (AlexNet's 11x11/4 stem becomes
5x5/2, and the sequential nets get a 1x1 head), and a
``width`` knob scales channels where the factory offers one, so CPU runs stay
affordable. Inputs are raw pixels in [0, 1]; normalisation and padding to the model's
input size live inside the model, so attacks work in pixel space and eps means pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from siblings.registry import Registry

Factory = Callable[..., nn.Module]
ARCHITECTURES: Registry[Factory] = Registry("architecture")
CORE_ARCHITECTURES = ("alexnet", "vgg16", "resnet18", "mobilenetv2")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's structure; stored in every weight sidecar."""

    arch: str
    in_chans: int
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    width: float = 1.0
    pretrained: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


class Preprocess(nn.Module):
    """Pads raw [0, 1] images with black (0) to the model's input size, then normalises."""

    def __init__(self, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = self.input_size - x.shape[-2], self.input_size - x.shape[-1]
        if pad_h > 0 or pad_w > 0:
            x = nn.functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return (x - self.mean) / self.std


class SiblingNet(nn.Sequential):
    """``Preprocess`` followed by the architecture's backbone; the unit every stage passes around."""

    def __init__(self, spec: ModelSpec, backbone: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.add_module("preprocess", Preprocess(spec.input_size, spec.mean, spec.std))
        self.add_module("backbone", backbone)


def create_model(spec: ModelSpec, initialise: bool = True) -> SiblingNet:
    """Builds the registered architecture ``spec.arch`` (the timm ``create_model`` pattern).

    ``initialise=False`` is for loading stored weights: the backbone is built on the meta
    device and zero-filled, skipping the random initialisation of layers the factories
    later replace (VGG16's 120M-weight ImageNet classifier cost 1.2 s per load, in every
    job). A backbone with buffers its state dict does not restore is initialised anyway.
    """
    factory = ARCHITECTURES.get(spec.arch)
    if spec.width <= 0:
        raise ValueError(f"width for '{spec.arch}' must be > 0, got {spec.width}")

    def build() -> nn.Module:
        return factory(in_chans=spec.in_chans, num_classes=spec.num_classes, width=spec.width,
                       pretrained=spec.pretrained, **spec.extra)

    if initialise:
        return SiblingNet(spec, build())
    with torch.device("meta"):
        backbone = build()
    if {name for name, _ in backbone.named_buffers()} - set(backbone.state_dict()):
        return SiblingNet(spec, build())
    backbone.to_empty(device="cpu")
    with torch.no_grad():
        for t in [*backbone.parameters(), *backbone.buffers()]:
            t.zero_()
    return SiblingNet(spec, backbone)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _ch(channels: int, width: float, divisor: int = 8) -> int:
    """Scales a channel count, rounded to a multiple of ``divisor`` as the factories do."""
    return max(divisor, int(math.ceil(channels * width / divisor) * divisor))


def _conv_like(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A fresh conv with ``conv``'s hyper-parameters but ``in_chans`` input channels."""
    return nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None)


def _scale_sequential(model: nn.Module, in_chans: int, num_classes: int, width: float) -> nn.Module:
    """Rescales a purely sequential torchvision net (AlexNet, VGG) in place.

    Walks the layers in execution order, rebuilding each conv/linear/batch-norm with
    ``width`` times its channels and the previous layer's output as input; the global
    pool becomes 1x1 because a 32-px input leaves 1x1 maps anyway, and the classifier
    ends in ``num_classes``.
    """
    prev = in_chans
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                out = _ch(child.out_channels, width)
                setattr(parent, name, nn.Conv2d(prev, out, child.kernel_size, child.stride,
                                                child.padding, bias=child.bias is not None))
                prev = out
            elif isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.BatchNorm2d(prev))
            elif isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(parent, name, nn.AdaptiveAvgPool2d(1))
            elif isinstance(child, nn.Linear):
                out = num_classes if child is linears[-1] else _ch(child.out_features, width)
                setattr(parent, name, nn.Linear(prev, out))
                prev = out
    return model


def _full_width_only(name: str, pretrained: bool, width: float) -> None:
    """Published weights exist only for the published width."""
    if pretrained and width != 1.0:
        raise ValueError(f"pretrained '{name}' weights only fit width 1.0, got {width}")


def _no_pretrained(name: str, pretrained: bool) -> None:
    """Architectures whose stem or tokenizer is rebuilt for 32 px cannot take published weights."""
    if pretrained:
        raise ValueError(f"no pretrained weights for '{name}': its input layers are rebuilt for "
                         "small images; set train.pretrained: false")


# timm and torchvision load lazily: planning a run only needs the registered names, and
# importing both costs seconds on every `snakemake -n`.
def _tvm():
    import torchvision.models

    return torchvision.models


def _timm(name: str, in_chans: int, num_classes: int, pretrained: bool, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=pretrained, in_chans=in_chans,
                             num_classes=num_classes, **kwargs)


def _timm_resnet(name: str, widths: tuple[int, ...], in_chans: int, num_classes: int,
                 width: float, pretrained: bool) -> nn.Module:
    if width == 1.0:
        return _timm(name, in_chans, num_classes, pretrained)
    _full_width_only(name, pretrained, width)
    return _timm(name, in_chans, num_classes, False,
                 channels=tuple(_ch(c, width) for c in widths), stem_width=_ch(64, width))


# --- the four architectures of the paper's first author -------------------------------

@ARCHITECTURES.register("alexnet")
def alexnet(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """torchvision AlexNet; stem 11x11/4 becomes 5x5/2 for 32-px inputs, width scales all layers."""
    _no_pretrained("alexnet", pretrained)
    model = _tvm().alexnet(num_classes=num_classes)
    model.features[0] = nn.Conv2d(in_chans, 64, kernel_size=5, stride=2, padding=2)
    return _scale_sequential(model, in_chans, num_classes, width)


@ARCHITECTURES.register("vgg16")
def vgg16(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """torchvision VGG16 with batch norm (CIFAR-style 1x1 head); width scales all layers."""
    _no_pretrained("vgg16", pretrained)
    return _scale_sequential(_tvm().vgg16_bn(num_classes=num_classes), in_chans, num_classes, width)


@ARCHITECTURES.register("resnet18")
def resnet18(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm ResNet-18; width scales stage channels."""
    return _timm_resnet("resnet18", (64, 128, 256, 512), in_chans, num_classes, width, pretrained)


@ARCHITECTURES.register("mobilenetv2")
def mobilenetv2(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """torchvision MobileNetV2 (``width_mult``), its own stride-2 stem: 1x1 final maps at 32 px.

    A stride-1 stem (the usual CIFAR tweak) made a training step 2.5-3x slower on the CPU
    for 2.4 points of Fashion-MNIST accuracy (86.9% against 84.5% at width 0.35).
    """
    _no_pretrained("mobilenetv2", pretrained)
    model = _tvm().mobilenet_v2(num_classes=num_classes, width_mult=width)
    model.features[0][0] = _conv_like(model.features[0][0], in_chans)
    return model


# --- deeper and wider ResNets, dense connections -------------------------------------

@ARCHITECTURES.register("resnet34")
def resnet34(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm ResNet-34 (deeper BasicBlock ResNet); width scales stage channels."""
    return _timm_resnet("resnet34", (64, 128, 256, 512), in_chans, num_classes, width, pretrained)


@ARCHITECTURES.register("resnet50")
def resnet50(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm ResNet-50 (bottleneck blocks); width scales stage channels."""
    return _timm_resnet("resnet50", (64, 128, 256, 512), in_chans, num_classes, width, pretrained)


@ARCHITECTURES.register("wide_resnet50")
def wide_resnet50(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm Wide-ResNet-50-2 (twice the bottleneck width); width scales stage channels."""
    return _timm_resnet("wide_resnet50_2", (64, 128, 256, 512), in_chans, num_classes, width,
                        pretrained)


@ARCHITECTURES.register("densenet121")
def densenet121(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm DenseNet-121; width scales the growth rate (32 at width 1)."""
    if width != 1.0:
        _full_width_only("densenet121", pretrained, width)
        return _timm("densenet121", in_chans, num_classes, False,
                     growth_rate=max(4, round(32 * width)))
    return _timm("densenet121", in_chans, num_classes, pretrained)


# --- mobile convolutional nets --------------------------------------------------------

def _timm_fixed(name: str) -> Factory:
    """A timm model with no width knob of its own: width must stay 1.0."""

    def build(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
        if width != 1.0:
            raise ValueError(f"'{name}' has no width knob; use width 1.0")
        return _timm(name, in_chans, num_classes, pretrained)

    build.__doc__ = f"timm ``{name}`` at its published size."
    return build


ARCHITECTURES.register("efficientnet_b0")(_timm_fixed("efficientnet_b0"))
ARCHITECTURES.register("mobilenetv3_small")(_timm_fixed("mobilenetv3_small_100"))
ARCHITECTURES.register("mnasnet")(_timm_fixed("mnasnet_100"))
ARCHITECTURES.register("regnetx_002")(_timm_fixed("regnetx_002"))
ARCHITECTURES.register("ghostnet")(_timm_fixed("ghostnet_100"))


@ARCHITECTURES.register("shufflenetv2")
def shufflenetv2(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """torchvision ShuffleNetV2 x1.0; width scales the stage outputs."""
    _no_pretrained("shufflenetv2", pretrained)
    stages = [24] + [_ch(c, width, 4) for c in (116, 232, 464)] + [_ch(1024, width)]
    model = _tvm().ShuffleNetV2([4, 8, 4], stages, num_classes=num_classes)
    model.conv1[0] = _conv_like(model.conv1[0], in_chans)
    return model


@ARCHITECTURES.register("squeezenet")
def squeezenet(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """torchvision SqueezeNet 1.1 (fire modules); no width knob."""
    if width != 1.0:
        raise ValueError("'squeezenet' has no width knob; use width 1.0")
    _no_pretrained("squeezenet", pretrained)
    model = _tvm().squeezenet1_1(num_classes=num_classes)
    model.features[0] = _conv_like(model.features[0], in_chans)
    return model


@ARCHITECTURES.register("googlenet")
def googlenet(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """torchvision GoogLeNet (Inception v1), no auxiliary heads; no width knob."""
    if width != 1.0:
        raise ValueError("'googlenet' has no width knob; use width 1.0")
    _no_pretrained("googlenet", pretrained)
    model = _tvm().googlenet(num_classes=num_classes, aux_logits=False, init_weights=True)
    model.transform_input = False
    model.conv1.conv = _conv_like(model.conv1.conv, in_chans)
    return model


# --- modern conv and attention/MLP nets ------------------------------------------------

@ARCHITECTURES.register("convnext_atto")
def convnext_atto(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm ConvNeXt-Atto (4x4 patch stem); width scales stage dims."""
    if width == 1.0:
        return _timm("convnext_atto", in_chans, num_classes, pretrained)
    _full_width_only("convnext_atto", pretrained, width)
    return _timm("convnext_atto", in_chans, num_classes, False,
                 dims=tuple(_ch(c, width) for c in (40, 80, 160, 320)))


@ARCHITECTURES.register("deit_tiny")
def deit_tiny(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm DeiT-Tiny ViT at 32 px with 4x4 patches (64 tokens); width scales the embedding."""
    _no_pretrained("deit_tiny", pretrained)
    heads = 3
    return _timm("deit_tiny_patch16_224", in_chans, num_classes, False, img_size=32,
                 patch_size=4, embed_dim=_ch(192, width, 8 * heads), num_heads=heads)


@ARCHITECTURES.register("mixer_s4")
def mixer_s4(in_chans: int, num_classes: int, width: float, pretrained: bool) -> nn.Module:
    """timm MLP-Mixer-S (8 blocks) at 32 px with 4x4 patches; width scales the embedding."""
    _no_pretrained("mixer_s4", pretrained)
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(num_classes=num_classes, img_size=32, in_chans=in_chans, patch_size=4,
                    num_blocks=8, embed_dim=_ch(512, width))
