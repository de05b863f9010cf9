"""The GPU run: the default config and config/zoo.yaml with ``device: cuda``, timed, checked
against the CPU run. Not a test; needs a machine where torch sees a CUDA device.

    python benchmarks/gpu.py [--cpu-results results] [--limit 540] [--cores 16]
    python benchmarks/gpu.py --no-run [--cpu-results results]   # summarise gpu-* results here

It runs with whatever Python it is started with, no ``.venv`` needed: on a GPU node that
has its site's PyTorch and no internet, install this package and its other dependencies
into that environment from a wheelhouse (README, "Offline GPU node"):

    make wheelhouse                  # on a machine with internet; PYTHON_VERSION for the node's
    python -m pip install --no-index --find-links wheelhouse siblings   # on the node

torch and torchvision are left as the node has them (``pip`` sees them satisfied).

For each config it writes a copy named ``gpu-<name>`` with ``device: cuda``, runs it with
the laptop profile under ``--limit`` seconds of wall time (the rest of the configs share
what is left), and writes to ``reports/gpu/``:

- ``summary.md``: device, wall time, jobs (and how many a resumed run found done), per-stage
  job seconds (Snakemake's benchmark files), and the agreement with the CPU run where
  ``--cpu-results/<name>`` holds one;
- ``timings.csv``: every job's wall time.

A run cut short by ``--limit`` resumes when started again. ``--no-run`` writes the summary
from ``results/gpu-*`` as they are: the GPU node rarely holds the CPU run, so copy its
results back and compare here.

Agreement "within noise": every model's test accuracy within 3 binomial standard errors of
the CPU run's (and at least 0.5 points), every attack row's success rate within 3 standard
errors of the difference of two proportions on its images. GPU kernels round differently,
so training ends elsewhere: the rates move by noise, not by more.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports/gpu"
CONFIGS = ("config.yaml", "zoo.yaml")


def gpu_config(name: str) -> Path:
    """``config/<name>`` renamed ``gpu-<run name>``, on CUDA; a sibling file beside it."""
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    cfg.update(name=f"gpu-{cfg['name']}", device="cuda")
    path = ROOT / "config" / f".gpu-{name}"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(config: Path, limit: float, cores: int) -> tuple[float, int]:
    """Runs ``config`` within ``limit`` seconds; returns wall time and exit status."""
    start = time.time()
    done = subprocess.run(["timeout", "-k", "10", str(int(limit)), sys.executable, "-m",
                           "snakemake", "--workflow-profile", "workflow/profiles/default",
                           "--configfile", str(config), "--cores", str(cores)], cwd=ROOT)
    return time.time() - start, done.returncode


def timings(run_dir: Path) -> pd.DataFrame:
    """Every job's wall time from its Snakemake benchmark file."""
    rows = [{"stage": p.parent.name if p.parent.name != "benchmarks" else p.stem,
             "job": p.stem, "seconds": float(pd.read_csv(p, sep="\t").s.iloc[0])}
            for p in sorted((run_dir / "benchmarks").rglob("*.tsv"))]
    return pd.DataFrame(rows, columns=["stage", "job", "seconds"])


def disagreements(cpu: Path, gpu: Path) -> list[str]:
    """Models and attack rows whose GPU values leave the CPU run's noise band."""
    out = []
    keys = ["arch", "role", "compression", "defense", "seed"]
    models = pd.read_parquet(cpu / "models.parquet").merge(
        pd.read_parquet(gpu / "models.parquet"), on=keys, suffixes=("_cpu", "_gpu"))
    for r in models.itertuples():
        p = r.test_accuracy_cpu / 100
        band = max(0.5, 300 * math.sqrt(max(p * (1 - p), 1e-4) / r.n_test_cpu))
        if abs(r.test_accuracy_gpu - r.test_accuracy_cpu) > band:
            out.append(f"{r.arch} {r.role} {r.compression} {r.defense}: accuracy "
                       f"{r.test_accuracy_cpu:.2f} (CPU) vs {r.test_accuracy_gpu:.2f} (GPU)")
    keys = ["arch", "attack", "source_role", "source_id", "eps"]
    rows = pd.read_parquet(cpu / "benchmark.parquet").merge(
        pd.read_parquet(gpu / "benchmark.parquet"), on=keys, suffixes=("_cpu", "_gpu"))
    for r in rows.itertuples():
        p = (r.success_rate_cpu + r.success_rate_gpu) / 2
        band = 3 * math.sqrt(max(p * (1 - p), 1 / r.n_examples_cpu) * 2 / r.n_examples_cpu)
        if abs(r.success_rate_gpu - r.success_rate_cpu) > band:
            out.append(f"{r.arch} {r.attack} {r.source_role}/{r.source_id} eps {r.eps:g}: "
                       f"{r.success_rate_cpu:.3f} (CPU) vs {r.success_rate_gpu:.3f} (GPU)")
    return out


def agreement(cpu_dir: Path, gpu_dir: Path) -> list[str]:
    """The summary's lines on how the GPU run agrees with the CPU run in ``cpu_dir``."""
    if not (cpu_dir / "models.parquet").exists():
        return [f"No CPU run in {cpu_dir} to compare with.", ""]
    if not (gpu_dir / "models.parquet").exists():
        return ["The GPU run did not reach its tables: nothing to compare.", ""]
    found = disagreements(cpu_dir, gpu_dir)
    compared = len(pd.read_parquet(gpu_dir / "models.parquet")), len(
        pd.read_parquet(gpu_dir / "benchmark.parquet"))
    return [f"Against the CPU run in `{cpu_dir.relative_to(ROOT) if cpu_dir.is_relative_to(ROOT) else cpu_dir}`"
            f" ({compared[0]} models, {compared[1]} attack rows): "
            + ("every accuracy and success rate within noise." if not found else
               f"{len(found)} outside noise:"), *[f"- {f}" for f in found], ""]


def section(name: str, run_name: str, outcome: str, jobs: pd.DataFrame) -> list[str]:
    """One config's heading and its per-stage job seconds."""
    stages = jobs.groupby("stage").seconds.agg(["count", "sum", "median"]).round(1)
    return [f"## {name} as `{run_name}`: {outcome}, {len(jobs)} jobs", "",
            stages.to_markdown(), ""]


def recorded_device() -> str:
    """The device the gpu-* runs under results/ recorded in their models' rows."""
    found = {d for p in sorted((ROOT / "results").glob("gpu-*/models.parquet"))
             for d in pd.read_parquet(p, columns=["device"]).device}
    return ", ".join(sorted(found)) or "an unknown device"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-results", type=Path, default=ROOT / "results")
    parser.add_argument("--limit", type=float, default=540, help="seconds for all configs")
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--no-run", action="store_true",
                        help="only summarise the gpu-* runs already under results/")
    args = parser.parse_args()
    import torch

    if not args.no_run and not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to run")
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.limit
    device = torch.cuda.get_device_name(0) if not args.no_run else recorded_device()
    lines = [f"# GPU run on {device}", ""]
    all_timings = []
    for name in CONFIGS:
        run_name = f"gpu-{yaml.safe_load((ROOT / 'config' / name).read_text())['name']}"
        run_dir = ROOT / "results" / run_name
        if args.no_run:
            outcome = "summarised from the results as they are"
        else:
            found = len(timings(run_dir))
            config = gpu_config(name)
            wall, status = run(config, max(1.0, deadline - time.time()), args.cores)
            config.unlink()
            outcome = (("done" if status == 0 else f"exit {status}") + f" in {wall:.0f} s wall"
                       + (f", resumed with {found} jobs already done" if found else ""))
        jobs = timings(run_dir)
        all_timings.append(jobs.assign(config=name))
        lines += section(name, run_name, outcome, jobs)
        lines += agreement(args.cpu_results / run_name.removeprefix("gpu-"), run_dir)
        (OUT / "summary.md").write_text("\n".join(lines))  # after each config: a timeout
        pd.concat(all_timings).to_csv(OUT / "timings.csv", index=False)  # keeps the rest
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
