"""`make test-slurm`: config/smoke.yaml through the SLURM profile, on a real one-node cluster.

Starts a cluster on localhost (tests/slurm/cluster.sh; installs Debian's slurm and munge
when run as root), runs the smoke config twice, side by side, from fresh copies of the
project, once with the laptop profile and once with workflow/profiles/slurm (its resources
fitted to this node, status polled with squeue since the test cluster keeps no
accounting), then checks:

- every job but the local rules was submitted with sbatch: one SLURM job id per job in the
  executor's log, in slurmctld's log and in the per-job SLURM logs;
- the Parquet files equal the local run's, value for value (latency aside);

and stops only the daemons it started. Exit status 0 only when all of it holds; a failed
check keeps both runs and their logs in the temporary folder it names.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
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


def start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Starts ``cmd`` under ``timeout -k`` (a stuck executor must not hang CI), output to
    ``log``, importing the copy's own package."""
    with open(log, "w") as out:
        return subprocess.Popen(["timeout", "-k", "10", str(TIMEOUT), *cmd], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(cwd / "src")})


def finish(process: subprocess.Popen, log: Path, began: float, what: str) -> None:
    """Waits for ``process``; says how long it took, or fails with the log's tail."""
    if process.wait() != 0:
        raise SystemExit(f"{what} failed ({process.returncode}):\n" + log.read_text()[-4000:])
    print(f"{what}: {time.time() - began:.0f} s")


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
    runs: list[subprocess.Popen] = []
    try:
        local, cluster = scratch / "local", scratch / "cluster-run"
        for work in (local, cluster):
            work.mkdir()
            project_copy(work)
        smk = [sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml"]
        ctld_log = state / "slurmctld.log"
        ctld_before = len(ctld_log.read_text()) if ctld_log.exists() else 0
        # Side by side: the SLURM run mostly waits for its status polls.
        began = time.time()
        # A workflow profile, as the SLURM profile is meant to be used: with --profile, the
        # default workflow profile would load too and win (its cores: 2 caps the run).
        on_cluster = start([*smk, "--workflow-profile", str(fitted_profile(scratch, state))],
                           cluster, scratch / "cluster.log")
        here = start([*smk, "--workflow-profile", "workflow/profiles/default"], local,
                     scratch / "local.log")
        runs += [on_cluster, here]
        finish(here, scratch / "local.log", began, "local smoke run")
        finish(on_cluster, scratch / "cluster.log", began, "SLURM smoke run")
        problems = submitted(cluster, scratch / "cluster.log", ctld_log, ctld_before)
        lines, equal = compare(local / "results/smoke", cluster / "results/smoke")
        print("\n".join(lines))
        if not equal:
            problems.append("the SLURM run's Parquet differs from the local run's")
    finally:
        for process in runs:  # a failure above must not leave the other run going
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], check=False)
    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        print(f"test-slurm: FAILED (logs and both runs kept in {scratch})")
    else:
        shutil.rmtree(scratch)
        print("test-slurm: passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
