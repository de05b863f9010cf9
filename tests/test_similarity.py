import pandas as pd
import pytest
import torch

from siblings.gradients import ReversedGradient, input_gradient
from siblings.similarity import SIMILARITIES, compare, linear_cka, views
from siblings.stages.similarity import run
from siblings.sources import load_source

from conftest import save_model
from test_compress import compressed
from test_quant import load_copy

METRICS = ["grad_cosine", "agreement", "kl", "cka"]


def test_a_model_compared_with_itself_is_identical(trained, blobs):
    x, y = blobs
    a, b = views(trained, x, y), views(load_copy(trained), x, y)
    values = compare(a, b, METRICS)
    assert values["grad_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert min(values["grad_cosine_values"]) == pytest.approx(1.0, abs=1e-5)
    assert values["cka"] == pytest.approx(1.0, abs=1e-5)
    assert values["agreement"] == 1.0
    assert values["kl"] == pytest.approx(0.0, abs=1e-9)


def test_a_quantized_sibling_is_similar_but_not_identical(trained, blobs):
    x, y = blobs
    sibling, _ = compressed(trained, blobs, {"method": "ptq", "weight_bits": 4, "act_bits": 4})
    values = compare(views(trained, x, y), views(sibling, x, y), METRICS)
    assert 0.3 < values["grad_cosine"] < 1 - 1e-4
    assert 0.5 < values["cka"] < 1
    assert values["kl"] > 0


class Scaled(torch.nn.Module):
    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.factor * self.model(x)


def test_the_margin_gradient_survives_saturation(trained, blobs):
    """On one and the same confident model (logits x 50) the cross-entropy gradient all but
    vanishes while the margin's does not, and the margin's direction ignores the scale."""
    x, y = blobs
    confident = Scaled(trained, 50.0).eval()
    xr = x[:20].clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(confident(xr), y[:20], reduction="sum")
    (ce_grad,) = torch.autograd.grad(ce, xr)
    _, margin_grad = input_gradient(confident, x[:20], y[:20])
    assert margin_grad.norm(dim=1).min() > 1e3 * ce_grad.flatten(1).norm(dim=1).median()
    _, plain = input_gradient(trained, x[:20], y[:20])
    cosine = torch.nn.functional.cosine_similarity(margin_grad, plain)
    assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-5)


def test_the_averaged_view_averages_the_gradient_over_fixed_points_of_the_ball(trained, blobs):
    from siblings.gradients import AveragedGradient

    x, y = blobs
    view = AveragedGradient(trained, radius=0.03, samples=4, seed=0).eval()
    xr = x[:6].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.nll_loss(view(xr), y[:6], reduction="sum"), xr)
    offsets = view.offsets(x.shape[1:], x.device)
    assert offsets.abs().max() <= 0.03 and len(offsets) == 4
    expected = torch.zeros_like(grad)
    for offset in offsets:
        xo = x[:6].clone().requires_grad_(True)
        ce = torch.nn.functional.cross_entropy(trained((xo + offset).clamp(0, 1)), y[:6],
                                               reduction="sum")
        expected += torch.autograd.grad(ce, xo)[0] / 4
    assert torch.allclose(grad, expected, atol=1e-6, rtol=1e-4)
    # the same offsets for every image and batch: one image alone gets its batch's answer
    assert torch.allclose(view(x[:1]), view(x[:6])[:1], atol=1e-6)


def test_cka_ignores_rotation_and_scale_but_not_noise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    assert linear_cka(a, 3 * a @ rotation) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(a, torch.randn(200, 8, generator=g, dtype=torch.float64)) < 0.3


def test_reversed_gradient_keeps_outputs_and_negates_gradients(trained, blobs):
    x, y = blobs
    reversed_model = ReversedGradient(trained).eval()
    out, grad = input_gradient(reversed_model, x[:8], y[:8])
    ref_out, ref_grad = input_gradient(trained, x[:8], y[:8])
    assert torch.equal(out, ref_out)
    assert torch.allclose(grad, -ref_grad)


def test_stage_writes_one_row_per_source(tmp_path, trained, blobs, data_artifact):
    full = tmp_path / "full.safetensors"
    save_model(full, trained)
    sources = [{"role": "whitebox", "source_id": "seed0", "path": str(full)},
               {"role": "reversed", "source_id": "self+reversed", "path": str(full)}]
    out = tmp_path / "sim.parquet"
    run(data_artifact, str(full), sources, str(out), {"metrics": METRICS, "n_examples": 50,
                                                       "seed": 0}, "test")
    df = pd.read_parquet(out).set_index("source_role")
    assert df.loc["whitebox", "grad_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert df.loc["reversed", "grad_cosine"] == pytest.approx(-1.0, abs=1e-5)
    assert len(df.loc["whitebox", "grad_cosine_values"]) == 50
    assert isinstance(load_source("reversed", full)[0], ReversedGradient)


def test_every_registered_metric_is_named_in_the_schema_default():
    import yaml
    from conftest import ROOT, save_model
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    default = schema["properties"]["similarity"]["properties"]["metrics"]["default"]
    assert sorted(default) == sorted(SIMILARITIES.names())
