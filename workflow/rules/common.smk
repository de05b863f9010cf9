# Config validation, artifact paths, target lists and code hashes. No computation here.
# The planner and the jobs import the same installed `siblings` package (`make setup`
# installs this checkout in editable mode), so the code hashes describe the code that runs.
import re
from pathlib import Path

from siblings.attack import NO_SOURCE, SOURCE_ROLES
from siblings.attacks import ATTACKS as ATTACK_METHODS
from siblings.config import validate
from siblings.provenance import code_hash, config_hash

_valid = validate(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
config.clear()
config.update(_valid)

NAME = config["name"]
DATASET = config["dataset"]["name"]
ARCHS = list(config["archs"])
COMPRESSIONS = list(config["compressions"])
ATTACKS = list(config["attacks"])
ROLES = config["source_roles"]
SEED_FULL = config["seeds"]["full"]
SEED_INDEPENDENT = config["seeds"]["independent"]

# Used only under `--sdm conda` (clusters); locally jobs run in the invoking venv.
CONDA_ENV = "../../envs/cpu.yaml"

RESULTS = f"results/{NAME}/{DATASET}"
LOGS = f"results/{NAME}/logs"
DATA = f"{RESULTS}/data.safetensors"
FULL = f"{RESULTS}/models/{{arch}}/full/seed{{seed}}.safetensors"
SIBLING = f"{RESULTS}/models/{{arch}}/sibling/{{compression}}.safetensors"
ATTACK = f"{RESULTS}/attacks/{{arch}}/{{attack}}/{{role}}/{{source}}.parquet"
BENCHMARK = f"results/{NAME}/benchmark.parquet"
MODELS = f"results/{NAME}/models.parquet"
REPORT_FILES = [f"reports/{NAME}/transfer_success.png", f"reports/{NAME}/accuracy_vs_size.png",
                f"reports/{NAME}/query_success.png", f"reports/{NAME}/summary.md"]


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    arch=_alternatives(ARCHS),
    compression=_alternatives(COMPRESSIONS),
    attack=_alternatives(ATTACKS),
    role=_alternatives([*SOURCE_ROLES, NO_SOURCE]),
    seed=r"\d+",


# Which roles an attack runs with, which source ids each role attacks from, and where each
# source's weights live. Attacks that take no source (RGF, Square) run once, as role "none".
def attack_roles(attack):
    params = config["attacks"][attack]
    if not ATTACK_METHODS.get(params["method"]).needs_source:
        return [NO_SOURCE]
    return params.get("roles", ROLES)


def role_sources(arch, attack, role):
    return {
        "sibling": lambda: config["attacks"][attack].get("siblings", COMPRESSIONS),
        "independent": lambda: [f"seed{SEED_INDEPENDENT}"],
        "whitebox": lambda: [f"seed{SEED_FULL}"],
        "cross-arch": lambda: [config["cross_arch"][arch]],
        NO_SOURCE: lambda: [NO_SOURCE],
    }[role]()


ROLE_MODEL = {
    "sibling": lambda arch, source: SIBLING.format(arch=arch, compression=source),
    "independent": lambda arch, source: FULL.format(arch=arch, seed=source[len("seed"):]),
    "whitebox": lambda arch, source: FULL.format(arch=arch, seed=source[len("seed"):]),
    "cross-arch": lambda arch, source: FULL.format(arch=source, seed=SEED_FULL),
    NO_SOURCE: lambda arch, source: [],
}


def source_model(wildcards):
    return ROLE_MODEL[wildcards.role](wildcards.arch, wildcards.source)


def train_params(arch):
    """train.* with this architecture's own epochs/lr overrides applied."""
    knobs = config["archs"][arch]
    return {**config["train"], **{k: knobs[k] for k in ("epochs", "lr") if k in knobs}}


def sidecar(path):
    return path.replace(".safetensors", ".json")


ATTACK_TABLES = [
    ATTACK.format(arch=a, attack=k, role=r, source=s)
    for a in ARCHS
    for k in ATTACKS
    for r in attack_roles(k)
    for s in role_sources(a, k, r)
]
MODEL_SIDECARS = {
    "full": [sidecar(FULL.format(arch=a, seed=SEED_FULL)) for a in ARCHS],
    "independent": [sidecar(FULL.format(arch=a, seed=SEED_INDEPENDENT)) for a in ARCHS],
    "sibling": [sidecar(SIBLING.format(arch=a, compression=c)) for a in ARCHS for c in COMPRESSIONS],
}
