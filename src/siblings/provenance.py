"""Code and config fingerprints that make every artifact traceable and every rerun exact.

Snakemake reruns a job when its params change but never looks inside an imported
package, so each rule's params carry ``code_hash(stage)``: a hash of the stage module
and of every ``siblings`` module it imports, transitively. Editing attack code thus
reruns attacks, not training.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE = "siblings"
SRC = Path(__file__).resolve().parent
TRACKED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "snakemake")


def _imports(path: Path) -> set[str]:
    """Names of the ``siblings`` modules that the file at ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == PACKAGE:
                found.add(parts[1] if len(parts) > 1 else "__init__")
                if len(parts) == 1:
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith(PACKAGE + "."))
    return found


def stage_modules(stage: str, src: Path = SRC) -> list[Path]:
    """The stage module and every package module it reaches through imports."""
    seen: set[str] = set()
    todo = [stage]
    while todo:
        name = todo.pop()
        path = src / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        todo.extend(_imports(path))
    return sorted(src / f"{n}.py" for n in seen)


def code_hash(stage: str, src: Path = SRC) -> str:
    """12-hex fingerprint of the source files that run in ``stage``."""
    h = hashlib.sha256()
    for path in stage_modules(stage, src):
        h.update(path.name.encode())
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
