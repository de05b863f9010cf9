"""The README's worked examples run exactly as printed, each in a fresh namespace, and do
what the README says they do; each registers under a name it then gives back."""

from __future__ import annotations

import pytest
import torch
import yaml

from siblings.attacks import ATTACKS, Budget
from siblings.cards import ModelSpec
from siblings.compress import COMPRESSIONS
from siblings.config import ConfigError, entry
from siblings.models import ARCHITECTURES, create_model
from siblings.plan import Plan

from conftest import readme_example
from test_config import smoke


def run_example(name: str, registry, registered: str) -> dict:
    """The README's ``name`` example executed alone, as the module a user would save."""
    namespace = {"__name__": f"readme_{name}"}
    exec(compile(readme_example(name, "python"), f"README.md:{name}", "exec",
                 dont_inherit=True), namespace)
    assert registered in registry
    return namespace


@pytest.fixture
def registered():
    """Names the examples register, given back after each test."""
    added = []
    yield added
    for registry, name in added:
        registry._items.pop(name)


def test_the_architecture_example_plans_without_what_it_declares_unsupported(registered):
    run_example("architecture", ARCHITECTURES, "tiny_cnn")
    registered.append((ARCHITECTURES, "tiny_cnn"))
    model = create_model(ModelSpec("tiny_cnn", 1, 10, 32, (0.5,), (0.5,), width=0.5)).eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    cfg = smoke()
    cfg["archs"] = {"tiny_cnn": {"width": 0.5}}
    plan = Plan(cfg)
    assert plan.compressions_of("tiny_cnn") == ["kd-narrow", "prune-u80", "ptq-w8a8"]
    (verdict,) = plan.support.left_out()
    assert (verdict.component, verdict.reason) == (
        "prune-s50", "tiny_cnn has no channel_pruning (torch-pruning removes channels "
        "(structured pruning)): not verified with torch-pruning")


def test_the_compression_example_compresses_and_deploys_at_half_the_size(registered, trained,
                                                                        blobs):
    from siblings.compress import Job

    from test_compress import blob_splits
    from test_quant import load_copy

    run_example("compression", COMPRESSIONS, "fp16")
    registered.append((COMPRESSIONS, "fp16"))
    params = entry("compressions", yaml.safe_load(readme_example("compression-config",
                                                                 "yaml"))["fp16"])
    method, model = COMPRESSIONS.get("fp16"), load_copy(trained)
    method.prepare(model, params)
    assert method.fit(model, Job(blob_splits(blobs), params, 0, trained)) == {"dtype": "float16"}
    assert all(torch.equal(p, p.half().float()) for p in model.parameters())
    full = sum(p.numel() * 4 for p in trained.parameters())
    assert method.deploy(model, params).size_bytes < 0.6 * full


def test_the_attack_example_runs_and_declares_its_knob(registered, trained, blobs):
    from siblings.attacks.batch import attack_set

    run_example("attack", ATTACKS, "pgd-margin")
    registered.append((ATTACKS, "pgd-margin"))
    x, y = attack_set(trained, blobs[0], blobs[1], 40, seed=0)
    params = entry("attacks", {"method": "pgd-margin", "eps": [0.2], "steps": 10, "kappa": 5})
    result = ATTACKS.get("pgd-margin")(steps=10, kappa=5)(trained, trained, x, y, Budget(0.2))
    assert params["kappa"] == 5 and result.success.float().mean() > 0.5
    assert (result.x_adv - x).abs().max() <= 0.2 + 1e-6
    with pytest.raises(ConfigError, match=r"takes no knob 'kapa' \(did you mean 'kappa'\?\)"):
        entry("attacks", {"method": "pgd-margin", "eps": [0.2], "kapa": 5})
