"""siblings.run: a dead run's lock is cleared, a live run's never (the end-to-end kill and
resume is in test_workflow.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from siblings.run import (SNAKEMAKE_LOCKS, LiveRunError, clear_stale_lock, hold_run_lock,
                          live_snakemakes)


def test_a_second_run_cannot_take_the_run_lock_until_the_first_lets_go(tmp_path):
    first = hold_run_lock(tmp_path / "run.lock")
    began = time.monotonic()
    with pytest.raises(LiveRunError, match=r"another run is live in this directory \(pid \d+\)"):
        hold_run_lock(tmp_path / "run.lock", patience=0.5)
    assert time.monotonic() - began >= 0.5  # a holder that is still exiting gets its moment
    first.close()  # what the kernel does when the holder dies
    hold_run_lock(tmp_path / "run.lock", patience=0).close()


@pytest.fixture
def stale_lock(tmp_path) -> Path:
    (tmp_path / SNAKEMAKE_LOCKS).mkdir(parents=True)
    (tmp_path / SNAKEMAKE_LOCKS / "0.input.lock").write_text("results/x\n")
    return tmp_path


def test_a_live_snakemake_in_the_directory_keeps_its_lock(stale_lock):
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 30"], cwd=stale_lock)
    try:
        for _ in range(50):  # until exec has renamed it
            if live.pid in live_snakemakes(stale_lock):
                break
            subprocess.run(["sleep", "0.05"])
        assert live_snakemakes(stale_lock) == [live.pid]
        with pytest.raises(LiveRunError, match=f"Snakemake is running in this directory "
                                               f"\\(pid {live.pid}\\)"):
            clear_stale_lock(stale_lock)
        assert (stale_lock / SNAKEMAKE_LOCKS / "0.input.lock").exists()
    finally:
        live.kill()
        live.wait()


def test_a_dead_runs_lock_is_cleared_and_no_lock_means_nothing_to_do(stale_lock):
    assert clear_stale_lock(stale_lock)
    assert list((stale_lock / SNAKEMAKE_LOCKS).iterdir()) == []
    assert not clear_stale_lock(stale_lock)


@pytest.mark.parametrize("argv, live", [
    (["/venv/bin/python", "/venv/bin/snakemake", "--cores", "2"], True),
    (["snakemake", "-n"], True),
    (["/venv/bin/python", "-u", "-m", "snakemake", "--profile", "p"], True),
    (["/venv/bin/python", "/w/.snakemake/scripts/tmpab12.attack.py"], True),  # a job
    (["/venv/bin/python", "-m", "siblings.run", "--configfile", "c.yaml"], False),
    (["/venv/bin/python", "-m", "pytest", "tests/test_snakemake_things.py"], False),
])
def test_what_counts_as_a_live_run(argv, live):
    from siblings.run import _is_snakemake

    assert _is_snakemake(argv) is live
