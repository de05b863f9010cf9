"""The conventions Snakemake users expect of a published workflow: a clean `snakemake --lint`,
snakefmt-formatted rules, every config key documented in config/README.md, a workflow
catalog file that names what exists, and the SLURM profile used as a workflow profile."""

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
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
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


def schema_keys(node: dict, definitions: dict, path: tuple[str, ...] = ()):
    """(path, key) of every key a config can hold, walking nested `properties`, maps
    (`additionalProperties`: one entry per id, shown as `*`) and `$ref`/`oneOf` branches."""
    if "$ref" in node:
        node = {**definitions[node["$ref"].rsplit("/", 1)[-1]], **node}
        del node["$ref"]
    for branch in node.get("oneOf", []):
        yield from schema_keys(branch, definitions, path)
    for key, child in node.get("properties", {}).items():
        yield path, key
        yield from schema_keys(child, definitions, (*path, key))
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_keys(node["additionalProperties"], definitions, (*path, "*"))


def key_sections() -> dict[str, str]:
    """The text of each top-level bullet (its nested bullets included) under '## Keys'."""
    text = CONFIG_README.read_text()
    keys = text.split("\n## Keys\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^- `([A-Za-z_]+)`:", keys, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def backticked_words(text: str) -> set[str]:
    """Every word inside a `code span`: `calib_size`, `{cpu: 100, cuda: 1000}`..."""
    return {w for span in re.findall(r"`([^`]+)`", text)
            for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def test_every_config_key_is_documented_in_config_readme():
    schema = yaml.safe_load(SCHEMA.read_text())
    sections = key_sections()
    top = list(schema["properties"])
    assert not (missing := [k for k in top if k not in sections]), (
        f"config/README.md '## Keys' has no bullet '- `key`:' for {missing}")
    assert not (stale := [k for k in sections if k not in top]), (
        f"config/README.md documents keys the schema does not have: {stale}")
    undocumented = [
        ".".join((*path, key))
        for path, key in schema_keys(schema, schema.get("definitions", {}))
        if path and key not in backticked_words(sections[path[0]])
    ]
    assert not undocumented, (
        "config/README.md does not name these keys in backticks within their top-level "
        f"key's bullet: {undocumented}")


def test_the_key_check_would_catch_a_missing_key():
    schema = {"properties": {"train": {"properties": {"epochs": {}, "warmup": {}}}}}
    documented = backticked_words(key_sections()["train"])
    keys = [key for _, key in schema_keys(schema, {}) if key != "train"]
    assert [k for k in keys if k not in documented] == ["warmup"]


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
