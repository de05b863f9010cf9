# The plan (src/siblings/plan.py) validates the config and decides every job, source and
# path; the rules only wire its answers to files. The planner and the jobs import the same
# installed `siblings` package, so the code fingerprints describe the code that runs.
import os
import sys

from siblings.artifacts import RERUN_VARIABLE
from siblings.config import ConfigError
from siblings.device import DeviceError, check_available
from siblings.inputs import check_inputs
from siblings.plan import Plan, sidecar

try:
    PLAN = Plan(config)
except ConfigError as _err:  # the message names every key: a traceback would only bury it
    sys.exit(str(_err))
config.clear()
config.update(PLAN.config)
PATHS = PLAN.paths
SEED_FULL = PLAN.seed_full
TARGET = PLAN.full_path("{arch}", SEED_FULL)
CONDA_ENV = "../envs/cuda.yaml" if config["device"] == "cuda" else "../envs/cpu.yaml"  # --sdm conda
GPUS = 1 if config["device"] == "cuda" else 0  # what each compute job asks a cluster for

# Pairs an architecture's declared capabilities rule out are left out of the plan, never
# jobs that fail; the report lists them (support.parquet).
for _verdict in PLAN.support.left_out():
    print(
        f"left out of the plan: {_verdict.arch} x {_verdict.kind} {_verdict.component}: "
        f"{_verdict.reason}",
        file=sys.stderr,
    )

# The command a job names when it finds an input corrupted: it regenerates the file. `make
# bench` and `siblings run` set it to themselves; plain Snakemake gets `make bench`'s form.
os.environ.setdefault(
    RERUN_VARIABLE,
    "make bench"
    + "".join(f" CONFIG={os.path.relpath(f)}" for f in workflow.overwrite_configfiles or []),
)


wildcard_constraints:
    **PLAN.wildcard_constraints(),


# Once the executor is known and before any job (a dry run plans anywhere, such as a login
# node that has neither the data nor a GPU): the dataset's root, its sizes and every
# starting checkpoint fit the config; run locally, the device exists here (a cluster's jobs
# check on their own nodes).
onstart:
    try:
        check_inputs(config)
        if workflow.local_exec:
            check_available(config["device"])
    except (ConfigError, DeviceError) as err:
        sys.exit(str(err))
