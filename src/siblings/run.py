"""``python -m siblings.run [snakemake args]``: Snakemake that resumes after any kill.

``make bench`` runs the workflow through this, so a run killed at any point (SIGKILL, a
preempted node, a closed laptop) resumes with the same command. A killed Snakemake leaves
its lock behind, and the next run would stop with a LockException. This clears the lock
only once it is sure no live run holds it:

- every run started here holds an OS lock (``flock``) on ``.snakemake/siblings-run.lock``
  for as long as it lives: this process becomes Snakemake (``exec``) and keeps the lock's
  file open; the kernel drops the lock when the process dies, however it dies;
- on Linux, no other Snakemake process, and no job of one, may be working in this
  directory (a run started by hand, or a job that outlived its Snakemake);
- where SLURM's ``squeue`` exists, none of the user's jobs may be working in it.

A live run makes this exit with status 2 and its pid, touching nothing. Jobs that were
running when the run died are rerun from scratch (the profile sets ``rerun-incomplete``):
every stage writes its outputs whole or not at all. Without ``/proc`` (macOS) only runs
started here are seen.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from siblings.artifacts import RERUN_VARIABLE

LOCK = Path(".snakemake/siblings-run.lock")
SNAKEMAKE_LOCKS = Path(".snakemake/locks")


class LiveRunError(RuntimeError):
    """Another run is working in this directory."""


def hold_run_lock(path: Path = LOCK, patience: float = 3.0) -> IO[str]:
    """Takes the run lock (released when the returned file closes or this process dies).
    A run killed a moment ago may still be exiting (a large Snakemake takes a while to
    unmap): the lock is retried for ``patience`` seconds before its holder counts as live."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LiveRunError(f"another run is live in this directory (pid {holder}); wait "
                               "for it to finish or stop it, then rerun") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _is_snakemake(argv: list[str]) -> bool:
    """A Snakemake process (``snakemake ...``, ``python [-u] -m snakemake ...``) or one of
    its jobs (``python .snakemake/scripts/...``)."""
    return ("snakemake" in [Path(a).name for a in argv[:2]]
            or any(a == "-m" and b == "snakemake" for a, b in zip(argv, argv[1:]))
            or any(".snakemake/scripts/" in a for a in argv))


def live_snakemakes(workdir: Path, proc: Path = Path("/proc")) -> list[int]:
    """Pids of the Snakemake processes and jobs working in ``workdir`` (empty where there
    is no /proc)."""
    found = []
    here = workdir.resolve()
    for entry in proc.glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue  # gone, or not ours to read
        if int(entry.name) != os.getpid() and _is_snakemake(argv) and cwd == here:
            found.append(int(entry.name))
    return found


def clear_stale_lock(workdir: Path = Path(".")) -> bool:
    """Removes Snakemake's lock files (what ``snakemake --unlock`` does, without parsing the
    workflow again) once no live run holds them; True when there were some. Call with the
    run lock held."""
    locks = sorted((workdir / SNAKEMAKE_LOCKS).glob("*.lock"))
    if not locks:
        return False
    pids = live_snakemakes(workdir)
    if pids:
        raise LiveRunError(f"Snakemake is running in this directory (pid "
                           f"{', '.join(map(str, pids))}); wait for it or stop it, then rerun")
    jobs = cluster_jobs(workdir)
    if jobs:
        raise LiveRunError(f"SLURM jobs {', '.join(jobs)} are working in this directory; "
                           "wait for them or scancel them, then rerun")
    for lock in locks:
        lock.unlink()
    return True


def cluster_jobs(workdir: Path) -> list[str]:
    """Ids of this user's SLURM jobs whose working directory is ``workdir`` (none without
    ``squeue``)."""
    if shutil.which("squeue") is None:
        return []
    listed = subprocess.run(["squeue", "--me", "-h", "-o", "%i %Z"], capture_output=True,
                            text=True, check=True).stdout
    here = workdir.resolve()
    return [job for job, _, cwd in (line.partition(" ") for line in listed.splitlines())
            if cwd and Path(cwd).resolve() == here]


def main(args: list[str]) -> int:
    try:
        lock = hold_run_lock()
        if clear_stale_lock():
            print("siblings.run: cleared the lock of a run that died; resuming it",
                  file=sys.stderr)
    except LiveRunError as e:
        print(f"siblings.run: {e}", file=sys.stderr)
        return 2
    # what a job names when it finds an input corrupted: this command (make bench sets its own)
    python = Path(sys.executable)
    shown = os.path.relpath(python) if python.is_relative_to(Path.cwd()) else str(python)
    os.environ.setdefault(RERUN_VARIABLE, shlex.join([shown, "-m", "siblings.run", *args]))
    os.set_inheritable(lock.fileno(), True)  # Snakemake, exec'd below, holds the lock
    os.execv(sys.executable, [sys.executable, "-m", "snakemake", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
