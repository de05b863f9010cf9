"""The plan of a config, as Python: which jobs, which sources per role, which pairs are
supported, where each artifact lives. tests/test_workflow.py checks that Snakemake runs
exactly this plan."""

from collections import Counter

import pytest

from siblings.plan import Plan

from test_config import broken, smoke

SMOKE = "results/smoke/fashion-mnist"


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan(smoke())


def test_the_smoke_plan_has_these_jobs(plan):
    assert Counter(job.rule for job in plan.jobs()) == {
        "data": 1, "train": 2, "compress": 4, "defend": 2, "extract": 2, "similarity": 1,
        "attack": 11, "aggregate": 1, "report": 1, "all": 1}


def test_each_role_attacks_from_its_own_sources(plan):
    sources = {(attack, role): plan.role_sources("resnet18", attack, role)
               for attack in plan.attacks for role in plan.attack_roles(attack)}
    assert sources == {
        ("pgd", "sibling"): ["ptq-w8a8"],  # pgd's siblings: [ptq-w8a8]
        ("pgd", "independent"): ["seed1"], ("pgd", "whitebox"): ["seed0"],
        ("pgd", "defended"): ["ptq-w8a8+unpair-l0", "ptq-w8a8+unpair-l5"],  # the control too
        # an adaptive attacker: the defended sibling (never a control), then as its
        # reference the sibling as published
        ("pgd", "reversed"): ["ptq-w8a8+unpair-l5", "ptq-w8a8"],
        ("pgd", "extracted"): ["ptq-w8a8+unpair-l5", "ptq-w8a8"],
        ("pgd", "averaged"): ["ptq-w8a8+unpair-l5", "ptq-w8a8"],
        ("prgf", "sibling"): ["ptq-w8a8"], ("prgf", "independent"): ["seed1"],
        ("prgf", "defended"): ["ptq-w8a8+unpair-l0", "ptq-w8a8+unpair-l5"],
        ("rgf", "none"): ["none"],  # no source: once per target
    }


def test_each_source_loads_its_own_file(plan):
    models = f"{SMOKE}/models/resnet18"
    assert plan.attack_sources("resnet18", "pgd", "extracted") == [
        {"source_id": "ptq-w8a8+unpair-l5", "path": f"{models}/extracted/ptq-w8a8+unpair-l5"
         ".safetensors", "job_hash": plan.attack_sources("resnet18", "pgd", "extracted")[0][
             "job_hash"]},
        {"source_id": "ptq-w8a8", "path": f"{models}/extracted/ptq-w8a8.safetensors",
         "job_hash": plan.attack_sources("resnet18", "pgd", "extracted")[1]["job_hash"]}]
    assert plan.source_path("averaged", "resnet18", "ptq-w8a8") == (
        f"{models}/sibling/ptq-w8a8.safetensors")
    assert plan.source_path("reversed", "resnet18", "ptq-w8a8+unpair-l5") == (
        f"{models}/defended/ptq-w8a8+unpair-l5.safetensors")
    assert plan.source_path("independent", "resnet18", "seed1") == f"{models}/full/seed1.safetensors"
    assert plan.source_models("resnet18", "rgf", "none") == []


def test_a_source_job_hash_changes_with_its_attack_only(plan):
    edited = Plan(broken(lambda c: c["attacks"]["prgf"].update(samples=30)))
    hashes = {p: [s["job_hash"] for s in p.attack_sources("resnet18", "pgd", "sibling")
                  + p.attack_sources("resnet18", "prgf", "sibling")] for p in (plan, edited)}
    assert hashes[plan][0] == hashes[edited][0] and hashes[plan][1] != hashes[edited][1]


def test_similarity_compares_every_source_some_attack_uses(plan):
    pairs = {(s["role"], s["source_id"]) for s in plan.similarity_sources("resnet18")}
    assert pairs == {("sibling", "ptq-w8a8"), ("independent", "seed1"), ("whitebox", "seed0"),
                     ("defended", "ptq-w8a8+unpair-l0"), ("defended", "ptq-w8a8+unpair-l5"),
                     *((r, s) for r in ("reversed", "extracted", "averaged")
                       for s in ("ptq-w8a8+unpair-l5", "ptq-w8a8"))}


def test_reversal_is_planned_only_against_the_cosine_penalty():
    plan = Plan(broken(lambda c: c["defenses"]["unpair-l5"].update(form="abs")))
    assert plan.role_sources("resnet18", "pgd", "reversed") == []
    assert not any(table.endswith("/reversed.parquet") for table in plan.attack_tables)
    assert plan.role_sources("resnet18", "pgd", "averaged") == ["ptq-w8a8+unpair-l5", "ptq-w8a8"]


def test_extraction_follows_extract_siblings_and_defense_archs():
    def edit(c):
        c["archs"]["alexnet"] = {"width": 0.25}
        c["compressions"]["ptq-w4a4"] = {"method": "ptq", "weight_bits": 4, "act_bits": 4}
        c["defenses"]["unpair-l0"]["siblings"] = ["ptq-w8a8", "ptq-w4a4"]
        c["defenses"]["unpair-l5"].update(siblings=["ptq-w8a8", "ptq-w4a4"], archs=["resnet18"])
        c["extract"]["siblings"] = ["ptq-w4a4"]
        c["attacks"]["pgd"]["siblings"] = ["ptq-w8a8", "ptq-w4a4"]

    plan = Plan(broken(edit))
    assert plan.role_sources("resnet18", "pgd", "extracted") == ["ptq-w4a4+unpair-l5",
                                                                  "ptq-w4a4"]
    assert plan.role_sources("alexnet", "pgd", "extracted") == []  # unpair-l5: resnet18 only
    assert plan.role_sources("alexnet", "pgd", "defended") == ["ptq-w8a8+unpair-l0",
                                                                "ptq-w4a4+unpair-l0"]
    assert plan.extracted_sources("resnet18") == ["ptq-w4a4", "ptq-w4a4+unpair-l5"]


def test_a_pair_the_architecture_cannot_take_is_left_out():
    plan = Plan(broken(lambda c: c["archs"].update({"timm/resnet10t": {}})))
    assert plan.compressions_of("timm/resnet10t") == ["prune-u80", "ptq-w8a8"]  # sorted ids
    left_out = {(v.arch, v.component) for v in plan.support.left_out()}
    assert left_out == {("timm/resnet10t", "prune-s50"), ("timm/resnet10t", "kd-narrow")}
    compressed = {job.output for job in plan.jobs() if job.rule == "compress"}
    assert f"{SMOKE}/models/timm/resnet10t/sibling/ptq-w8a8.json" in compressed
    assert not any("resnet10t/sibling/prune-s50" in p for p in compressed)


def test_the_cross_arch_source_is_the_other_architectures_full_model():
    def edit(c):
        c["archs"]["alexnet"] = {"width": 0.25}
        c["cross_arch"] = {"resnet18": "alexnet", "alexnet": "resnet18"}
        c["attacks"]["pgd"]["roles"] = ["cross-arch"]

    plan = Plan(broken(edit))
    assert plan.attack_sources("resnet18", "pgd", "cross-arch")[0]["path"] == (
        f"{SMOKE}/models/alexnet/full/seed0.safetensors")
    assert plan.model_uses("resnet18", "cross-arch", "alexnet") == {"architecture": {"alexnet"}}


def test_a_job_fingerprints_the_components_its_models_run(plan):
    assert plan.model_uses("resnet18", "extracted", "ptq-w8a8+unpair-l5") == {
        "architecture": {"resnet18"}, "compression": {"ptq"}, "defense": {"unpair"}}
    assert plan.model_uses("resnet18", "sibling", "kd-narrow") == {
        "architecture": {"resnet18"}, "compression": {"kd"}}
    assert plan.attack_code("resnet18", "pgd", "sibling") != plan.attack_code(
        "resnet18", "pgd", "defended")  # the defended sources also run the defense


def test_the_wildcards_match_this_runs_names_only(plan):
    import re

    rules = plan.wildcard_constraints()
    assert re.fullmatch(rules["source"], "ptq-w8a8+unpair-l5")
    assert re.fullmatch(rules["source"], "ptq-w8a8")
    assert not re.fullmatch(rules["source"], "ptq-w8a8+unpair-l9")
    assert not re.fullmatch(rules["arch"], "resnet1")


def test_training_takes_the_architectures_overrides():
    plan = Plan(broken(lambda c: c["archs"]["resnet18"].update(epochs=5, lr=0.01)))
    assert plan.train_params("resnet18") == {"epochs": 5, "batch_size": 64, "lr": 0.01,
                                             "weight_decay": 0.0005}
    assert plan.start_of("resnet18", 0) is None and plan.start_files("resnet18", 1) == []
