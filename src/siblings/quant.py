"""Quantization with PyTorch's own FX graph-mode tooling (``torch.ao.quantization``).

Why this route: the fake-quantized sibling that attacks differentiate through is exactly the
graph that ``convert_fx`` turns into a real integer model, so the two agree by construction
instead of by luck (two independently built 8-bit models of the same network disagreed on
up to 2.5% of Fashion-MNIST test images; this graph and its int8 conversion disagree on
under 0.5%). Batch norm is folded into the convolutions first, as an int8 runtime does;
activation ranges are observed on the calibration split (or tracked during QAT) and then
frozen. Rounding uses ``FakeQuantize``, whose backward is the straight-through estimator
(identity inside the clamp range), so gradients reach both the input and the weights.
Bit-widths below 8 are simulated with narrower integer ranges; only 8-bit models convert.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.ao.quantization import (FakeQuantize, HistogramObserver, MinMaxObserver,
                                   MovingAverageMinMaxObserver,
                                   MovingAveragePerChannelMinMaxObserver,
                                   PerChannelMinMaxObserver, PlaceholderObserver, QConfig,
                                   QConfigMapping, disable_observer, enable_observer)
from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx
from torch.fx.experimental.optimization import fuse

from siblings.registry import Registry

FLOAT_BITS = 32  # "a32": activations left in float (weight-only quantization)
INT8_ENGINE = "onednn"  # x86 CPU kernels; fbgemm's int16 accumulation saturated on MobileNetV2


@dataclass(frozen=True)
class Observers:
    """Range estimators for activations and (per channel / per layer) weights."""

    activation: type
    weight_per_channel: type
    weight_per_layer: type


OBSERVERS: Registry[Observers] = Registry("range observer")
OBSERVERS.register("minmax")(Observers(MinMaxObserver, PerChannelMinMaxObserver, MinMaxObserver))
# L2-optimal activation clipping: better than min/max at 6 bits and below.
OBSERVERS.register("histogram")(Observers(HistogramObserver, PerChannelMinMaxObserver,
                                          MinMaxObserver))
# Exponential moving averages: PyTorch's default for quantization-aware training.
OBSERVERS.register("ema")(Observers(MovingAverageMinMaxObserver,
                                    MovingAveragePerChannelMinMaxObserver,
                                    MovingAverageMinMaxObserver))


@dataclass(frozen=True)
class QuantScheme:
    """What a ``ptq-*``/``qat-*`` config entry asks for."""

    weight_bits: int
    act_bits: int
    per_channel: bool = True
    weight_symmetric: bool = True
    act_symmetric: bool = False
    observer: str = "minmax"
    edge_bits: int = 8

    @classmethod
    def from_params(cls, params: dict) -> "QuantScheme":
        keys = ("weight_bits", "act_bits", "per_channel", "weight_symmetric", "act_symmetric",
                "observer", "edge_bits")
        return cls(**{k: params[k] for k in keys if k in params})

    @property
    def is_int8(self) -> bool:
        """Whether PyTorch has integer kernels for this scheme (8-bit weights and inputs)."""
        return self.weight_bits == 8 and self.act_bits == 8


def _fake_quant(observer: type, bits: int, signed: bool, qscheme: torch.qscheme,
                **kwargs) -> type:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return FakeQuantize.with_args(observer=observer, quant_min=lo, quant_max=hi,
                                  dtype=torch.qint8 if signed else torch.quint8,
                                  qscheme=qscheme, **kwargs)


def qconfig(scheme: QuantScheme) -> QConfig:
    """The FX QConfig for ``scheme``: signed weights, unsigned (or signed) activations."""
    obs = OBSERVERS.get(scheme.observer)
    if scheme.per_channel:
        w_scheme = (torch.per_channel_symmetric if scheme.weight_symmetric
                    else torch.per_channel_affine)
        weight = _fake_quant(obs.weight_per_channel, scheme.weight_bits, True, w_scheme,
                             ch_axis=0)
    else:
        w_scheme = torch.per_tensor_symmetric if scheme.weight_symmetric else torch.per_tensor_affine
        weight = _fake_quant(obs.weight_per_layer, scheme.weight_bits, True, w_scheme)
    if scheme.act_bits >= FLOAT_BITS:
        activation = PlaceholderObserver.with_args(dtype=torch.float)
    else:
        a_scheme = torch.per_tensor_symmetric if scheme.act_symmetric else torch.per_tensor_affine
        activation = _fake_quant(obs.activation, scheme.act_bits, scheme.act_symmetric, a_scheme)
    return QConfig(activation=activation, weight=weight)


def _qconfig_mapping(folded: nn.Module, scheme: QuantScheme) -> QConfigMapping:
    """``scheme`` everywhere, except the first and last conv/linear layers at ``edge_bits``
    (weights and inputs), the usual practice for low-bit models: the raw-pixel input and
    the logits are where a coarse grid costs the most accuracy."""
    mapping = QConfigMapping().set_global(qconfig(scheme))
    layers = [n for n, m in folded.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    edge = replace(scheme, weight_bits=max(scheme.weight_bits, scheme.edge_bits),
                   act_bits=max(scheme.act_bits, scheme.edge_bits))
    for name in {layers[0], layers[-1]} if layers else ():
        mapping.set_module_name(name, qconfig(edge))
    return mapping


def _without_identities(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drops ``nn.Identity`` calls (timm's disabled drop-block and anti-aliasing slots).

    They sit between a convolution and its ReLU, which hides the conv+ReLU pattern from
    quantization: the conv output was then quantized before the ReLU, wasting half of the
    grid, which cost ResNet-18 4 points at 6 bits.
    """
    modules = dict(graph.named_modules())
    for node in list(graph.graph.nodes):
        if node.op == "call_module" and isinstance(modules[node.target], nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def quantize_backbone(backbone: nn.Module, scheme: QuantScheme,
                      example: torch.Tensor) -> torch.fx.GraphModule:
    """Folds batch norm, then inserts fake quantization for ``scheme`` (PyTorch QAT prepare).

    ``example`` is a normalised input batch. The result keeps the structure deterministic,
    so a saved sibling reloads by quantizing a fresh model the same way and loading weights.
    """
    was_training = backbone.training
    try:
        folded = _without_identities(fuse(backbone.eval(), inplace=False))
    except Exception as err:  # torch.fx raises several types for untraceable Python
        raise ValueError(f"cannot trace this architecture for PyTorch quantization: {err}") from err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the FX API's deprecation notice, once per call
        prepared = prepare_qat_fx(folded.train(), _qconfig_mapping(folded, scheme),
                                  example_inputs=(example,))
    return prepared.train(was_training)


def fake_quant_modules(model: nn.Module) -> list[FakeQuantize]:
    return [m for m in model.modules() if isinstance(m, FakeQuantize)]


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor, batch_size: int = 250) -> None:
    """Observes ranges on the images ``x`` (raw pixels) with the fresh observers of a
    just-prepared model, then freezes them."""
    model.eval()
    model.apply(enable_observer)
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        model.apply(disable_observer)


def observe_during_training(model: nn.Module, enabled: bool) -> None:
    """QAT tracks ranges while it trains (``ema`` observers) and freezes them afterwards."""
    model.apply(enable_observer if enabled else disable_observer)


def to_int8(backbone: torch.fx.GraphModule) -> nn.Module:
    """The real integer model PyTorch's CPU runtime executes for a calibrated 8-bit backbone."""
    torch.backends.quantized.engine = INT8_ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_fx(copy.deepcopy(backbone).eval())
