import copy
import re

import pytest
import torch
import yaml

from siblings.artifacts import sidecar_path
from siblings.cards import read_card
from siblings.compress import sparsity
from siblings.config import ConfigError, entry
from siblings.defend import (FORMS, POINTS, DefenseJob, mean_cosine, selected_lam, unpair,
                             variant_name, variant_settings)
from siblings.stages.defend import run
from siblings.gradients import input_gradient, margin
from siblings.quant import fake_quant_modules

from conftest import ROOT, save_model

from test_compress import blob_splits, compressed

DEFENSE = {"method": "unpair", "lam": 5.0, "form": "abs", "smoothness": 0.0, "epochs": 3,
           "lr": 0.003, "batch_size": 50, "penalty_batch": 25, "tolerance": 2.0, "siblings": ["x"],
           "points": "clean", "radius": 0.05, "points_steps": 3, "sign_sharpness": 5.0}


def defended(trained, blobs, sibling_params: dict, **overrides) -> tuple[torch.nn.Module, dict, float]:
    sibling, _ = compressed(trained, blobs, sibling_params)
    x, y = blobs
    before = mean_cosine(trained, sibling, x, y)
    measured = unpair(sibling, DefenseJob(blob_splits(blobs), {**DEFENSE, **overrides}, 0, trained))
    return sibling, measured, before


PTQ = entry("compressions", {"method": "ptq", "weight_bits": 8, "act_bits": 8})


def test_the_penalty_reaches_quantized_weights_through_double_backprop(trained, blobs):
    sibling, _ = compressed(trained, blobs, PTQ)
    assert fake_quant_modules(sibling)
    x, y = blobs
    _, g_full = input_gradient(trained, x[:20], y[:20])
    _, g_sib = input_gradient(sibling, x[:20], y[:20], create_graph=True)
    torch.nn.functional.cosine_similarity(g_sib, g_full).mean().backward()
    grads = [p.grad for p in sibling.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_unpairing_lowers_the_gradient_cosine_and_keeps_the_sibling(trained, blobs):
    """On this toy task plain fine-tuning also scrambles the gradients (its pixels outside
    the squares are noise), so the comparison with the lam = 0 control is the benchmark's
    (see the next test)."""
    x, y = blobs
    sibling, measured, before = defended(trained, blobs, PTQ, lr=0.001)
    assert before > 0.9
    assert mean_cosine(trained, sibling, x, y) < before - 0.5
    assert measured["history"][-1]["cosine"] < measured["history"][0]["cosine"] - 0.5
    with torch.no_grad():
        assert (sibling(x).argmax(1) == y).float().mean() > 0.9  # still a useful sibling
    assert fake_quant_modules(sibling)  # still in its compressed form


@pytest.mark.xfail(strict=True, reason=(
    "measured: on the toy task the lam = 0 control ends with a lower gradient cosine than "
    "the defended sibling (-0.07 vs 0.29 here; 0.57 vs 0.95 at lr 3e-4): the penalty's "
    "effect is read off the default run's control, not this task"))
def test_unpairing_beats_its_lam_zero_control_on_the_toy_task(trained, blobs):
    x, y = blobs
    sibling, _, _ = defended(trained, blobs, PTQ, lr=0.001)
    control, _, _ = defended(trained, blobs, PTQ, lr=0.001, lam=0.0)
    assert mean_cosine(trained, sibling, x, y) < mean_cosine(trained, control, x, y) - 0.3


def test_pruning_masks_survive_the_defense(trained, blobs):
    params = {"method": "prune", "sparsity": 0.8, "finetune_epochs": 1, "batch_size": 50}
    sibling, measured, _ = defended(trained, blobs, params)
    assert measured["masked_weights"] > 0
    assert sparsity(sibling.backbone) == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("tolerance, failed", [(100.0, False), (0.0, True)])
def test_the_stage_flags_a_sibling_that_lost_too_much_accuracy(tmp_path, trained, blobs,
                                                               data_artifact, tolerance, failed):
    sibling, _ = compressed(trained, blobs, PTQ)
    full, sib = tmp_path / "full.safetensors", tmp_path / "sib.safetensors"
    save_model(full, trained)
    # The sidecar claims a perfect sibling, so any accuracy below 100% is a cost.
    save_model(sib, sibling, kind="sibling", spec=trained.spec, compression=PTQ,
               compression_id="ptq-w8a8", family="quantization", n_correct=50, n_test=50)
    out = tmp_path / "def.safetensors"
    run(data_artifact, str(full), str(sib), str(out), "unpair-l5",
        {**DEFENSE, "epochs": 1, "lam": 50.0, "lr": 0.05, "tolerance": tolerance}, 0, "t")
    card = read_card(sidecar_path(out))
    assert card.kind == "defended" and card.accuracy_cost > 0 and card.failed is failed
    assert card.measured["similarity_after"] < card.measured["similarity_before"]
    assert card.defense_id == "unpair-l5" and card.compression_id == "ptq-w8a8"
    assert card.measured["calibration_images"] > 0 and card.measured["calibration_cost"] > 0
    assert card.product["runtime"].startswith("int8")  # deployable as before


@pytest.mark.parametrize("key, registry", [("form", FORMS), ("points", POINTS)])
def test_a_config_offers_exactly_the_registered_forms_and_points(key, registry):
    defense = {"method": "unpair", "lam": 1.0, "siblings": ["ptq-w8a8"]}
    for name in registry.names():
        assert entry("defenses", {**defense, key: name})[key] == name
    with pytest.raises(ConfigError, match=rf"defenses\.entry\.{key}': 'nope' is not one of "
                                          rf"{re.escape(str(registry.names()))}"):
        entry("defenses", {**defense, key: "nope"})


@pytest.mark.parametrize("where", ["clean", "ball", "pgd"])
def test_penalty_points_stay_in_the_ball_and_the_image_range(trained, blobs, where):
    model = copy.deepcopy(trained).eval()  # train mode would move the shared fixture's BN
    x, y = blobs[0][:8], blobs[1][:8]
    gen = torch.Generator().manual_seed(0)
    at = POINTS.get(where)(model, x, y, DEFENSE, gen)
    assert at.shape == x.shape and not at.requires_grad
    assert (at - x).abs().max() <= DEFENSE["radius"] + 1e-6
    assert at.min() >= 0 and at.max() <= 1
    if where == "clean":
        assert torch.equal(at, x)
        return
    assert (at - x).abs().max() > DEFENSE["radius"] / 2  # moved, not stuck at x
    if where == "pgd":  # the sibling's own attack: its margin falls
        with torch.no_grad():
            assert (margin(model(at), y, False) < margin(model(x), y, False)).all()


def test_the_sign_form_scores_sign_agreement_weighted_by_the_full_gradient():
    g = torch.Generator().manual_seed(0)
    g_full = torch.randn(4, 1000, generator=g)
    sign = FORMS.get("sign")
    p = {"sign_sharpness": 5.0}
    same, reversed_, unrelated = (sign(s, g_full, p) for s in
                                  (g_full, -g_full, torch.randn(4, 1000, generator=g)))
    assert (same > 0.9).all() and (reversed_ > 0.9).all()  # |.|: a flip undoes nothing
    assert (unrelated < 0.1).all()  # chance agreement: no first-order effect
    # Flipping the flatter half of the coordinates brings the plain count of agreeing
    # signs to chance (0.5), yet the steeper half still moves the full model: the
    # weighted form still sees it.
    flat = g_full.abs() < g_full.abs().median(dim=1, keepdim=True).values
    flipped = torch.where(flat, -g_full, g_full)
    assert ((flipped.sign() == g_full.sign()).float().mean() - 0.5).abs() < 0.01
    assert (sign(flipped, g_full, p) > 0.5).all()
    assert torch.allclose(FORMS.get("abs")(-g_full, g_full, p), torch.ones(4))


def test_the_sign_form_is_differentiable():
    g = torch.Generator().manual_seed(1)
    g_sib = torch.randn(2, 50, generator=g).requires_grad_(True)
    g_full = torch.randn(2, 50, generator=g)
    FORMS.get("sign")(g_sib, g_full, {"sign_sharpness": 5.0}).sum().backward()
    assert g_sib.grad is not None and g_sib.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def pruned(trained, blobs) -> torch.nn.Module:
    params = {"method": "prune", "sparsity": 0.8, "finetune_epochs": 0.2, "batch_size": 50}
    return compressed(trained, blobs, params)[0]


@pytest.mark.parametrize("where, form", [("ball", "abs"), ("pgd", "sign")])
def test_each_variant_fine_tunes_and_keeps_pruned_weights_zero(trained, blobs, pruned, where,
                                                               form):
    """Three steps (the first and last logged), the gradient terms on 8 images."""
    sibling = copy.deepcopy(pruned)
    measured = unpair(sibling, DefenseJob(blob_splits(blobs), {
        **DEFENSE, "points": where, "form": form, "epochs": 0.5, "penalty_batch": 8}, 0, trained))
    assert measured["steps"] == 3 and measured["masked_weights"] > 0
    assert sparsity(sibling.backbone) == pytest.approx(0.8, abs=0.01)
    last = measured["history"][-1]
    assert {"cosine", "penalty", "sign_agreement"} <= set(last)
    assert all(torch.isfinite(torch.tensor(v)) for v in last.values())


@pytest.mark.parametrize("lost, chosen", [
    ({0.0: 1, 0.3: 2, 1.0: 9, 3.0: 25}, 1.0),   # the largest within tolerance (of 1,000 images)
    ({1.0: 15, 3.0: 5}, 3.0),                   # not monotone: still the largest within
    ({0.0: 0, 1.0: 11}, None),                  # none within; the control never counts
    ({0.3: 10, 1.0: 11}, 0.3),                  # exactly the tolerance is within it
])
def test_lam_is_the_largest_within_tolerance_on_the_calibration_split(lost, chosen):
    assert selected_lam({lam: (k, 1000) for lam, k in lost.items()}, tolerance=1.0) == chosen


def test_a_tolerance_is_compared_on_the_counts_not_on_float_percentages():
    """535 and 515 of 1,000 right: float32 percentages (53.500003 - 51.499999 = 2.000004)
    exceeded a tolerance of 2.0 points and failed a control that lost exactly 2.0."""
    assert selected_lam({1.0: (535 - 515, 1000)}, tolerance=2.0) == 1.0
    assert selected_lam({1.0: (535 - 514, 1000)}, tolerance=2.0) is None


def test_a_variant_is_named_by_its_key_or_its_form_and_points():
    assert variant_name({"form": "sign", "points": "ball"}) == "sign/ball"
    assert variant_name({"form": "sign", "points": "ball", "variant": "gentle"}) == "gentle"
    assert variant_settings({"lam": 3, "archs": ["a"], "form": "abs"}) == {"form": "abs"}
