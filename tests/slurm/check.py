"""`make test-slurm`: config/smoke.yaml through the SLURM profile, on a real one-node cluster.

Starts a cluster on localhost (tests/slurm/cluster.sh; installs Debian's slurm and munge
when run as root), runs the smoke config twice from fresh copies of the project, once with
the laptop profile and once with workflow/profiles/slurm (its resources fitted to this
node, status polled with squeue since the test cluster keeps no accounting), then checks:

- every job but the local rules was submitted with sbatch: one SLURM job id per job in the
  executor's log, in slurmctld's log and in the per-job SLURM logs;
- the Parquet files equal the local run's, value for value (latency aside);

and stops only the daemons it started. Exit status 0 only when all of it holds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import project_copy  # noqa: E402

from siblings.compare import compare  # noqa: E402

CLUSTER = ROOT / "tests/slurm/cluster.sh"
LOCAL_RULES = {"all", "aggregate", "report"}
TIMEOUT = 900


def run(cmd: list[str], cwd: Path, log: Path) -> float:
    """Runs ``cmd`` (under ``timeout -k``: a stuck executor must not hang CI), output to
    ``log``; returns its wall time; raises with the log's tail if it fails."""
    start = time.time()
    with open(log, "w") as f:
        done = subprocess.run(["timeout", "-k", "10", str(TIMEOUT), *cmd], cwd=cwd, stdout=f,
                              stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(cwd / "src")})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n"
                         + log.read_text()[-4000:])
    return time.time() - start


def fitted_profile(scratch: Path, state: Path) -> Path:
    """workflow/profiles/slurm with what this one small node needs: its partition, memory
    it has, squeue for status (no accounting here), quick polling, and the job logs kept."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    node_mb = int((state / "node_memory_mb").read_text())
    cap = node_mb // 3
    profile["default-resources"].update(slurm_partition="debug", runtime=30,
                                        mem_mb=min(profile["default-resources"]["mem_mb"], cap))
    profile["default-resources"].pop("slurm_account", None)
    for resources in profile["set-resources"].values():
        resources.update(mem_mb=min(resources["mem_mb"], cap), runtime=30)
    profile.update({"slurm-no-account": True, "slurm-status-command": "squeue",
                    "slurm-init-seconds-before-status-checks": 2,
                    "slurm-keep-successful-logs": True, "latency-wait": 5})
    folder = scratch / "profile"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def submitted(work: Path, log: Path, ctld_log: Path, ctld_before: int) -> list[str]:
    """Problems with the claim that every cluster job went through sbatch."""
    out = log.read_text()
    stats = out.split("Job stats:")[1].split("total")[0]
    jobs = {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, re.M)}
    expected = sum(n for rule, n in jobs.items() if rule not in LOCAL_RULES)
    ids = set(re.findall(r"submitted with SLURM jobid (\d+)", out))
    batch = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)",
                       ctld_log.read_text()[ctld_before:])
    logs = list((work / ".snakemake/slurm_logs").rglob("*.log"))
    problems = [f"{what}: {n} for {expected} cluster jobs" for what, n in
                (("executor's SLURM job ids", len(ids)), ("sbatch submissions in slurmctld.log",
                 len(set(batch))), ("per-job SLURM logs", len(logs))) if n < expected]
    print(f"jobs per rule: {jobs}; {expected} through sbatch: {len(ids)} SLURM job ids, "
          f"{len(set(batch))} submissions in slurmctld.log, {len(logs)} SLURM job logs")
    return problems


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="siblings-slurm-"))
    state = scratch / "cluster"
    subprocess.run(["bash", str(CLUSTER), "start", str(state)], check=True)
    try:
        local, cluster = scratch / "local", scratch / "cluster-run"
        for work in (local, cluster):
            work.mkdir()
            project_copy(work)
        smk = [sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml"]
        seconds = run([*smk, "--workflow-profile", "workflow/profiles/default"], local,
                      scratch / "local.log")
        print(f"local smoke run: {seconds:.0f} s")
        ctld_log = state / "slurmctld.log"
        ctld_before = len(ctld_log.read_text()) if ctld_log.exists() else 0
        seconds = run([*smk, "--profile", str(fitted_profile(scratch, state))], cluster,
                      scratch / "cluster.log")
        print(f"SLURM smoke run: {seconds:.0f} s")
        problems = submitted(cluster, scratch / "cluster.log", ctld_log, ctld_before)
        lines, equal = compare(local / "results/smoke", cluster / "results/smoke")
        print("\n".join(lines))
        if not equal:
            problems.append("the SLURM run's Parquet differs from the local run's")
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], check=False)
    for problem in problems:
        print(f"FAIL: {problem}")
    print("test-slurm:", "FAILED" if problems else f"passed (work in {scratch})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
