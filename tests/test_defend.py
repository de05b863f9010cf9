import pytest
import torch

from siblings.artifacts import sidecar_path
from siblings.cards import read_card
from siblings.compress import sparsity
from siblings.defend import DefenseJob, mean_cosine, unpair
from siblings.stages.defend import run
from siblings.gradients import input_gradient
from siblings.quant import fake_quant_modules

from conftest import save_model

from test_compress import blob_splits, compressed

DEFENSE = {"method": "unpair", "lam": 5.0, "form": "abs", "smoothness": 0.0, "epochs": 3,
           "lr": 0.003, "batch_size": 50, "penalty_batch": 25, "tolerance": 2.0, "siblings": ["x"]}


def defended(trained, blobs, sibling_params: dict, **overrides) -> tuple[torch.nn.Module, dict, float]:
    sibling, _ = compressed(trained, blobs, sibling_params)
    x, y = blobs
    before = mean_cosine(trained, sibling, x, y)
    measured = unpair(sibling, DefenseJob(blob_splits(blobs), {**DEFENSE, **overrides}, 0, trained))
    return sibling, measured, before


PTQ = {"method": "ptq", "weight_bits": 8, "act_bits": 8}


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
               compression_id="ptq-w8a8", family="quantization", test_accuracy=100.0)
    out = tmp_path / "def.safetensors"
    run(data_artifact, str(full), str(sib), str(out), "unpair-l5",
        {**DEFENSE, "epochs": 1, "lam": 50.0, "lr": 0.05, "tolerance": tolerance}, 0, "t")
    card = read_card(sidecar_path(out))
    assert card.kind == "defended" and card.accuracy_cost > 0 and card.failed is failed
    assert card.measured["similarity_after"] < card.measured["similarity_before"]
    assert card.defense_id == "unpair-l5" and card.compression_id == "ptq-w8a8"
    assert card.product["runtime"].startswith("int8")  # deployable as before
