"""Config fingerprints and the versions of the code and packages, recorded with every
artifact so each number traces back to what produced it. The code fingerprints that decide
reruns live in ``siblings.fingerprint``."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

SRC = Path(__file__).resolve().parent
TRACKED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "snakemake")


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
