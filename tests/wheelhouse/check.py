"""`make test-wheelhouse`: the offline GPU node route, end to end, on this machine.

Builds the wheelhouse (`make wheelhouse`), makes a fresh venv holding only torch and
torchvision (as a node with its site's PyTorch would), installs siblings from the
wheelhouse alone (`pip install --no-index --find-links`, no pip configuration), then runs
config/smoke.yaml from a copy of the workflow (no src/: the installed wheel runs) with that
venv's Python. Checks:

- pip installed siblings without touching torch or torchvision, nor any package the venv
  held before (same versions, same files);
- `siblings[cluster]` resolves from the wheelhouse too;
- the smoke run finished with results/smoke/benchmark.parquet.

Exit status 0 only when all of it holds; a failed check keeps the temporary folder it names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 1200

# torch's and torchvision's versions, where their files are, and a fingerprint of each file
# a reinstall would rewrite; then every installed distribution's version.
SNAPSHOT = """
import hashlib, json, os, sys
from importlib import metadata
out = {"versions": {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}}
for name in ("torch", "torchvision"):
    module = __import__(name)
    init = module.__file__
    out[name] = [module.__version__, init, os.stat(init).st_mtime_ns,
                 hashlib.sha256(open(init, "rb").read()).hexdigest()]
json.dump(out, sys.stdout)
"""


def run(cmd: list[str], what: str, **kwargs) -> str:
    """Runs ``cmd`` and returns its standard output; fails with its output's tail."""
    began = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-4000:]
        raise SystemExit(f"{what} failed ({done.returncode}):\n{tail}")
    print(f"{what}: {time.time() - began:.0f} s")
    return done.stdout


def offline_env(venv: Path) -> dict[str, str]:
    """The environment of a node with none of this machine's pip settings (its local
    indexes and find-links), with ``venv`` activated."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}


def snapshot(python: Path) -> dict:
    return json.loads(run([str(python), "-c", SNAPSHOT], "snapshot of the venv"))


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="siblings-wheelhouse-"))
    wheelhouse, venv, work = scratch / "wheelhouse", scratch / "venv", scratch / "work"
    python = venv / "bin/python"
    print(f"working in {scratch}")

    out = run(["make", "wheelhouse", f"WHEELHOUSE={wheelhouse}"], "make wheelhouse", cwd=ROOT)
    print(next(line for line in out.splitlines() if " wheels, " in line))  # its size

    run([sys.executable, "-m", "venv", str(venv)], "fresh venv")
    # as `make setup` installs them: the tested versions, from this machine's pip settings
    run([str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"),
         "torch", "torchvision"], "torch and torchvision into it")
    before = snapshot(python)

    env = offline_env(venv)
    pip = [str(python), "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse)]
    out = run([*pip, "siblings"], "siblings from the wheelhouse", env=env)
    print(next(line for line in out.splitlines() if line.startswith("Successfully installed")))
    run([*pip, "--dry-run", "siblings[cluster]"], "siblings[cluster] resolves", env=env)
    after = snapshot(python)

    problems = [f"{name}: {before[name]} became {after[name]}"
                for name in ("torch", "torchvision") if before[name] != after[name]]
    problems += [f"{name} {version} became {after['versions'].get(name)}"
                 for name, version in before["versions"].items()
                 if after["versions"].get(name) != version]
    installed = run([str(python), "-c", "import siblings; print(siblings.__file__)"],
                    "import siblings", env=env, cwd=scratch).strip()
    if not installed.startswith(str(venv)):
        problems.append(f"siblings imported from {installed}, not from the venv")

    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    run([str(python), "-m", "snakemake", "--workflow-profile", "workflow/profiles/default",
         "--configfile", "config/smoke.yaml", "--cores", "2"], "smoke run", env=env, cwd=work)
    if not (work / "results/smoke/benchmark.parquet").is_file():
        problems.append("the smoke run left no results/smoke/benchmark.parquet")

    if problems:
        print(f"FAILED, kept {scratch}:\n  " + "\n  ".join(problems))
        return 1
    print(f"torch {after['torch'][0]} and torchvision {after['torchvision'][0]} untouched, "
          "smoke config ran: OK")
    shutil.rmtree(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
