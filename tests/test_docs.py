"""The layout trees in the README and docs/layout.md name only what exists, and layout.md
names every module of the package: a moved or added file fails here, not in a reader's
hands. (Job counts, run times and keys are generated: tests/test_config.py.)"""

from __future__ import annotations

import re

from conftest import ROOT

PACKAGE = ROOT / "src/siblings"


def tree(path, heading: str | None = None) -> list[str]:
    """The lines of the first code block (after ``heading``, if given)."""
    text = (ROOT / path).read_text()
    if heading:
        text = text.split(heading, 1)[1]
    return text.split("```", 2)[1].splitlines()[1:]


def named_paths(lines: list[str]) -> set[str]:
    """Every path a tree names: an unindented line's first word (comma-separated), and the
    modules listed under ``src/siblings/`` (lines indented by two, relative to it)."""
    found = set()
    for line in lines:
        module = re.match(r"  (\w+\.py(?:, \w+\.py)*)\s", line + " ")  # not a continuation
        if module:
            found |= {f"src/siblings/{n}" for n in module.group(1).split(", ")}
        elif line.strip() and not line.startswith(" "):
            first = line.split()[0]
            found |= {p for p in first.split(",") if p}
    return found


def exists(path: str) -> bool:
    """A named path or pattern (``workflow/rules/*.smk``, ``<stage>``) has a match."""
    pattern = re.sub(r"<[^>]+>", "*", path).rstrip("/")
    return any(ROOT.glob(pattern))


def test_every_path_the_layout_trees_name_exists():
    for path, heading in (("README.md", "## Layout"), ("docs/layout.md", None)):
        missing = sorted(p for p in named_paths(tree(path, heading)) if not exists(p))
        assert not missing, f"{path} names paths that do not exist: {missing}"


def test_docs_layout_names_every_module_of_the_package():
    named = named_paths(tree("docs/layout.md"))
    modules = {f"src/siblings/{p.name}" for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    packages = {f"src/siblings/{p.name}/" for p in PACKAGE.iterdir()
                if (p / "__init__.py").exists()}
    missing = sorted(m for m in modules | packages if m not in named)
    assert not missing, f"docs/layout.md does not name {missing}"


def test_the_tree_check_would_catch_a_missing_path():
    assert named_paths(["  plan.py, nowhere.py   the plan", "tools/nope.py  x"]) == {
        "src/siblings/plan.py", "src/siblings/nowhere.py", "tools/nope.py"}
    assert not exists("src/siblings/nowhere.py") and exists("workflow/rules/<stage>.smk")
