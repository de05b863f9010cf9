"""Architecture registry: 19 ImageNet architectures from timm/torchvision, adapted to small
inputs, and any other timm or torchvision classifier named by config (``timm/<model>``,
``torchvision/<model>``), adapted generically and tried before any job.

Every model is the library's own factory output with at most two documented tweaks: the
input convolution takes the dataset's channel count (AlexNet's 11x11/4 stem becomes
5x5/2, and the sequential nets get a 1x1 head), and a ``width`` knob scales channels
(through the factory's own multiplier where it has one), so CPU runs stay affordable.
Inputs are raw pixels in [0, 1]; normalisation and padding to the model's input size live
inside the model, so attacks work in pixel space and eps means pixels.

Each entry declares what applies to it (:data:`CAPABILITIES`): the planner checks a config
against these declarations before any job starts, so a combination that cannot work is
refused or left out of the plan, never a job that fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import torch
from torch import nn

from siblings.cards import ModelSpec
from siblings.knobs import Knob, number
from siblings.registry import Registry, UnknownNameError

Factory = Callable[..., nn.Module]
CORE_ARCHITECTURES = ("alexnet", "vgg16", "resnet18", "mobilenetv2")

# What may or may not apply to an architecture; an entry names the ones that do not, and why.
# The keys of an ``archs.<name>`` entry.
ARCH_KNOBS = {
    "width": Knob(number(above=0, maximum=4), "scales the channels (architectures without a "
                  "width knob stay at 1.0)", 1.0),
    "epochs": Knob(number(0), "overrides train.epochs for this architecture (0: use the "
                   "starting weights as they are)"),
    "lr": Knob(number(above=0), "overrides train.lr for this architecture"),
    "weights": Knob({"type": "object", "additionalProperties": False,
                     "properties": {"full": {"type": "string", "minLength": 1},
                                    "independent": {"type": "string", "minLength": 1}}},
                    "starting weights of the full and independent models before training: "
                    "'pretrained' (timm's published weights), 'pretrained:<tag>' or the path "
                    "of a safetensors file of the backbone's state dict (unset: random)"),
}

CAPABILITIES = {
    "width": "a width knob: width other than 1.0, and distillation into a narrower copy",
    "pretrained": "published weights fit the model (at width 1.0)",
    "int8": "PyTorch converts its 8-bit sibling to a real int8 model",
    "channel_pruning": "torch-pruning removes channels (structured pruning)",
    "double_backward": "input gradients can be differentiated again (similarity-unpairing)",
}


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its factory, where it comes from, the capabilities that
    do not apply to it (each with the reason), ``published``: the timm model whose
    pretrained weights it loads at width 1.0 (None where none fit), and ``probe``: whether
    its adaptation must be tried before any job (:func:`adapt_problem`)."""

    factory: Factory
    library: str
    family: str
    unsupported: Mapping[str, str] = field(default_factory=dict)
    published: str | None = None
    probe: bool = False  # not curated: built on the meta device before any job

    def why_not(self, capability: str) -> str | None:
        """Why ``capability`` does not apply, or None when it does."""
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability '{capability}'; known: {', '.join(CAPABILITIES)}")
        return self.unsupported.get(capability)

    def pretrained_problem(self, width: float) -> str | None:
        """Why published weights cannot start this architecture at ``width`` (None: they can)."""
        if self.why_not("pretrained"):
            return self.why_not("pretrained")
        return None if width == 1.0 else f"they fit width 1.0 only, not {width:g}"


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def architecture(name: str, library: str, family: str, published: str | None = None,
                 **unsupported: str) -> Callable[[Factory], Factory]:
    """Registers a factory under ``name`` with the capabilities that do not apply to it;
    an entry either names the timm model whose weights it loads or says why none fit."""
    unknown = set(unsupported) - set(CAPABILITIES)
    if unknown:
        raise KeyError(f"unknown capabilities {sorted(unknown)}; known: {', '.join(CAPABILITIES)}")
    if (published is None) == ("pretrained" not in unsupported):
        raise ValueError(f"architecture '{name}': name its published weights or say why "
                         "none fit (pretrained=...), not both")

    def add(factory: Factory) -> Factory:
        ARCHITECTURES.register(name)(Architecture(factory, library, family, dict(unsupported),
                                                  published))
        return factory

    return add


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


def on_meta(build: Callable[[], nn.Module]) -> nn.Module | None:
    """``build()`` on the meta device, or None where it cannot be built there: a factory may
    compute its layout with an operator that has no meta kernel (timm 1.0.29's RegNet sized
    its stages with ``torch.unique``; a GPU node's timm failed every RegNetX job so)."""
    try:
        with torch.device("meta"):
            return build()
    except Exception:  # noqa: BLE001 - third-party code; the real build raises real errors
        return None


def create_model(spec: ModelSpec, initialise: bool = True) -> SiblingNet:
    """Builds the registered architecture ``spec.arch`` (the timm ``create_model`` pattern).

    ``initialise=False`` is for loading stored weights: the backbone is built on the meta
    device and zero-filled, skipping the random initialisation of layers the factories
    later replace (VGG16's 120M-weight ImageNet classifier cost 1.2 s per load, in every
    job). A backbone with buffers its state dict does not restore is initialised anyway.
    """
    entry = ARCHITECTURES.get(spec.arch)
    if spec.width <= 0:
        raise ValueError(f"width for '{spec.arch}' must be > 0, got {spec.width}")
    problem = entry.pretrained_problem(spec.width) if spec.pretrained else None
    if problem:
        raise ValueError(f"no pretrained weights for '{spec.arch}': {problem}")

    def build() -> nn.Module:
        return entry.factory(in_chans=spec.in_chans, num_classes=spec.num_classes,
                             width=spec.width, pretrained=spec.pretrained,
                             input_size=spec.input_size, **spec.extra)

    backbone = None if initialise else on_meta(build)
    if backbone is None or {name for name, _ in backbone.named_buffers()} - set(
            backbone.state_dict()):
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


def _plain_linears(model: nn.Module) -> nn.Module:
    """timm's ``Linear`` (nn.Linear plus a dtype cast for TorchScript) becomes nn.Linear,
    sharing the same parameters. FX traces into the subclass, so quantization saw a
    function with a weight argument instead of a layer: the classifier of MobileNetV3 and
    GhostNet missed its 8 edge bits and the range search met a weight observer."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear) and type(child) is not nn.Linear:
                # Built on the meta device: a real one would draw an init from the global
                # generator and shift every later random draw of the run.
                plain = nn.Linear(child.in_features, child.out_features, child.bias is not None,
                                  device="meta")
                plain.weight, plain.bias = child.weight, child.bias
                setattr(parent, name, plain)
    return model


STEM_REBUILT = "its input layers are rebuilt for small images, so published weights do not fit"
PATCHES_REBUILT = ("its patch embedding is rebuilt for an 8x8 token grid, so published "
                   "weights do not fit")
PATCH_GRID = 8  # tokens per side of the ViT/Mixer grid, whatever the input size


# timm and torchvision load lazily: planning a run only needs the registered names, and
# importing both costs seconds on every `snakemake -n`.
def _tvm():
    import torchvision.models

    return torchvision.models


def _timm(name: str, in_chans: int, num_classes: int, pretrained: bool | str,
          **kwargs) -> nn.Module:
    """``timm.create_model``; ``pretrained`` may name one of the model's weight tags."""
    import timm

    if isinstance(pretrained, str):
        name, pretrained = f"{name}.{pretrained}", True
    return _plain_linears(timm.create_model(name, pretrained=pretrained, in_chans=in_chans,
                                            num_classes=num_classes, **kwargs))


def _timm_resnet(name: str, widths: tuple[int, ...], in_chans: int, num_classes: int,
                 width: float, pretrained: bool | str) -> nn.Module:
    if width == 1.0:
        return _timm(name, in_chans, num_classes, pretrained)
    return _timm(name, in_chans, num_classes, False,
                 channels=tuple(_ch(c, width) for c in widths), stem_width=_ch(64, width))


def _timm_multiplied(name: str, builder: Callable[[float, dict], nn.Module]) -> Factory:
    """A timm model at its published size, or narrower through timm's own channel
    multiplier (``builder(width, kwargs)``: the generator behind timm's entry point)."""

    def build(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
              input_size: int) -> nn.Module:
        if width == 1.0:
            return _timm(name, in_chans, num_classes, pretrained)
        return _plain_linears(builder(width, {"in_chans": in_chans, "num_classes": num_classes}))

    build.__doc__ = f"timm ``{name}``; width is timm's channel multiplier."
    return build


# --- the four architectures of the paper's first author -------------------------------

@architecture("alexnet", "torchvision", "classic conv", pretrained=STEM_REBUILT)
def alexnet(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
            input_size: int) -> nn.Module:
    """torchvision AlexNet; stem 11x11/4 becomes 5x5/2 for 32-px inputs, width scales all layers."""
    model = _tvm().alexnet(num_classes=num_classes)
    model.features[0] = nn.Conv2d(in_chans, 64, kernel_size=5, stride=2, padding=2)
    return _scale_sequential(model, in_chans, num_classes, width)


@architecture("vgg16", "torchvision", "classic conv (BN)", pretrained=STEM_REBUILT)
def vgg16(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
          input_size: int) -> nn.Module:
    """torchvision VGG16 with batch norm (CIFAR-style 1x1 head); width scales all layers."""
    return _scale_sequential(_tvm().vgg16_bn(num_classes=num_classes), in_chans, num_classes, width)


@architecture("resnet18", "timm", "ResNet", published="resnet18")
def resnet18(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
             input_size: int) -> nn.Module:
    """timm ResNet-18; width scales stage channels."""
    return _timm_resnet("resnet18", (64, 128, 256, 512), in_chans, num_classes, width, pretrained)


@architecture("mobilenetv2", "torchvision", "mobile inverted residual", pretrained=STEM_REBUILT)
def mobilenetv2(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
                input_size: int) -> nn.Module:
    """torchvision MobileNetV2 (``width_mult``), its own stride-2 stem: 1x1 final maps at 32 px.

    A stride-1 stem (the usual CIFAR tweak) made a training step 2.5-3x slower on the CPU
    for 2.4 points of Fashion-MNIST accuracy (86.9% against 84.5% at width 0.35).
    """
    model = _tvm().mobilenet_v2(num_classes=num_classes, width_mult=width)
    model.features[0][0] = _conv_like(model.features[0][0], in_chans)
    return model


# --- deeper and wider ResNets, dense connections -------------------------------------

@architecture("resnet34", "timm", "deeper ResNet", published="resnet34")
def resnet34(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
             input_size: int) -> nn.Module:
    """timm ResNet-34 (deeper BasicBlock ResNet); width scales stage channels."""
    return _timm_resnet("resnet34", (64, 128, 256, 512), in_chans, num_classes, width, pretrained)


@architecture("resnet50", "timm", "bottleneck ResNet", published="resnet50")
def resnet50(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
             input_size: int) -> nn.Module:
    """timm ResNet-50 (bottleneck blocks); width scales stage channels."""
    return _timm_resnet("resnet50", (64, 128, 256, 512), in_chans, num_classes, width, pretrained)


@architecture("wide_resnet50", "timm", "wide ResNet", published="wide_resnet50_2")
def wide_resnet50(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
                  input_size: int) -> nn.Module:
    """timm Wide-ResNet-50-2 (twice the bottleneck width); width scales stage channels."""
    return _timm_resnet("wide_resnet50_2", (64, 128, 256, 512), in_chans, num_classes, width,
                        pretrained)


@architecture("densenet121", "timm", "DenseNet", published="densenet121")
def densenet121(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
                input_size: int) -> nn.Module:
    """timm DenseNet-121; width scales the growth rate (32 at width 1)."""
    if width != 1.0:
        return _timm("densenet121", in_chans, num_classes, False,
                     growth_rate=max(4, round(32 * width)))
    return _timm("densenet121", in_chans, num_classes, pretrained)


# --- mobile convolutional nets --------------------------------------------------------

def _timm_generator(module: str, function: str, variant: str, knob: str = "channel_multiplier"
                    ) -> Callable[[float, dict], nn.Module]:
    """The generator behind a timm entry point (``timm.models.<module>.<function>``), which
    takes the width multiplier the entry point fixes."""

    def build(width: float, kwargs: dict) -> nn.Module:
        import importlib

        generator = getattr(importlib.import_module(f"timm.models.{module}"), function)
        return generator(variant, **{knob: width}, **kwargs)

    return build


def _regnetx(width: float, kwargs: dict) -> nn.Module:
    """RegNetX-200MF's design space with its initial width and slope scaled (widths stay
    multiples of 8, the group size)."""
    from timm.models.regnet import RegNet, model_cfgs

    cfg = model_cfgs["regnetx_002"]
    return RegNet(replace(cfg, w0=_ch(cfg.w0, width), wa=cfg.wa * width), **kwargs)


architecture("efficientnet_b0", "timm", "EfficientNet", published="efficientnet_b0")(
    _timm_multiplied("efficientnet_b0",
                     _timm_generator("efficientnet", "_gen_efficientnet", "efficientnet_b0")))
architecture("mobilenetv3_small", "timm", "MobileNetV3", published="mobilenetv3_small_100")(
    _timm_multiplied("mobilenetv3_small_100", _timm_generator(
        "mobilenetv3", "_gen_mobilenet_v3", "mobilenetv3_small_100")))
architecture("mnasnet", "timm", "MnasNet (NAS)", published="mnasnet_100")(
    _timm_multiplied("mnasnet_100",
                     _timm_generator("efficientnet", "_gen_mnasnet_b1", "mnasnet_100")))
architecture("regnetx_002", "timm", "RegNet", published="regnetx_002")(
    _timm_multiplied("regnetx_002", _regnetx))
architecture("ghostnet", "timm", "GhostNet", published="ghostnet_100")(
    _timm_multiplied("ghostnet_100",
                     _timm_generator("ghostnet", "_create_ghostnet", "ghostnet_100", "width")))


@architecture("shufflenetv2", "torchvision", "ShuffleNet", pretrained=STEM_REBUILT,
              int8="PyTorch's int8 conversion fails on its channel shuffle ('required rank 4 "
                   "tensor to use channels_last format'); the fake-quantized sibling is used")
def shufflenetv2(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
                 input_size: int) -> nn.Module:
    """torchvision ShuffleNetV2 x1.0; width scales the stage outputs."""
    stages = [24] + [_ch(c, width, 4) for c in (116, 232, 464)] + [_ch(1024, width)]
    model = _tvm().ShuffleNetV2([4, 8, 4], stages, num_classes=num_classes)
    model.conv1[0] = _conv_like(model.conv1[0], in_chans)
    return model


class _Tracked:
    """Channel bookkeeping for nets whose blocks take their input width as an argument:
    every scaled block reads its input width from the block built before it."""

    def __init__(self, width: float, first_in: int) -> None:
        self.width, self.prev = width, first_in

    def scale(self, channels: int) -> int:
        return _ch(channels, self.width)


@architecture("squeezenet", "torchvision", "SqueezeNet (fire modules)", pretrained=STEM_REBUILT)
def squeezenet(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
               input_size: int) -> nn.Module:
    """torchvision SqueezeNet 1.1 (fire modules); width scales every fire module, which is
    then initialised as torchvision initialises it."""
    from torchvision.models.squeezenet import Fire

    model = _tvm().squeezenet1_1(num_classes=num_classes)
    if width == 1.0:
        model.features[0] = _conv_like(model.features[0], in_chans)
        return model
    track = _Tracked(width, in_chans)
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            model.features[i] = nn.Conv2d(track.prev, track.scale(layer.out_channels),
                                          layer.kernel_size, layer.stride, layer.padding)
            track.prev = model.features[i].out_channels
        elif isinstance(layer, Fire):
            squeeze, e1, e3 = (track.scale(c.out_channels)
                               for c in (layer.squeeze, layer.expand1x1, layer.expand3x3))
            model.features[i] = Fire(track.prev, squeeze, e1, e3)
            track.prev = e1 + e3
    final = model.classifier[1] = nn.Conv2d(track.prev, num_classes, kernel_size=1)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m is final:
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight)
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.bias, 0)
    return model


@architecture("googlenet", "torchvision", "Inception", pretrained=STEM_REBUILT)
def googlenet(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
              input_size: int) -> nn.Module:
    """torchvision GoogLeNet (Inception v1), no auxiliary heads; width scales every branch."""
    from torchvision.models.googlenet import BasicConv2d, Inception, InceptionAux

    blocks = None
    if width != 1.0:
        track = _Tracked(width, in_chans)

        def conv(in_channels: int, out_channels: int, **kwargs) -> nn.Module:
            block = BasicConv2d(track.prev, track.scale(out_channels), **kwargs)
            track.prev = block.conv.out_channels
            return block

        def inception(in_channels: int, *branches: int, **kwargs) -> nn.Module:
            scaled = [track.scale(c) for c in branches]
            block = Inception(track.prev, *scaled, **kwargs)
            track.prev = scaled[0] + scaled[2] + scaled[4] + scaled[5]
            return block

        blocks = [conv, inception, InceptionAux]
    model = _tvm().GoogLeNet(num_classes=num_classes, aux_logits=False, init_weights=True,
                          blocks=blocks)
    model.transform_input = False
    model.conv1.conv = _conv_like(model.conv1.conv, in_chans)
    if width != 1.0:
        model.fc = nn.Linear(track.prev, num_classes)
        nn.init.trunc_normal_(model.fc.weight, mean=0.0, std=0.01, a=-2, b=2)  # as torchvision
    return model


# --- modern conv and attention/MLP nets ------------------------------------------------

@architecture("convnext_atto", "timm", "ConvNeXt", published="convnext_atto")
def convnext_atto(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
                  input_size: int) -> nn.Module:
    """timm ConvNeXt-Atto (4x4 patch stem); width scales stage dims."""
    if width == 1.0:
        return _timm("convnext_atto", in_chans, num_classes, pretrained)
    return _timm("convnext_atto", in_chans, num_classes, False,
                 dims=tuple(_ch(c, width) for c in (40, 80, 160, 320)))


@architecture("deit_tiny", "timm", "vision transformer", pretrained=PATCHES_REBUILT)
def deit_tiny(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
              input_size: int) -> nn.Module:
    """timm DeiT-Tiny ViT on an 8x8 patch grid (4x4 patches at 32 px); width scales the
    embedding."""
    heads = 3
    return _timm("deit_tiny_patch16_224", in_chans, num_classes, False, img_size=input_size,
                 patch_size=input_size // PATCH_GRID, embed_dim=_ch(192, width, 8 * heads),
                 num_heads=heads)


@architecture("mixer_s4", "timm", "MLP-Mixer", pretrained=PATCHES_REBUILT)
def mixer_s4(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
             input_size: int) -> nn.Module:
    """timm MLP-Mixer-S (8 blocks) on an 8x8 patch grid (4x4 patches at 32 px); width
    scales the embedding."""
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(num_classes=num_classes, img_size=input_size, in_chans=in_chans,
                    patch_size=input_size // PATCH_GRID, num_blocks=8, embed_dim=_ch(512, width))


# --- any other timm or torchvision classifier, named in the config ---------------------

# What a model named by config declares: no curated width knob, and no channel pruning
# (only the curated entries were checked with torch-pruning). Its int8 conversion is tried
# as every sibling's is, and a failure is flagged in the sibling's runtime. Every such
# model is built and run once on the meta device before any job (adapt_problem), so one
# that cannot adapt stops the plan.
NAMED_UNSUPPORTED = {
    "width": "a model named by config has no curated width knob",
    "channel_pruning": "not verified for a model named by config",
}


def _first_conv_takes(model: nn.Module, in_chans: int) -> nn.Module:
    """The first 3-channel convolution rebuilt for ``in_chans`` channels (torchvision
    factories take no ``in_chans``)."""
    if in_chans == 3:
        return model
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                setattr(parent, name, _conv_like(child, in_chans))
                return model
    raise ValueError("it has no 3-channel input convolution to take "
                     f"{in_chans}-channel images")


@ARCHITECTURES.register_family("timm/")
def named_timm(model: str) -> Architecture:
    """Any timm model: timm sets input channels and classes, and the input size where the
    model is built for a fixed one (ViT-style position embeddings)."""
    import difflib

    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=5)
        raise UnknownNameError(f"timm has no model '{model}'"
                               + (f"; close: {', '.join(close)}" if close else ""))
    cfg = get_pretrained_cfg(model)
    fixed = bool(cfg and cfg.fixed_input_size)

    def build(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
              input_size: int) -> nn.Module:
        return _timm(model, in_chans, num_classes, pretrained,
                     **({"img_size": input_size} if fixed else {}))

    return Architecture(build, "timm", f"timm {model} (named by config)",
                        NAMED_UNSUPPORTED, published=model, probe=True)


@ARCHITECTURES.register_family("torchvision/")
def named_torchvision(model: str) -> Architecture:
    """Any torchvision classification model, its first 3-channel convolution rebuilt for
    the dataset's channels."""
    import torchvision.models

    classifiers = torchvision.models.list_models(module=torchvision.models)
    if model not in classifiers:
        import difflib

        close = difflib.get_close_matches(model, classifiers, n=5)
        raise UnknownNameError(f"torchvision has no classification model '{model}'"
                               + (f"; close: {', '.join(close)}" if close else ""))

    def build(in_chans: int, num_classes: int, width: float, pretrained: bool | str,
              input_size: int) -> nn.Module:
        return _first_conv_takes(_tvm().get_model(model, num_classes=num_classes), in_chans)

    return Architecture(build, "torchvision", f"torchvision {model} (named by config)",
                        {**NAMED_UNSUPPORTED, "pretrained": "published weights are loaded "
                         "through timm only"}, probe=True)


def adapt_problem(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be built (None: it can): built on the meta device, costing no
    memory or time, a batch of two must come out as one score per class. Any exception
    counts: it is third-party code meeting a shape it was not written for."""
    try:
        with torch.device("meta"):
            out = create_model(spec)(torch.zeros(2, spec.in_chans, spec.input_size,
                                                 spec.input_size))
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    if not isinstance(out, torch.Tensor):
        return f"it returns a {type(out).__name__}, not one tensor of scores"
    if tuple(out.shape) != (2, spec.num_classes):
        return f"it gives outputs of shape {tuple(out.shape)}, not (2, {spec.num_classes})"
    return None
