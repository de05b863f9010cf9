"""Code fingerprints per component, on a copied source tree (the end-to-end plans are in
test_workflow.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from siblings.fingerprint import SRC, component_origins, fingerprints, Fingerprints
from siblings.models import ARCHITECTURES
from siblings.registry import Origin, Registry

JOBS = {
    "compress ptq": ("compress", {"architecture": "resnet18", "compression": "ptq"}),
    "compress prune": ("compress", {"architecture": "resnet18", "compression": "prune"}),
    "attack prgf": ("attack", {"architecture": "resnet18", "attack": "prgf", "compression": "ptq"}),
    "attack rgf": ("attack", {"architecture": "resnet18", "attack": "rgf"}),
    "attack square": ("attack", {"architecture": "resnet18", "attack": "square"}),
    "attack pgd": ("attack", {"architecture": "resnet18", "attack": "pgd", "compression": "ptq"}),
    "train alexnet": ("train", {"architecture": "alexnet"}),
    "train resnet18": ("train", {"architecture": "resnet18"}),
    "report": ("report", {}),
    "aggregate": ("aggregate", {}),
}


@pytest.fixture
def tree(tmp_path) -> Path:
    src = tmp_path / "siblings"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def hashes(src: Path, extra: list[Origin] = ()) -> dict[str, str]:
    table = Fingerprints([*component_origins(), *extra], src)
    return {job: table.code_hash(stage, **uses) for job, (stage, uses) in JOBS.items()}


def edit_line(path: Path, old: str, new: str) -> None:
    """Replaces text within one line, so the registries' recorded lines stay true."""
    text = path.read_text()
    assert text.count(old) == 1 and "\n" not in old + new
    path.write_text(text.replace(old, new))


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {job for job in before if before[job] != after[job]}


def test_each_registry_records_the_statement_that_registered_an_entry():
    assert ARCHITECTURES.origin("alexnet").module == "models"  # a decorator through a helper
    assert ARCHITECTURES.origin("efficientnet_b0").module == "models"  # an expression
    assert ARCHITECTURES.origin("timm/resnet10t") == ARCHITECTURES.origin("timm/resnet18")
    table = fingerprints()
    statements = {table.statement(ARCHITECTURES.origin(a)) for a in ARCHITECTURES.names()}
    assert len(statements) == len(ARCHITECTURES.names())  # one statement per entry
    outside: Registry[int] = Registry("widget")
    outside.register("a")(1)
    assert outside.origin("a") is None  # registered outside the package: not fingerprinted


def test_comment_and_docstring_edits_change_no_fingerprint(tree):
    before = hashes(tree)
    text = (tree / "attacks/query.py").read_text()
    (tree / "attacks/query.py").write_text(text.replace(
        "Prior-guided random gradient-free attack", "Prior-guided RGF attack, edited", 1
    ).replace("\n\n@ATTACKS.register(\"rgf\")", "  # a comment\n\n@ATTACKS.register(\"rgf\")", 1))
    with open(tree / "models.py", "a") as f:
        f.write("# a trailing comment\n")
    assert hashes(tree) == before


def test_editing_one_attack_changes_only_its_jobs(tree):
    before = hashes(tree)
    edit_line(tree / "attacks/query.py", "p_init: float = knob(0.05,", "p_init: float = knob(0.06,")
    assert changed(before, hashes(tree)) == {"attack square"}
    # RGF is P-RGF without a prior (a subclass): a P-RGF edit is an RGF edit too
    edit_line(tree / "attacks/query.py", "norm_probes: int = knob(10,", "norm_probes: int = knob(11,")
    assert changed(before, hashes(tree)) == {"attack square", "attack prgf", "attack rgf"}


def test_adding_a_compression_method_changes_no_existing_job(tree):
    before = hashes(tree)
    with open(tree / "compress.py", "a") as f:
        f.write('\n\nCOMPRESSIONS.register("identity")(Compression(\n'
                '    _no_structure_change, lambda model, job: {}, _float_deploy, "none"))\n')
    lines = (tree / "compress.py").read_text().count("\n")
    new_entry = Origin("compress", lines - 1)
    assert changed(before, hashes(tree, [new_entry])) == set()
    # were it not known as a component, it would count for every job using the registry
    assert changed(before, hashes(tree)) >= {"compress ptq", "compress prune", "attack prgf"}


def test_a_shared_helper_counts_where_it_is_used(tree):
    before = hashes(tree)
    edit_line(tree / "compress.py", "def sparsity(model: nn.Module) -> float:",
              "def sparsity(model: nn.Module, unused: int = 0) -> float:")
    assert changed(before, hashes(tree)) == {"compress prune"}


def test_editing_the_report_changes_only_the_report(tree):
    before = hashes(tree)
    text = (tree / "report.py").read_text()
    (tree / "report.py").write_text(text.replace("dpi=150,", "dpi=151,"))
    assert changed(before, hashes(tree)) == {"report"}


def test_an_architecture_edit_reaches_only_its_own_jobs(tree):
    before = hashes(tree)
    edit_line(tree / "models.py", 'model.features[0] = nn.Conv2d(in_chans, 64, kernel_size=5, '
              'stride=2, padding=2)', 'model.features[0] = nn.Conv2d(in_chans, 64, kernel_size=5, '
              'stride=2, padding=3)')
    assert changed(before, hashes(tree)) == {"train alexnet"}


def test_the_report_reaches_no_model_code():
    table = fingerprints()
    modules = {m for m, _ in table.statements(["stages.report"])}
    assert not modules & {"compress", "quant", "train", "models", "attacks.base"}
    assert "report" in modules


def write_package(root: Path, files: dict[str, str]) -> Path:
    src = root / "siblings"
    for name, text in {"__init__.py": "", "stages/__init__.py": "", **files}.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    return src


@pytest.mark.parametrize("edit", [("register(\"x\")", "register(\"y\")"),
                                  ("range(3)", "range(4)")])
def test_registrations_through_a_re_export_and_side_effects_of_imported_modules_count(
        tmp_path, edit):
    src = write_package(tmp_path, {
        "base.py": "def registry():\n    return {}\n\n\nNORMS = registry()\n",
        "hub.py": "from siblings.base import NORMS\n",
        # registers through the re-export; its other line runs when the module loads
        "plugin.py": ("from siblings.hub import NORMS\n\nNORMS.register(\"x\")(abs)\n"
                      "print([i for i in range(3)])\n"),
        "stages/job.py": ("from siblings import plugin  # noqa: F401 (loads it)\n"
                          "from siblings.base import NORMS\n\n\ndef run():\n"
                          "    return NORMS\n"),
    })
    before = Fingerprints([], src).digest(["stages.job"])
    text = (src / "plugin.py").read_text()
    (src / "plugin.py").write_text(text.replace(*edit))
    assert Fingerprints([], src).digest(["stages.job"]) != before
