"""``make wheelhouse``: wheels to install siblings on an offline node that has its own PyTorch.

    python tools/wheelhouse.py [--python-version 3.12] [--platform manylinux_2_28_x86_64]
                               [--skip "numpy pandas"] DEST

DEST gets a wheel of this package and of every package it needs at run time (with the
``cluster`` extra, for the SLURM profile) except torch, torchvision and what only they
need: the node's own PyTorch stays as it is. Packages that torch also needs (numpy, pillow,
jinja2, ...) are kept, since pip leaves installed ones alone and a node's may be too old;
``--skip`` leaves out packages the node is known to have. Versions are the tested ones
installed in this venv (``make setup`` installs constraints.txt). On the node:

    pip install --no-index --find-links DEST siblings
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("cluster",)
SITE_PROVIDED = {"torch", "torchvision"}
DEFAULT_PLATFORM = f"manylinux_2_28_{platform.machine()}"  # glibc 2.28: RHEL 8, Debian 10 on


def needed(requirements: list[str], env: dict[str, str], extras: set[str]) -> list[Requirement]:
    """The requirements whose markers hold on the target, with ``extras`` requested."""
    kept = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({**env, "extra": extra})
                                     for extra in ("", *extras)):
            kept.append(req)
    return kept


def closure(roots: list[Requirement], env: dict[str, str]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need on the target, by canonical name, not
    following torch or torchvision (the node has them, and what they need)."""
    found: dict[str, metadata.Distribution] = {}
    extras: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in SITE_PROVIDED or (name in found and req.extras <= extras[name]):
            continue
        try:
            dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{req} is needed on the target but not installed here: "
                             "run `make setup`, or add it to the venv and constraints.txt")
        if not req.specifier.contains(dist.version, prereleases=True):
            raise SystemExit(f"{req} is needed but {name} {dist.version} is installed: "
                             "run `make setup`")
        found[name] = dist
        extras[name] = extras.get(name, set()) | req.extras
        todo += needed(dist.requires or [], env, extras[name])
    return found


def is_pure(dist: metadata.Distribution) -> bool:
    """Whether the installed wheel is pure Python: then the same wheel fits any target."""
    lines = (dist.read_text("WHEEL") or "").splitlines()
    tags = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]
    return bool(tags) and all(tag.endswith("-none-any") for tag in tags)


def platforms(tag: str) -> list[str]:
    """``tag`` and the older manylinux tags a node with its glibc also runs: pip's
    ``--platform`` takes each literally (a manylinux_2_28 node runs manylinux2014 wheels)."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag)
    if not match:
        return [tag]
    newest, arch = int(match[1]), match[2]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(newest, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


def pip(*args: str, failure: str) -> None:
    if subprocess.run([sys.executable, "-m", "pip", *args]).returncode != 0:
        raise SystemExit(f"{failure} (pip's error is above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    # empty means the default: the Makefile passes its variables, set or not
    parser.add_argument("--python-version", help="the node's Python (default: this one)")
    parser.add_argument("--platform", help="the node's newest wheel platform tag "
                        f"(default: {DEFAULT_PLATFORM})")
    parser.add_argument("--skip", default="", help="packages the node has, space-separated")
    args = parser.parse_args()
    args.platform = args.platform or DEFAULT_PLATFORM

    # a full version (3.12.4) is fine too
    python = ".".join((args.python_version or sys.version).split(".")[:2])
    machine = re.sub(r"^(many|musl)?linux(_\d+_\d+|\d+)?_", "", args.platform)  # x86_64
    env = {"python_version": python, "python_full_version": f"{python}.0",
           "platform_machine": machine}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = needed(project["dependencies"], env, set())
    for extra in EXTRAS:
        roots += needed(project["optional-dependencies"][extra], env, set())
    dists = closure(roots, env)
    skip = {canonicalize_name(name) for name in args.skip.split()}
    if skip - dists.keys():
        raise SystemExit(f"siblings does not need {' '.join(sorted(skip - dists.keys()))}: "
                         "nothing to skip")
    pins = {name: f"{name}=={dist.version}" for name, dist in sorted(dists.items())
            if name not in skip}
    pure = [pin for name, pin in pins.items() if is_pure(dists[name])]
    binary = [pin for name, pin in pins.items() if not is_pure(dists[name])]

    args.dest.mkdir(parents=True, exist_ok=True)
    for old in args.dest.glob("*.whl"):  # only this build's wheels, none of a previous one
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        # Built from a copy: setuptools would leave build/ in the checkout.
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy(ROOT / name, tmp)
        shutil.copytree(ROOT / "src", Path(tmp) / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(args.dest), tmp,
            failure="could not build the siblings wheel")
    # Pure wheels fit any target; the few published only as sdists (connection_pool) are
    # built here, and pure too.
    pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(args.dest), *pure,
        failure="could not fetch or build the pure-Python wheels")
    target = [f"--platform={tag}" for tag in platforms(args.platform)]
    pip("download", "--quiet", "--no-deps", "--only-binary=:all:", f"--python-version={python}",
        *target, "--dest", str(args.dest), *binary,
        failure=f"a tested version has no wheel for Python {python} on {args.platform}")

    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(wheel.stat().st_size for wheel in wheels)
    print(f"{args.dest}: {len(wheels)} wheels, {size / 2**20:.0f} MiB, for Python {python} "
          f"on {args.platform}; torch and torchvision are the node's own")


if __name__ == "__main__":
    main()
