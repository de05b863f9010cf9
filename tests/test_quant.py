import pytest
import torch
from torch.ao.quantization import FakeQuantize

from siblings.checkpoints import load_model
from siblings.compress import COMPRESSIONS
from siblings.quant import (QuantScheme, activation_quantizers, calibrate, correct_bias,
                            fake_quant_modules, fold, search_ranges, to_int8)

from conftest import save_model, tiny_spec


def quantized(trained, blobs, **scheme) -> torch.nn.Module:
    model = load_copy(trained)
    params = {"method": "ptq", "weight_bits": 8, "act_bits": 8, **scheme}
    COMPRESSIONS.get("ptq").prepare(model, params)
    calibrate(model, blobs[0][:100])
    return model


@pytest.mark.parametrize("bits", [8, 4])
def test_weights_take_at_most_2_to_the_bits_levels(trained, blobs, bits):
    model = quantized(trained, blobs, weight_bits=bits, act_bits=bits, edge_bits=bits)
    layer = next(m for m in model.modules() if hasattr(m, "weight_fake_quant"))
    q = layer.weight_fake_quant(layer.weight.detach())
    assert all(q[c].unique().numel() <= 2 ** bits for c in range(q.shape[0]))
    step = layer.weight_fake_quant.scale.view(-1, 1, 1, 1)
    assert ((q - layer.weight).abs() <= step / 2 + 1e-6).all()


def test_straight_through_gradient_reaches_inputs_and_weights(trained, blobs):
    model = quantized(trained, blobs, weight_bits=4, act_bits=4)
    x = blobs[0][:8].clone().requires_grad_(True)
    model(x).sum().backward()
    assert x.grad.abs().sum() > 0
    layer = next(m for m in model.modules() if hasattr(m, "weight_fake_quant"))
    assert layer.weight.grad.abs().sum() > 0


def test_weight_only_mode_leaves_activations_float(trained, blobs):
    model = quantized(trained, blobs, weight_bits=4, act_bits=32, edge_bits=4)
    assert fake_quant_modules(model)
    assert all(fq.quant_max == 7 for fq in fake_quant_modules(model))  # only 4-bit weights


def test_8bit_fake_quant_matches_pytorch_int8_runtime(trained, blobs):
    model = quantized(trained, blobs)
    int8 = torch.nn.Sequential(model.preprocess, to_int8(model.backbone))
    assert any(p.is_quantized for p in int8.state_dict().values()
               if isinstance(p, torch.Tensor))
    x = blobs[0]
    with torch.no_grad():
        agree = (model(x).argmax(1) == int8(x).argmax(1)).float().mean()
        full_agree = (model(x).argmax(1) == trained(x).argmax(1)).float().mean()
    assert agree >= 0.99
    assert full_agree >= 0.97


def test_per_layer_and_per_channel_are_different_schemes(trained, blobs):
    per_layer = quantized(trained, blobs, weight_bits=4, act_bits=8, per_channel=False)
    layer = next(m for m in per_layer.modules() if hasattr(m, "weight_fake_quant"))
    assert layer.weight_fake_quant.scale.numel() == 1
    assert QuantScheme.from_params({"weight_bits": 8, "act_bits": 8}).is_int8


@pytest.mark.parametrize("depthwise_bits", [None, 8])
def test_depthwise_and_edge_layers_get_their_own_bits(depthwise_bits):
    from siblings.models import create_model

    model = create_model(tiny_spec("mobilenetv2", 0.35)).eval()
    params = {"method": "ptq", "weight_bits": 4, "act_bits": 4, "depthwise_bits": depthwise_bits}
    method = COMPRESSIONS.get("ptq")
    method.prepare(model, params)
    layers = [m for m in model.modules() if hasattr(m, "weight_fake_quant")]
    levels = [m.weight_fake_quant.quant_max + 1 for m in layers]  # 2**(bits-1), signed
    depthwise = [getattr(m, "groups", 1) > 1 for m in layers]
    assert any(depthwise) and levels[0] == levels[-1] == 128  # edge_bits 8 by default
    inner = list(zip(levels, depthwise))[1:-1]
    assert {n for n, dw in inner if dw} == {128 if depthwise_bits else 8}
    assert {n for n, dw in inner if not dw} == {8}
    packed = method.deploy(model, params).size_bytes
    bits = sum(m.weight.numel() * (n.bit_length()) for m, n in zip(layers, levels))
    floats = sum(p.numel() for p in model.parameters()) - sum(m.weight.numel() for m in layers)
    assert packed == (bits + 32 * floats + 7) // 8


def test_residual_branch_outputs_get_residual_bits(trained):
    model = load_copy(trained)
    COMPRESSIONS.get("ptq").prepare(model, {"method": "ptq", "weight_bits": 6, "act_bits": 6,
                                            "residual_bits": 8})
    graph = model.backbone
    modules = dict(graph.named_modules())
    levels = {}  # conv name -> levels of the activation quantizer right after it
    for node in graph.graph.nodes:
        source = node.args[0] if node.args else None
        quantizer = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(quantizer, FakeQuantize) and getattr(source, "op", None) == "call_module":
            levels[source.target] = quantizer.quant_max - quantizer.quant_min + 1
    branch_ends = {n for n in levels if n.endswith(("conv2", "downsample.0"))}
    assert sum(n.endswith("conv2") for n in branch_ends) == 8  # one per block
    assert any(n.endswith("downsample.0") for n in branch_ends)  # the shortcut branches
    assert {levels[n] for n in branch_ends} == {256}
    assert {levels[n] for n in levels if n.endswith("conv1") and "layer" in n} == {64}
    layer = modules["layer1.0.conv2"]
    assert layer.weight_fake_quant.quant_max == 31  # weights stay at 6 bits


@pytest.mark.parametrize("observer", ["minmax", "histogram", "ema"])
def test_saved_sibling_reloads_identically(tmp_path, trained, blobs, observer):
    params = {"method": "ptq", "weight_bits": 4, "act_bits": 4, "observer": observer}
    model = quantized(trained, blobs, **params)
    path = tmp_path / "s.safetensors"
    save_model(path, model, kind="sibling", compression=params)
    again, _ = load_model(path)
    with torch.no_grad():
        assert torch.equal(again(blobs[0][:16]), model.eval()(blobs[0][:16]))


def _mean_preactivation_gaps(quantized_model, trained, x) -> list[float]:
    """Per layer, the largest per-channel gap between quantized and float mean outputs."""
    from siblings.quant import _channel_means, _preactivation

    folded, layers = fold(trained.backbone), dict(quantized_model.backbone.named_modules())
    gaps, seen = [], {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, _channel_means(m, o)))
             for n, m in folded.named_modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [layers[n].register_forward_hook(
        lambda m, i, o, n=n: gaps.append((_channel_means(m, _preactivation(m, i[0])) - seen[n])
                                         .abs().max().item()))
        for n, m in folded.named_modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        folded(trained.preprocess(x))
        quantized_model.backbone(trained.preprocess(x))
    for hook in hooks:
        hook.remove()
    return gaps


def test_bias_correction_removes_the_mean_shift_of_every_layer(trained, blobs):
    model = quantized(trained, blobs, weight_bits=3, act_bits=3, edge_bits=3)
    x = blobs[0][:200]
    before = _mean_preactivation_gaps(model, trained, x)
    correct_bias(model.backbone, fold(trained.backbone), trained.preprocess(x))
    after = _mean_preactivation_gaps(model, trained, x)
    assert max(before) > 0.01
    assert max(after) < 1e-4


def test_range_search_never_worsens_the_divergence_from_the_full_model(trained, blobs):
    from torch.nn import functional as F

    model = quantized(trained, blobs, weight_bits=3, act_bits=3, edge_bits=3)
    x = blobs[0][:200]
    with torch.no_grad():
        reference = trained.eval()(x)

        def kl() -> float:
            return F.kl_div(F.log_softmax(model(x), 1), F.log_softmax(reference, 1),
                            log_target=True, reduction="batchmean").item()

        before = kl()
        scales = [q.scale.clone() for q in activation_quantizers(model)]
        search_ranges(model, x, reference)
        assert kl() <= before + 1e-6
    assert any(not torch.equal(s, q.scale) for s, q in zip(scales, activation_quantizers(model)))


def test_range_search_refuses_a_histogram_observer(trained, blobs):
    model = quantized(trained, blobs, weight_bits=4, act_bits=4, observer="histogram")
    with pytest.raises(ValueError, match="range_search needs observer minmax or ema"):
        search_ranges(model, blobs[0][:50], trained.eval()(blobs[0][:50]).detach())


def load_copy(model):
    from siblings.models import create_model

    fresh = create_model(tiny_spec())
    fresh.load_state_dict(model.state_dict())
    return fresh.eval()
