"""End to end: config/smoke.yaml through Snakemake, then exact reruns and clean failures."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import project_copy, snakemake

EXPECTED_TYPES = {
    "dataset": "string", "arch": "string", "compression": "string", "defense": "string",
    "attack": "string", "source_role": "string", "eps": "double", "n_examples": "int64",
    "success_rate": "double", "target_clean_acc": "double", "source_clean_acc": "double",
    "config_hash": "string", "code_version": "string",
}


def planned_jobs(result) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table (empty when nothing to do)."""
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    work = project_copy(tmp_path_factory.mktemp("project"))
    result = snakemake(work, "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return work


def test_smoke_produces_typed_parquet_and_report(smoke_run):
    path = smoke_run / "results/smoke/benchmark.parquet"
    schema = pq.read_schema(path)
    assert {col: str(schema.field(col).type) for col in EXPECTED_TYPES} == EXPECTED_TYPES
    df = pd.read_parquet(path)
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    n_roles = {"sibling": len(cfg["compressions"]), "independent": 1, "whitebox": 1}
    per_arch = sum(n_roles.values()) * len(cfg["attacks"]["pgd"]["eps"])
    assert len(df) == len(cfg["archs"]) * per_arch
    assert set(df.source_role) == set(n_roles)
    assert (df.defense == "none").all()
    assert df.success_rate.between(0, 1).all()
    assert df.config_hash.nunique() == 1
    whitebox = df[df.source_role == "whitebox"].groupby("arch").success_rate.max()
    assert (whitebox > 0).all()
    models = pd.read_parquet(smoke_run / "results/smoke/models.parquet")
    assert len(models) == len(cfg["archs"]) * (2 + len(cfg["compressions"]))
    summary = (smoke_run / "reports/smoke/summary.md").read_text()
    assert "amplification" in summary.lower()
    assert (smoke_run / "reports/smoke/transfer_success.png").stat().st_size > 10_000


def test_nothing_changed_means_nothing_to_do(smoke_run):
    assert planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml")) == {}


def test_attack_parameter_change_reruns_only_attack_and_downstream(smoke_run):
    cfg = yaml.safe_load((smoke_run / "config/smoke.yaml").read_text())
    cfg["attacks"]["pgd"]["steps"] += 1
    (smoke_run / "config/edited.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/edited.yaml"))
    assert set(jobs) == {"attack", "aggregate", "report", "all"}
    assert jobs["attack"] == len(cfg["archs"]) * (len(cfg["compressions"]) + 2)


def test_attack_code_edit_reruns_only_attack_and_downstream(smoke_run):
    code = smoke_run / "src/siblings/attack.py"
    original = code.read_text()
    code.write_text(original + "\n# a change to the attack code\n")
    try:
        jobs = planned_jobs(snakemake(smoke_run, "-n", "--configfile", "config/smoke.yaml"))
    finally:
        code.write_text(original)
    assert set(jobs) == {"attack", "aggregate", "report", "all"}


BAD_CONFIGS = {
    "unknown arch": ({"archs": {"resnet9000": {}}}, "unknown architecture 'resnet9000'; allowed:"),
    "unknown compression": ({"compressions": {"zip": {"method": "zip"}}},
                            "unknown compression method 'zip'; allowed: prune, ptq"),
    "unknown dataset": ({"dataset": {"name": "mnist3d"}}, "unknown dataset 'mnist3d'; allowed:"),
    "negative eps": ({"attacks": {"pgd": {"method": "pgd", "eps": [-0.1]}}},
                     "attacks.pgd.eps.0"),
    "non-numeric eps": ({"attacks": {"pgd": {"method": "pgd", "eps": ["big"]}}},
                        "'big' is not of type 'number'"),
    "unknown key": ({"trainn": {"epochs": 1}}, "'trainn' was unexpected"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_fails_before_any_job(tmp_path, case):
    work = project_copy(tmp_path)
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    override, message = BAD_CONFIGS[case]
    cfg.update(override)
    (work / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(work, "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (work / "results").exists()


def test_missing_dataset_fails_cleanly_and_lists_places(tmp_path):
    work = project_copy(tmp_path)
    cfg = yaml.safe_load((work / "config/smoke.yaml").read_text())
    cfg["dataset"] = {"name": "cifar10", "root": str(tmp_path / "nowhere"), "download": False}
    (work / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(work, "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "dataset 'cifar10' not found" in out and str(tmp_path / "nowhere") in out
    outputs = [p for p in (work / "results").rglob("*") if p.is_file() and "logs" not in p.parts]
    assert outputs == []


def test_full_config_plans_all_nineteen_architectures(tmp_path):
    work = project_copy(tmp_path)
    jobs = planned_jobs(snakemake(work, "-n", "--configfile", "config/full.yaml"))
    cfg = yaml.safe_load((work / "config/full.yaml").read_text())
    assert len(cfg["archs"]) == 19
    assert jobs["train"] == 2 * 19
    assert jobs["compress"] == 19 * len(cfg["compressions"])
    assert jobs["attack"] == 19 * (len(cfg["compressions"]) + 2)
