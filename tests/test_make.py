"""The Makefile as a user reaches it (help, ARGS, clean) and the dependency pins."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT


def make(*args: str, cwd=ROOT) -> str:
    return subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def git(*args: str, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_help_lists_every_target_with_a_description():
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)$", (ROOT / "Makefile").read_text(),
                      re.MULTILINE | re.DOTALL)[1]
    targets = phony.replace("\\", " ").split()
    assert {"setup", "bench", "test", "clean", "wheelhouse", "help"} <= set(targets)
    described = {line.split()[0] for line in make("help").splitlines()
                 if line.startswith("  ") and len(line.split()) > 1}
    assert set(targets) <= described, f"no help line for {set(targets) - described}"
    assert "ARGS" in described


def test_bench_and_smoke_pass_args_to_snakemake():
    for target in ("bench", "smoke"):
        # -n: print the recipes, run nothing
        shown = make("-n", target, "ARGS=--cores 16 --dry-run")
        run = [line for line in shown.splitlines() if "siblings run" in line]
        assert run and run[0].rstrip().endswith("--cores 16 --dry-run"), shown


def test_clean_in_a_fresh_clone_deletes_no_tracked_file(tmp_path):
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(ROOT), str(clone), cwd=tmp_path)
    shutil.copy(ROOT / "Makefile", clone / "Makefile")  # this checkout's, committed or not
    tracked_reports = git("ls-files", "reports", cwd=clone).split()
    assert any("/" in path[len("reports/"):] for path in tracked_reports)  # a run's folder
    for made in ("results/smoke/benchmark.parquet", "reports/mine/figure.png",
                 ".snakemake/log/run.log"):
        (clone / made).parent.mkdir(parents=True, exist_ok=True)
        (clone / made).write_text("output")

    make("clean", cwd=clone)

    status = git("status", "--porcelain", "--ignored", cwd=clone).splitlines()
    assert status == [" M Makefile"] or status == [], status
    assert not any((clone / gone).exists() for gone in ("results", ".snakemake", "reports/mine"))
    assert all((clone / path).is_file() for path in tracked_reports)


def test_clean_outside_git_leaves_reports_alone(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "reports/default").mkdir(parents=True)
    (tmp_path / "reports/default/figure.png").write_text("published")
    (tmp_path / "results").mkdir()

    out = make("clean", cwd=tmp_path)

    assert "reports/ left alone" in out
    assert (tmp_path / "reports/default/figure.png").exists()
    assert not (tmp_path / "results").exists()


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in
            project["dependencies"] + project["optional-dependencies"]["cluster"]]


def test_runtime_dependencies_are_lower_bounds():
    for req in runtime_requirements():
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators and not operators & {"==", "==="}, req


def test_constraints_pin_every_runtime_dependency_at_a_version_it_allows():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    assert "siblings" not in pins
    for req in runtime_requirements():
        version = pins.get(canonicalize_name(req.name))
        assert version, f"constraints.txt has no line for {req.name}"
        assert req.specifier.contains(version), f"{req} does not allow the tested {version}"
