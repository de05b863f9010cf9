"""The conventions Snakemake users expect of a published workflow: a clean `snakemake --lint`,
snakefmt-formatted rules, a workflow catalog file that names what exists, and the SLURM
profile used as a workflow profile. (Every config key is documented by generation:
tests/test_config.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent  # this venv's snakemake and snakefmt
CONFIG_README = ROOT / "config/README.md"
CATALOG = ROOT / ".snakemake-workflow-catalog.yml"


def run(*cmd: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


def test_snakemake_lint_finds_nothing_on_the_default_config():
    lint = run(str(BIN / "snakemake"), "--lint")
    out = lint.stdout + lint.stderr
    assert lint.returncode == 0, out
    assert "Lints for" not in out, out
    assert "Congratulations, your workflow is in a good condition!" in out, out


def test_the_snakefile_and_the_rules_are_snakefmt_formatted():
    snakefmt = BIN / "snakefmt"
    if not snakefmt.exists():
        pytest.skip("snakefmt is not installed: `make setup` installs the test extra")
    check = run(str(snakefmt), "--check", "workflow/Snakefile", "workflow/rules/")
    assert check.returncode == 0, (
        "run `snakefmt workflow/Snakefile workflow/rules/`:\n" + check.stdout + check.stderr)


def test_the_workflow_catalog_file_names_what_exists():
    catalog = yaml.safe_load(CATALOG.read_text())
    usage = catalog["usage"]
    stack = usage["software-stack-deployment"]
    assert set(stack) <= {"conda", "apptainer", "apptainer+conda", "report"}
    assert all(isinstance(v, bool) for v in stack.values())
    if stack.get("conda"):
        assert list((ROOT / "workflow/envs").glob("*.yaml"))
    flags = usage["mandatory-flags"]
    assert flags["desc"].strip()
    text = flags["desc"] + " " + " ".join(
        flags["flags"] if isinstance(flags["flags"], list) else [flags["flags"] or ""])
    named = re.findall(r"\b(?:config|workflow/profiles)/[\w./<>-]+", text)
    assert named, "the catalog file names no config or profile"
    for path in named:
        path = path.rstrip(".")
        if "<" not in path:
            assert (ROOT / path).exists(), f"{CATALOG.name} names {path}, which does not exist"
    for config in re.findall(r"config/(\w+)\.yaml", text):
        assert (ROOT / f"config/{config}.yaml").exists()
    assert (ROOT / "workflow/Snakefile").exists() and (ROOT / "config/README.md").exists()


def test_the_slurm_profile_is_used_as_a_workflow_profile():
    # Snakemake loads workflow/profiles/default by itself, next to workflow/Snakefile, and
    # lets it win over --profile: its `cores: 2` would cap a cluster run. So every command
    # this checkout writes for the SLURM profile passes it as --workflow-profile.
    for path in [*ROOT.glob("config/*.yaml"), *ROOT.glob("workflow/profiles/*/config.yaml"),
                 CONFIG_README, CATALOG]:
        text = path.read_text()
        assert not re.search(r"--profile\s+workflow/profiles/slurm", text), path
    plan = run(str(BIN / "snakemake"), "-n", "--workflow-profile", "workflow/profiles/slurm",
               "--configfile", "config/smoke.yaml")
    if "executor" in plan.stderr and "slurm" in plan.stderr and plan.returncode != 0:
        pytest.skip("the SLURM executor plugin is not installed (the `cluster` extra)")
    assert plan.returncode == 0, plan.stderr
    assert "workflow specific profile workflow/profiles/slurm" in plan.stderr
    assert "profiles/default" not in plan.stderr
