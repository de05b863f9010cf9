"""Fake quantization with a straight-through estimator (STE).

Weights: symmetric, per output channel (or per layer), computed from the float weight on
every forward so gradients reach it. Activations: the input of every conv/linear layer,
asymmetric per layer, with a range calibrated on the calibration split (batch norm is not folded and adds/pools stay float: a
simulation of integer inference, not yet checked against an int8 runtime). Rounding and
clamping use PyTorch's own ``fake_quantize_*`` ops, whose backward is the STE (identity
inside the clamp range), so attacks differentiate through the quantized sibling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FLOAT_BITS = 32  # "a32": a layer input left in float (weight-only quantization)


def _signed_range(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def quantize_weight(w: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """Symmetric fake quantization of a weight tensor (STE)."""
    qmin, qmax = _signed_range(bits)
    dims = tuple(range(1, w.dim()))
    amax = w.detach().abs().amax(dim=dims) if per_channel else w.detach().abs().max()
    scale = (amax / ((qmax - qmin) / 2)).clamp_min(1e-12)
    if per_channel:
        zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, qmin, qmax)
    return torch.fake_quantize_per_tensor_affine(w, scale.item(), 0, qmin, qmax)


def activation_qparams(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[float, int]:
    """Asymmetric (unsigned) scale and zero point for the range [lo, hi], widened to hold 0."""
    qmax = 2 ** bits - 1
    lo, hi = min(lo.item(), 0.0), max(hi.item(), 0.0)
    scale = max((hi - lo) / qmax, 1e-8)
    zero = int(min(max(round(-lo / scale), 0), qmax))
    return scale, zero


class _Quantized:
    """Shared state of a quantized conv/linear: bit-widths and the calibrated input range."""

    weight_bits: int
    act_bits: int
    per_channel: bool
    calibrating: bool

    def _setup_quant(self, weight_bits: int, act_bits: int, per_channel: bool) -> None:
        self.weight_bits, self.act_bits, self.per_channel = weight_bits, act_bits, per_channel
        self.calibrating = False
        self.register_buffer("act_min", torch.tensor(float("inf")))
        self.register_buffer("act_max", torch.tensor(float("-inf")))

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits >= FLOAT_BITS:
            return x
        if self.calibrating:
            self.act_min.copy_(torch.minimum(self.act_min, x.detach().min()))
            self.act_max.copy_(torch.maximum(self.act_max, x.detach().max()))
            return x
        if not torch.isfinite(self.act_min):
            raise RuntimeError("quantized layer used before calibration")
        scale, zero = activation_qparams(self.act_min, self.act_max, self.act_bits)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 2 ** self.act_bits - 1)

    def quant_weight(self) -> torch.Tensor:
        return quantize_weight(self.weight, self.weight_bits, self.per_channel)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, w{self.weight_bits}a{self.act_bits}"


class QuantConv2d(_Quantized, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quant_input(x), self.quant_weight(), self.bias)


class QuantLinear(_Quantized, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quant_input(x), self.quant_weight(), self.bias)


def _twin(layer: nn.Module) -> nn.Module | None:
    """The fake-quantized class of ``layer``, built with its hyper-parameters, or None."""
    if type(layer) is nn.Conv2d:
        return QuantConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                           layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                           layer.padding_mode)
    if type(layer) is nn.Linear:
        return QuantLinear(layer.in_features, layer.out_features, layer.bias is not None)
    return None


def quantize_modules(model: nn.Module, weight_bits: int, act_bits: int,
                     per_channel: bool = True) -> int:
    """Swaps every plain Conv2d/Linear for its fake-quantized twin, sharing the parameters.

    Returns how many layers were swapped. The swap keeps state-dict keys (plus the two
    range buffers), so a saved sibling reloads by swapping again and loading.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            q = _twin(child)
            if q is None:
                continue
            q.weight, q.bias = child.weight, child.bias
            q._setup_quant(weight_bits, act_bits, per_channel)
            setattr(parent, name, q)
            swapped += 1
    return swapped


@torch.no_grad()
def calibrate(model: nn.Module, x: torch.Tensor, batch_size: int = 250) -> None:
    """Records each quantized layer's input range over the calibration images ``x``."""
    layers = [m for m in model.modules() if isinstance(m, _Quantized)]
    model.eval()
    for m in layers:
        m.calibrating = True
        m.act_min.fill_(float("inf"))
        m.act_max.fill_(float("-inf"))
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for m in layers:
            m.calibrating = False
