# Config validation, artifact paths, target lists and code fingerprints. No computation here.
# The planner and the jobs import the same installed `siblings` package (`make setup`
# installs this checkout in editable mode), so the code hashes describe the code that runs.
import os
import re
import sys
from pathlib import Path

from siblings.roles import ADAPTIVE_ROLES, NO_SOURCE, SOURCE_ROLES, defended_id
from siblings.artifacts import RERUN_VARIABLE
from siblings.attacks import ATTACKS as ATTACK_METHODS
from siblings.checkpoints import Start
from siblings.config import validate
from siblings.device import check_available
from siblings.inputs import check_inputs
from siblings.figures import FIGURES
from siblings.fingerprint import fingerprints
from siblings.provenance import config_hash
from siblings.support import Support

_valid = validate(config, Path(workflow.basedir) / "schemas/config.schema.yaml")
config.clear()
config.update(_valid)
NAME = config["name"]
DATASET = config["dataset"]["name"]
ARCHS = list(config["archs"])
COMPRESSIONS = list(config["compressions"])
ATTACKS = list(config["attacks"])
DEFENSES = list(config["defenses"])
ROLES = config["source_roles"]
# Pairs an architecture's declared capabilities rule out are left out of the plan, never
# jobs that fail; the report lists them (support.parquet).
SUPPORT = Support(config)
for _verdict in SUPPORT.left_out():
    print(
        f"left out of the plan: {_verdict.arch} x {_verdict.kind} {_verdict.component}: "
        f"{_verdict.reason}",
        file=sys.stderr,
    )
SEED_FULL = config["seeds"]["full"]
SEED_INDEPENDENT = config["seeds"]["independent"]

# The command a job names when it finds an input corrupted: it regenerates the file. `make
# bench` and `siblings.run` set it to themselves; plain Snakemake gets `make bench`'s form.
os.environ.setdefault(
    RERUN_VARIABLE,
    "make bench"
    + "".join(f" CONFIG={os.path.relpath(f)}" for f in workflow.overwrite_configfiles or []),
)

# Each job's code fingerprint: its stage's plumbing and the registered entries it runs
# (siblings/fingerprint.py), from the source tree as it is at plan time.
code_hash = fingerprints().code_hash

# Used only under `--sdm conda` (clusters); locally jobs run in the invoking venv.
CONDA_ENV = "../envs/cuda.yaml" if config["device"] == "cuda" else "../envs/cpu.yaml"
# GPUs each compute job asks a cluster for (locally only a counter).
GPUS = 1 if config["device"] == "cuda" else 0

RESULTS = f"results/{NAME}/{DATASET}"
LOGS = f"results/{NAME}/logs"
BENCHMARKS = f"results/{NAME}/benchmarks"  # per job: wall time, memory (Snakemake's benchmark:)
DATA = f"{RESULTS}/data.safetensors"
FULL = f"{RESULTS}/models/{{arch}}/full/seed{{seed}}.safetensors"
SIBLING = f"{RESULTS}/models/{{arch}}/sibling/{{compression}}.safetensors"
DEFENDED = f"{RESULTS}/models/{{arch}}/defended/{{compression}}+{{defense}}.safetensors"
# {source}: "<compression>+<defense>" (a defended sibling) or "<compression>" (the
# undefended sibling, the adaptive attacker's reference)
EXTRACTED = f"{RESULTS}/models/{{arch}}/extracted/{{source}}.safetensors"
ATTACK = f"{RESULTS}/attacks/{{arch}}/{{attack}}/{{role}}.parquet"
SIMILARITY = f"{RESULTS}/similarity/{{arch}}.parquet"
BENCHMARK = f"results/{NAME}/benchmark.parquet"
MODELS = f"results/{NAME}/models.parquet"
SIMILARITY_ALL = f"results/{NAME}/similarity.parquet"
CORRELATIONS = f"results/{NAME}/correlations.parquet"
QUERY_READINGS = f"results/{NAME}/queries.parquet"
SUPPORT_TABLE = f"results/{NAME}/support.parquet"
REPORT_FILES = [f"reports/{NAME}/{name}.{kind}" for name in FIGURES for kind in ("png", "pdf")]
REPORT_FILES += [f"reports/{NAME}/summary.md"]


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    arch=_alternatives(ARCHS),
    compression=_alternatives(COMPRESSIONS),
    attack=_alternatives(ATTACKS),
    defense=_alternatives(DEFENSES) if DEFENSES else "$^",
    role=_alternatives([*SOURCE_ROLES, NO_SOURCE]),
    source=rf"({_alternatives(COMPRESSIONS)})(\+({_alternatives(DEFENSES) if DEFENSES else '$^'}))?",
    seed=r"\d+",


# Which roles an attack runs with, which source ids each role attacks from, and where each
# source's weights live. Attacks that take no source (RGF, Square) run once, as role "none".
def attack_roles(attack):
    params = config["attacks"][attack]
    if not ATTACK_METHODS.get(params["method"]).needs_source:
        return [NO_SOURCE]
    return params.get("roles", ROLES)


def defended_siblings(arch, siblings=None, defenses=None, adaptive=False, forms=None):
    """Ids "<compression>+<defense>" of this architecture's defended siblings, optionally
    only of some siblings, defenses and penalty forms; ``adaptive``: only those the adaptive
    attackers target (never a lam = 0 control: there is nothing to adapt to)."""
    return [
        defended_id(c, d)
        for d in defenses or DEFENSES
        for c in config["defenses"][d]["siblings"]
        if arch in config["defenses"][d].get("archs", ARCHS)
        and SUPPORT.defended_ok(arch, c, d)
        and (siblings is None or c in siblings)
        and (forms is None or config["defenses"][d]["form"] in forms)
        and not (
            adaptive
            and (config["defenses"][d]["lam"] == 0 or not config["defenses"][d]["adaptive"])
        )
    ]


def adaptive_sources(arch, chosen, role):
    """What an adaptive attacker attacks from: the defended siblings it targets, then, as
    its reference, each of their undefended siblings. Reversal only means something
    against the cosine penalty (|c| and c^2 do not reward a gradient pointing away)."""
    forms = ("cosine",) if role == "reversed" else None
    targets = defended_siblings(arch, *chosen, adaptive=True, forms=forms)
    if role == "extracted":
        extracted = config["extract"].get("siblings", COMPRESSIONS)
        targets = [s for s in targets if s.split("+")[0] in extracted]
    return targets + sorted({s.split("+")[0] for s in targets})


def compressions_of(arch, chosen=None):
    """The compression ids (of ``chosen``, default all) planned for ``arch``."""
    return [c for c in chosen or COMPRESSIONS if SUPPORT.ok(arch, "compression", c)]


def role_sources(arch, attack, role):
    params = config["attacks"][attack] if attack else {}
    chosen = params.get("siblings"), params.get("defenses")
    return {
        "sibling": lambda: compressions_of(arch, chosen[0]),
        "independent": lambda: [f"seed{SEED_INDEPENDENT}"],
        "whitebox": lambda: [f"seed{SEED_FULL}"],
        "cross-arch": lambda: [config["cross_arch"][arch]],
        "defended": lambda: defended_siblings(arch, *chosen),
        **{
            role: (lambda role=role: adaptive_sources(arch, chosen, role))
            for role in ADAPTIVE_ROLES
        },
        NO_SOURCE: lambda: [NO_SOURCE],
    }[role]()


def victim_path(arch, source):
    """The weights of a defended sibling "<compression>+<defense>", or of the sibling as
    published for a bare "<compression>"."""
    if "+" not in source:
        return SIBLING.format(arch=arch, compression=source)
    compression, defense = source.split("+")
    return DEFENDED.format(arch=arch, compression=compression, defense=defense)


ROLE_MODEL = {
    "sibling": lambda arch, source: SIBLING.format(arch=arch, compression=source),
    "independent": lambda arch, source: FULL.format(arch=arch, seed=source[len("seed") :]),
    "whitebox": lambda arch, source: FULL.format(arch=arch, seed=source[len("seed") :]),
    "cross-arch": lambda arch, source: FULL.format(arch=source, seed=SEED_FULL),
    "defended": victim_path,
    "reversed": victim_path,
    "averaged": victim_path,
    "extracted": lambda arch, source: EXTRACTED.format(arch=arch, source=source),
    NO_SOURCE: lambda arch, source: [],
}


def attack_sources(wildcards):
    """Every source one attack job runs from: id, model path (None: no prior) and the hash
    of what its rows depend on."""
    return [
        {
            "source_id": s,
            "path": ROLE_MODEL[wildcards.role](wildcards.arch, s) or None,
            "job_hash": config_hash([config["attacks"][wildcards.attack], wildcards.role, s]),
        }
        for s in role_sources(wildcards.arch, wildcards.attack, wildcards.role)
    ]


def source_models(wildcards):
    return [s["path"] for s in attack_sources(wildcards) if s["path"]]


def start_of(arch, seed):
    """The starting weights (archs.<arch>.weights) of the full or the independent model."""
    role = "full" if int(seed) == SEED_FULL else "independent"
    return config["archs"][arch].get("weights", {}).get(role)


def start_files(wildcards):
    """A starting checkpoint is an input of its training job: replacing it retrains."""
    start = Start.parse(start_of(wildcards.arch, wildcards.seed))
    return [str(start.path)] if start.path else []


def train_params(arch):
    """train.* with this architecture's own epochs/lr overrides applied."""
    knobs = config["archs"][arch]
    return {**config["train"], **{k: knobs[k] for k in ("epochs", "lr") if k in knobs}}


# The registered entries each job runs, for its code fingerprint (siblings/fingerprint.py):
# a job reruns when its stage's plumbing or one of these changes, not when a neighbour does.
def model_uses(arch, role="whitebox", source=None):
    """What rebuilding a model runs: its architecture's factory, and for a sibling its
    compression (the student's architecture for distillation) and defense."""
    if role == "cross-arch":
        return {"architecture": {source}}
    uses = {"architecture": {arch}}
    if source is None or source == NO_SOURCE or source.startswith("seed"):
        return uses
    compression, _, defense = source.partition("+")
    params = config["compressions"][compression]
    uses["compression"] = {params["method"]}
    if params.get("student", "self") != "self":
        uses["architecture"].add(params["student"])
    if defense:
        uses["defense"] = {config["defenses"][defense]["method"]}
    return uses


def merged(*uses):
    out = {}
    for u in uses:
        for kind, names in u.items():
            out.setdefault(kind, set()).update(names)
    return {kind: sorted(names) for kind, names in out.items()}


def attack_code(wildcards):
    params = config["attacks"][wildcards.attack]
    return code_hash(
        "attack",
        **merged(
            {"attack": {params["method"]}},
            model_uses(wildcards.arch),
            *(
                model_uses(wildcards.arch, wildcards.role, s)
                for s in role_sources(wildcards.arch, wildcards.attack, wildcards.role)
            ),
        ),
    )


def similarity_code(wildcards):
    return code_hash(
        "similarity",
        **merged(
            model_uses(wildcards.arch),
            *(
                model_uses(wildcards.arch, s["role"], s["source_id"])
                for s in similarity_sources(wildcards.arch)
            ),
        ),
    )


def sidecar(path):
    return path.replace(".safetensors", ".json")


# Every (role, source) of an architecture that some attack uses: the pairs its similarity
# job compares with the full model.
def similarity_sources(arch):
    pairs = {
        (r, s)
        for k in ATTACKS
        for r in attack_roles(k)
        if r != NO_SOURCE
        for s in role_sources(arch, k, r)
    }
    return [{"role": r, "source_id": s, "path": ROLE_MODEL[r](arch, s)} for r, s in sorted(pairs)]


ATTACK_TABLES = [
    ATTACK.format(arch=a, attack=k, role=r)
    for a in ARCHS
    for k in ATTACKS
    for r in attack_roles(k)
    if role_sources(a, k, r)
]
MODEL_SIDECARS = {
    "full": [sidecar(FULL.format(arch=a, seed=SEED_FULL)) for a in ARCHS],
    "independent": [sidecar(FULL.format(arch=a, seed=SEED_INDEPENDENT)) for a in ARCHS],
    "sibling": [
        sidecar(SIBLING.format(arch=a, compression=c)) for a in ARCHS for c in compressions_of(a)
    ],
    "defended": [
        sidecar(ROLE_MODEL["defended"](a, s)) for a in ARCHS for s in defended_siblings(a)
    ],
    "extracted": [
        sidecar(ROLE_MODEL["extracted"](a, s))
        for a in ARCHS
        for s in sorted(
            {
                s
                for k in ATTACKS
                if "extracted" in attack_roles(k)
                for s in role_sources(a, k, "extracted")
            }
        )
    ],
}
SIMILARITY_TABLES = [SIMILARITY.format(arch=a) for a in ARCHS]


# Once the executor is known and before any job (a dry run plans anywhere, such as a login
# node that has neither the data nor a GPU):
# - the dataset's root and every starting checkpoint exist and fit, checked once, by the
#   planner;
# - run locally, the jobs compute on this machine, so a device it lacks stops the run here;
#   a cluster's jobs check on their own nodes.
onstart:
    check_inputs(config)
    if workflow.local_exec:
        check_available(config["device"])
