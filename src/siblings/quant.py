"""Quantization with PyTorch's own FX graph-mode tooling (``torch.ao.quantization``).

Why this route: the fake-quantized sibling that attacks differentiate through is exactly the
graph that ``convert_fx`` turns into a real integer model, so the two share every scale
and zero point (two independently built 8-bit models of the same network disagreed on up
to 2.5% of Fashion-MNIST test images; this graph and its int8 conversion disagree on at most
0.22% of them in the default run). They are not identical, since the int8 kernels round
in their own way, so the compress stage measures the agreement. Batch norm is folded into
the convolutions first, as an int8 runtime does; activation ranges are observed on the
calibration split (or tracked during QAT) and then frozen. Rounding uses ``FakeQuantize``,
whose backward is the straight-through estimator (identity inside the clamp range), so
gradients reach both the input and the weights. Bit-widths below 8 are simulated with
narrower integer ranges; only 8-bit models convert.
"""

from __future__ import annotations

import copy
import operator
import warnings
from functools import partial
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F
from torch.ao.quantization import (FakeQuantize, HistogramObserver, MinMaxObserver,
                                   MovingAverageMinMaxObserver,
                                   MovingAveragePerChannelMinMaxObserver,
                                   PerChannelMinMaxObserver, PlaceholderObserver, QConfig,
                                   QConfigMapping, disable_observer, enable_observer)
from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx
from torch.fx.experimental.optimization import fuse
from tqdm import tqdm

from siblings.knobs import BOOLEAN, declared, knob, one_of, required_knob
from siblings.registry import Registry

BITS = (2, 3, 4, 5, 6, 7, 8)  # the integer widths a fake quantizer is built for

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

    weight_bits: int = required_knob("weight bit-width", one_of(*BITS))
    act_bits: int = required_knob("activation bit-width; 32 = weight-only", one_of(*BITS, 32))
    per_channel: bool = knob(True, "one weight scale per output channel (false: per layer)",
                             BOOLEAN)
    weight_symmetric: bool = knob(True, "symmetric weight range", BOOLEAN)
    act_symmetric: bool = knob(False, "symmetric activation range (false: asymmetric)",
                               BOOLEAN)
    observer: str = knob("minmax", "activation range estimator: histogram clips L2-optimally "
                                   "(better below 8 bits), ema tracks ranges during QAT",
                         one_of("minmax", "histogram", "ema"))
    edge_bits: int = knob(8, "at least this many bits for the first and last layer",
                          one_of(*BITS))
    depthwise_bits: int | None = knob(None, "at least this many bits for depthwise (grouped) "
                                            "convolutions (null: as the rest)",
                                      one_of(*BITS, None))
    residual_bits: int | None = knob(None, "at least this many bits for the outputs of "
                                           "residual branches, the signed tensors a skip "
                                           "connection adds (null: as the rest)",
                                     one_of(*BITS, None))

    @classmethod
    def from_params(cls, params: dict) -> "QuantScheme":
        return cls(**{k: params[k] for k in declared(cls) if k in params})

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


def _at_least(scheme: QuantScheme, weight_bits: int, act_bits: int) -> QConfig:
    return qconfig(replace(scheme, weight_bits=max(scheme.weight_bits, weight_bits),
                           act_bits=max(scheme.act_bits, act_bits)))


ADDS = (operator.add, operator.iadd, torch.add)


def _residual_branches(folded: torch.fx.GraphModule) -> set[str]:
    """Conv/linear layers whose output a residual addition consumes (ResNet's second conv
    and downsample, MobileNetV2's linear bottleneck): signed tensors, no ReLU between.
    A branch that ends in another module (timm's EfficientNet family: a BatchNormAct) is
    not one of them."""
    modules = dict(folded.named_modules())
    return {arg.target for node in folded.graph.nodes
            if node.op == "call_function" and node.target in ADDS
            for arg in node.args if isinstance(arg, torch.fx.Node) and arg.op == "call_module"
            and isinstance(modules[arg.target], (nn.Conv2d, nn.Linear))}


def _qconfig_mapping(folded: torch.fx.GraphModule, scheme: QuantScheme) -> QConfigMapping:
    """``scheme`` everywhere, except three kinds of layer that may get more bits, the usual
    practice for low-bit models (mixed precision where a coarse grid costs the most).

    - The first and last conv/linear layers get ``edge_bits`` (weights and activations):
      the raw-pixel input and the logits.
    - Depthwise (grouped) convolutions get ``depthwise_bits`` if set: with a handful of
      weights per output channel, 4-bit rounding hurts them most (MobileNetV2's 4-bit QAT
      sibling lost 9.9 points with them at 4 bits).
    - The outputs (not weights) of residual branches get ``residual_bits`` if set: signed
      tensors spend one of their few bits on the sign, and every later block adds to them
      (ResNet-18 at 6 bits lost 2.3 points with them at 6 bits and 1.5 with them at 8).
      PyTorch's observer placement gives the other tensor such an addition sums the same
      bits: in ResNet-18, 16 of the 28 activation tensors between the edges end at 8 bits.
    """
    mapping = QConfigMapping().set_global(qconfig(scheme))
    layers = [(n, m) for n, m in folded.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if scheme.residual_bits is not None:
        for name in _residual_branches(folded):
            mapping.set_module_name(name, _at_least(scheme, scheme.weight_bits,
                                                    scheme.residual_bits))
    if scheme.depthwise_bits is not None:
        for name, layer in layers:
            if isinstance(layer, nn.Conv2d) and layer.groups > 1:
                mapping.set_module_name(name, _at_least(scheme, scheme.depthwise_bits,
                                                        scheme.depthwise_bits))
    for name in {layers[0][0], layers[-1][0]} if layers else ():
        mapping.set_module_name(name, _at_least(scheme, scheme.edge_bits, scheme.edge_bits))
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


def fold(backbone: nn.Module) -> torch.fx.GraphModule:
    """The float graph the quantized one mirrors module for module: batch norm folded into
    the convolutions, identities dropped. ``backbone`` is left untouched."""
    training = backbone.training
    try:
        return _without_identities(fuse(backbone.eval(), inplace=False))
    except Exception as err:  # torch.fx raises several types for untraceable Python
        raise ValueError(f"cannot trace this architecture for PyTorch quantization: {err}") from err
    finally:
        backbone.train(training)


def quantize_backbone(backbone: nn.Module, scheme: QuantScheme,
                      example: torch.Tensor) -> torch.fx.GraphModule:
    """Folds batch norm, then inserts fake quantization for ``scheme`` (PyTorch QAT prepare).

    ``example`` is a normalised input batch. The result keeps the structure deterministic,
    so a saved sibling reloads by quantizing a fresh model the same way and loading weights.
    """
    was_training = backbone.training
    folded = fold(backbone)
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


def _preactivation(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A (fused) quantized conv/linear layer's output before its fused ReLU, if any."""
    weight = layer.weight_fake_quant(layer.weight)
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, weight, layer.bias)
    return F.linear(x, weight, layer.bias)


def _channel_means(layer: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """Mean output per channel of ``layer``: a convolution's channels are dim 1, a linear
    layer's the last dim (on token sequences, (batch, tokens, channels), that is not 1)."""
    dim = 1 if isinstance(layer, nn.Conv2d) else -1
    return t.movedim(dim, 0).reshape(t.shape[dim], -1).mean(1)


@torch.no_grad()
def correct_bias(quantized: torch.fx.GraphModule, folded: torch.fx.GraphModule,
                 x: torch.Tensor) -> None:
    """Empirical bias correction (Nagel et al., ICCV 2019), for post-training quantization.

    Rounding is unbiased but clipping is not: every clipped activation range and weight grid
    shifts the mean of the next layer's output. Each conv/linear bias moves by the difference
    between the quantized and the float layer's mean pre-activation per channel on ``x``
    (one batch of normalised calibration images). The correction runs as a pre-hook during
    one forward pass, so each layer sees inputs its predecessors have already corrected.
    At 6 bits this recovered 2.6 of the 5 points ResNet-18 lost.
    """
    layers = {name: layer for name, layer in folded.named_modules()
              if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.bias is not None}
    float_means: dict[str, torch.Tensor] = {}

    def record(name: str, layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        float_means[name] = _channel_means(layer, output)

    def correct(name: str, layer: nn.Module, inputs: tuple) -> None:
        layer.bias -= _channel_means(layer, _preactivation(layer, inputs[0])) - float_means[name]

    quantized_layers = dict(quantized.named_modules())
    hooks = [layer.register_forward_hook(partial(record, name)) for name, layer in layers.items()]
    hooks += [quantized_layers[name].register_forward_pre_hook(partial(correct, name))
              for name in layers]
    try:
        folded(x)
        quantized(x)
    finally:
        for hook in hooks:
            hook.remove()


RANGE_FACTORS = (1.6, 1.3, 1.15, 1.0, 0.85, 0.7)


def _set_range(quantizer: FakeQuantize, low: torch.Tensor, high: torch.Tensor) -> None:
    observer = quantizer.activation_post_process
    observer.min_val.copy_(low)
    observer.max_val.copy_(high)
    scale, zero_point = observer.calculate_qparams()
    quantizer.scale.copy_(scale)
    quantizer.zero_point.copy_(zero_point)


@torch.no_grad()
def search_ranges(model: nn.Module, x: torch.Tensor, reference_logits: torch.Tensor,
                  factors: tuple[float, ...] = RANGE_FACTORS) -> None:
    """Loss-aware activation ranges, in the spirit of Nahshan et al.'s LAPQ (2019).

    Range estimators minimise each tensor's own error, which is not what the task needs:
    at 6 bits PyTorch's L2-optimal histogram ranges still cost ResNet-18 5 points, mostly
    in its signed residual-branch tensors. Greedily in graph order, each signed activation
    range (as calibrated) is scaled by the factor in ``factors`` that minimises the KL
    divergence from the full model's outputs ``reference_logits`` on the raw images ``x``.
    Post-ReLU ranges stay as calibrated: searching them too cost twice the time for no
    gain. Needs min/max observers (``minmax`` or ``ema``), whose ranges are what
    ``convert_fx`` reads back.
    """
    target = F.log_softmax(reference_logits, 1)

    def divergence() -> float:
        out = F.log_softmax(torch.cat([model(x[i:i + 250]) for i in range(0, len(x), 250)]), 1)
        return F.kl_div(out, target, log_target=True, reduction="batchmean").item()

    model.eval()
    quantizers = activation_quantizers(model)
    for quantizer in quantizers:
        if not isinstance(quantizer.activation_post_process, MinMaxObserver):
            raise ValueError(f"range_search needs observer minmax or ema, not "
                             f"{type(quantizer.activation_post_process).__name__}")
    signed = [q for q in quantizers if q.activation_post_process.min_val < 0]  # not post-ReLU
    for quantizer in tqdm(signed, desc=f"range search ({len(signed)} signed activations, "
                                       f"{len(factors)} ranges each)", mininterval=30):
        observer = quantizer.activation_post_process
        low, high = observer.min_val.clone(), observer.max_val.clone()
        scores = {}
        for factor in factors:
            _set_range(quantizer, low * factor, high * factor)
            scores[factor] = divergence()
        best = min(scores, key=scores.get)
        _set_range(quantizer, low * best, high * best)


def activation_quantizers(model: nn.Module) -> list[FakeQuantize]:
    """The fake quantizers of activations (not weights), in graph order."""
    return [m for n, m in model.named_modules()
            if isinstance(m, FakeQuantize) and not n.endswith("weight_fake_quant")]


def observe_during_training(model: nn.Module, enabled: bool) -> None:
    """QAT tracks ranges while it trains (``ema`` observers) and freezes them afterwards."""
    model.apply(enable_observer if enabled else disable_observer)


def to_int8(backbone: torch.fx.GraphModule) -> nn.Module:
    """The real integer model PyTorch's CPU runtime executes for a calibrated 8-bit backbone."""
    torch.backends.quantized.engine = INT8_ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_fx(copy.deepcopy(backbone).eval())
