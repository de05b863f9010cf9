"""Code and config fingerprints that make every artifact traceable and every rerun exact.

Snakemake reruns a job when its params change but never looks inside an imported
package, so each rule's params carry ``code_hash(stage)``: a hash of the stage's module
(``siblings/stages/<stage>.py``) and of every ``siblings`` module it imports,
transitively. Editing attack code thus reruns attacks, not training.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE = "siblings"
SRC = Path(__file__).resolve().parent
TRACKED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "snakemake")


def _imports(path: Path) -> frozenset[str]:
    """Dotted names (relative to the package) of the ``siblings`` modules, subpackages
    included, that the file at ``path`` imports; a name imported from a module may be a
    submodule, so it is listed too and dropped later if no such file exists."""
    return _parsed_imports(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)  # every rule's hash walks the same modules at plan time
def _parsed_imports(path: Path, mtime_ns: int) -> frozenset[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == PACKAGE:
                module = ".".join(parts[1:])
                found.add(module or "__init__")
                found.update(f"{module}.{a.name}" if module else a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names
                         if a.name.startswith(PACKAGE + "."))
    return frozenset(found)


def _module_file(name: str, src: Path) -> Path | None:
    base = src.joinpath(*name.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def stage_modules(stage: str, src: Path = SRC) -> list[Path]:
    """The stage's module (``stages/<stage>.py``) and every package module it reaches
    through imports."""
    seen: set[Path] = set()
    todo = [f"stages.{stage}"]
    while todo:
        path = _module_file(todo.pop(), src)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path))
    return sorted(seen)


def code_hash(stage: str, src: Path = SRC) -> str:
    """12-hex fingerprint of the source files that run in ``stage``."""
    h = hashlib.sha256()
    for path in stage_modules(stage, src):
        h.update(path.relative_to(src).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def config_hash(obj: object) -> str:
    """12-hex fingerprint of a JSON-able config (slice); key order does not matter."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_commit(repo: Path = SRC) -> str:
    """The checkout's commit (``+dirty`` when it has local edits), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
