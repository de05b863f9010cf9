"""The GPU run: the default config and config/zoo.yaml with ``device: cuda``, timed, checked
against the CPU run. Not a test; needs a machine where torch sees a CUDA device.

    .venv/bin/python benchmarks/gpu.py [--cpu-results results] [--limit 540] [--cores 16]

For each config it writes a copy named ``gpu-<name>`` with ``device: cuda``, runs it with
the laptop profile under ``--limit`` seconds of wall time (the rest of the configs share
what is left), and writes to ``reports/gpu/``:

- ``summary.md``: device, wall time, jobs, per-stage job seconds (Snakemake's benchmark
  files), and the agreement with the CPU run where ``--cpu-results/<name>`` holds one;
- ``timings.csv``: every job's wall time.

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-results", type=Path, default=ROOT / "results")
    parser.add_argument("--limit", type=float, default=540, help="seconds for all configs")
    parser.add_argument("--cores", type=int, default=16)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to run")
        return 2
    device = torch.cuda.get_device_name(0)
    OUT.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.limit
    lines = [f"# GPU run on {device}", ""]
    all_timings = []
    for name in CONFIGS:
        config = gpu_config(name)
        run_name = yaml.safe_load(config.read_text())["name"]
        wall, status = run(config, max(1.0, deadline - time.time()), args.cores)
        jobs = timings(ROOT / "results" / run_name)
        all_timings.append(jobs.assign(config=name))
        lines += [f"## {name} as `{run_name}`: {'done' if status == 0 else f'exit {status}'}"
                  f" in {wall:.0f} s wall, {len(jobs)} jobs", "",
                  jobs.groupby("stage").seconds.agg(["count", "sum", "median"]).round(1)
                  .to_markdown(), ""]
        cpu_dir = args.cpu_results / run_name.removeprefix("gpu-")
        if status == 0 and (cpu_dir / "models.parquet").exists():
            found = disagreements(cpu_dir, ROOT / "results" / run_name)
            lines += [f"Against the CPU run in {cpu_dir}: "
                      + ("every accuracy and success rate within noise." if not found else
                         f"{len(found)} outside noise:"), *[f"- {f}" for f in found], ""]
        config.unlink()
        (OUT / "summary.md").write_text("\n".join(lines))  # after each config: a timeout
        pd.concat(all_timings).to_csv(OUT / "timings.csv", index=False)  # keeps the rest
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
