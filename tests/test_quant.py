import torch

from siblings.artifacts import save_tensors
from siblings.compress import COMPRESSIONS, load_model
from siblings.quant import QuantConv2d, calibrate, quantize_modules, quantize_weight

from conftest import tiny_spec


def test_weight_quantization_levels_and_error():
    w = torch.randn(8, 4, 3, 3)
    for bits in (8, 4):
        q = quantize_weight(w, bits, per_channel=True)
        assert q[0].unique().numel() <= 2 ** bits
        step = w.abs().amax(dim=(1, 2, 3), keepdim=True) / (2 ** bits - 1) * 2
        assert ((q - w).abs() <= step / 2 + 1e-6).all()


def test_straight_through_gradient_reaches_inputs_and_weights(trained, blobs):
    model = load_copy(trained)
    quantize_modules(model.backbone, 4, 4)
    calibrate(model, blobs[0][:64])
    x = blobs[0][:8].clone().requires_grad_(True)
    model(x).sum().backward()
    assert x.grad.abs().sum() > 0
    conv = next(m for m in model.modules() if isinstance(m, QuantConv2d))
    assert conv.weight.grad.abs().sum() > 0


def test_8bit_sibling_agrees_with_full_model(trained, blobs):
    model = load_copy(trained)
    COMPRESSIONS.get("ptq").prepare(model, {"weight_bits": 8, "act_bits": 8})
    calibrate(model, blobs[0][:100])
    x = blobs[0]
    with torch.no_grad():
        agree = (model(x).argmax(1) == trained(x).argmax(1)).float().mean()
    assert agree >= 0.97


def test_saved_sibling_reloads_identically(tmp_path, trained, blobs):
    model = load_copy(trained)
    params = {"method": "ptq", "weight_bits": 4, "act_bits": 4}
    COMPRESSIONS.get("ptq").prepare(model, params)
    calibrate(model, blobs[0][:100])
    path = tmp_path / "s.safetensors"
    save_tensors(path, model.state_dict(), {"spec": model.spec.to_dict(), "compression": params})
    again, _ = load_model(path)
    with torch.no_grad():
        assert torch.equal(again(blobs[0][:16]), model.eval()(blobs[0][:16]))


def load_copy(model):
    from siblings.models import create_model

    fresh = create_model(tiny_spec())
    fresh.load_state_dict(model.state_dict())
    return fresh.eval()
