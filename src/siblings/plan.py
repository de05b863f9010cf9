"""The plan of one config: which jobs run, from which sources, on which files.

``Plan(config)`` validates the config and answers everything the workflow's rules ask
before any job: the artifact paths (:class:`Paths`), the sources each attack role runs
from, the (full model, source) pairs each similarity job compares, which compressions and
defenses apply to which architecture (``support``), each job's code fingerprint, and the
whole list of jobs (:meth:`Plan.jobs`). The ``.smk`` files only wire these to rules, so the
plan is tested here, as Python, without running Snakemake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from siblings.attacks import ATTACKS
from siblings.checkpoints import Start
from siblings.config import validate
from siblings.fingerprint import fingerprints
from siblings.figures import FIGURES
from siblings.provenance import config_hash
from siblings.roles import ADAPTIVE_ROLES, NO_SOURCE, SOURCE_ROLES, defended_id
from siblings.support import Support


@dataclass(frozen=True)
class Paths:
    """Where one run's artifacts live. The model and table patterns hold Snakemake wildcards
    (``{arch}``); :meth:`Plan.source_path` and friends fill them. An extracted surrogate's
    ``{source}`` is "<compression>+<defense>" (of a defended sibling) or "<compression>"
    (of the undefended sibling, the adaptive attacker's reference)."""

    name: str
    root: str
    results: str
    logs: str
    benchmarks: str  # per job: wall time, memory (Snakemake's benchmark:)
    data: str
    full: str
    sibling: str
    defended: str
    extracted: str
    attack: str
    similarity: str

    @classmethod
    def of(cls, name: str, dataset: str) -> "Paths":
        root = f"results/{name}"
        results = f"{root}/{dataset}"
        models = f"{results}/models/{{arch}}"
        return cls(name, root, results, f"{root}/logs", f"{root}/benchmarks",
                   f"{results}/data.safetensors", f"{models}/full/seed{{seed}}.safetensors",
                   f"{models}/sibling/{{compression}}.safetensors",
                   f"{models}/defended/{{compression}}+{{defense}}.safetensors",
                   f"{models}/extracted/{{source}}.safetensors",
                   f"{results}/attacks/{{arch}}/{{attack}}/{{role}}.parquet",
                   f"{results}/similarity/{{arch}}.parquet")

    def table(self, name: str) -> str:
        """One of the run's aggregated tables: ``benchmark``, ``models``, ``queries`` ..."""
        return f"{self.root}/{name}.parquet"

    def report(self, name: str) -> str:
        return f"reports/{self.name}/{name}"


def sidecar(path: str) -> str:
    """The JSON card beside a safetensors artifact."""
    return path.replace(".safetensors", ".json")


def merged(*uses: dict[str, set[str]]) -> dict[str, list[str]]:
    """The union of several ``{kind: names}`` maps, names sorted."""
    out: dict[str, set[str]] = {}
    for u in uses:
        for kind, names in u.items():
            out.setdefault(kind, set()).update(names)
    return {kind: sorted(names) for kind, names in out.items()}


@dataclass(frozen=True)
class Job:
    """One job of the plan: its rule and the output that names it."""

    rule: str
    output: str


class Plan:
    """The validated config and every decision taken from it before any job."""

    def __init__(self, config: dict) -> None:
        self.config = validate(config)
        self.support = Support(self.config)
        self.paths = Paths.of(self.config["name"], self.config["dataset"]["name"])
        self.archs = list(self.config["archs"])
        self.compressions = list(self.config["compressions"])
        self.attacks = list(self.config["attacks"])
        self.defenses = list(self.config["defenses"])
        self.seed_full = self.config["seeds"]["full"]
        self.seed_independent = self.config["seeds"]["independent"]

    # --- which sources each attack runs from -------------------------------------------

    def attack_roles(self, attack: str) -> list[str]:
        """The roles an attack runs with; attacks that take no source (RGF, Square) run
        once, as role "none"."""
        params = self.config["attacks"][attack]
        if not ATTACKS.get(params["method"]).needs_source:
            return [NO_SOURCE]
        return params.get("roles", self.config["source_roles"])

    def compressions_of(self, arch: str, chosen: list[str] | None = None) -> list[str]:
        """The compression ids (of ``chosen``, default all) planned for ``arch``."""
        return [c for c in chosen or self.compressions
                if self.support.ok(arch, "compression", c)]

    def defended_siblings(self, arch: str, siblings: list[str] | None = None,
                          defenses: list[str] | None = None, adaptive: bool = False,
                          forms: tuple[str, ...] | None = None) -> list[str]:
        """Ids "<compression>+<defense>" of this architecture's defended siblings, optionally
        only of some siblings, defenses and penalty forms; ``adaptive``: only those the
        adaptive attackers target (never a lam = 0 control: nothing to adapt to)."""
        found = []
        for d in defenses or self.defenses:
            params = self.config["defenses"][d]
            for c in params["siblings"]:
                if (arch in params.get("archs", self.archs)
                        and self.support.defended_ok(arch, c, d)
                        and (siblings is None or c in siblings)
                        and (forms is None or params["form"] in forms)
                        and not (adaptive and (params["lam"] == 0 or not params["adaptive"]))):
                    found.append(defended_id(c, d))
        return found

    def adaptive_sources(self, arch: str, siblings: list[str] | None,
                         defenses: list[str] | None, role: str) -> list[str]:
        """What an adaptive attacker attacks from: the defended siblings it targets, then,
        as its reference, each of their undefended siblings. Reversal only means something
        against the cosine penalty (|c| and c^2 do not reward a gradient pointing away)."""
        forms = ("cosine",) if role == "reversed" else None
        targets = self.defended_siblings(arch, siblings, defenses, adaptive=True, forms=forms)
        if role == "extracted":
            extracted = self.config["extract"].get("siblings", self.compressions)
            targets = [s for s in targets if s.split("+")[0] in extracted]
        return targets + sorted({s.split("+")[0] for s in targets})

    def role_sources(self, arch: str, attack: str, role: str) -> list[str]:
        """The source ids one attack of one role runs from against ``arch``'s full model."""
        params = self.config["attacks"][attack]
        siblings, defenses = params.get("siblings"), params.get("defenses")
        if role == "sibling":
            return self.compressions_of(arch, siblings)
        if role in ("independent", "whitebox"):
            return [f"seed{self.seed_independent if role == 'independent' else self.seed_full}"]
        if role == "cross-arch":
            return [self.config["cross_arch"][arch]]
        if role == "defended":
            return self.defended_siblings(arch, siblings, defenses)
        if role in ADAPTIVE_ROLES:
            return self.adaptive_sources(arch, siblings, defenses, role)
        return [NO_SOURCE]

    # --- where each model lives ----------------------------------------------------------

    def full_path(self, arch: str, seed: int) -> str:
        return self.paths.full.format(arch=arch, seed=seed)

    def victim_path(self, arch: str, source: str) -> str:
        """The weights of a defended sibling "<compression>+<defense>", or of the sibling as
        published for a bare "<compression>"."""
        if "+" not in source:
            return self.paths.sibling.format(arch=arch, compression=source)
        compression, defense = source.split("+")
        return self.paths.defended.format(arch=arch, compression=compression, defense=defense)

    def source_path(self, role: str, arch: str, source: str) -> str | None:
        """The weights a role's source loads (None: an attack with no source)."""
        if role == "sibling":
            return self.paths.sibling.format(arch=arch, compression=source)
        if role in ("independent", "whitebox"):
            return self.full_path(arch, int(source.removeprefix("seed")))
        if role == "cross-arch":
            return self.full_path(source, self.seed_full)
        if role == "extracted":
            return self.paths.extracted.format(arch=arch, source=source)
        if role in ("defended", "reversed", "averaged"):
            return self.victim_path(arch, source)
        return None

    def attack_sources(self, arch: str, attack: str, role: str) -> list[dict]:
        """Every source one attack job runs from: id, model path (None: no prior) and the
        hash of what its rows depend on."""
        return [{"source_id": s, "path": self.source_path(role, arch, s),
                 "job_hash": config_hash([self.config["attacks"][attack], role, s])}
                for s in self.role_sources(arch, attack, role)]

    def source_models(self, arch: str, attack: str, role: str) -> list[str]:
        return [s["path"] for s in self.attack_sources(arch, attack, role) if s["path"]]

    def similarity_sources(self, arch: str) -> list[dict]:
        """Every (role, source) of ``arch`` that some attack uses: the pairs its similarity
        job compares with the full model."""
        pairs = {(r, s) for k in self.attacks for r in self.attack_roles(k) if r != NO_SOURCE
                 for s in self.role_sources(arch, k, r)}
        return [{"role": r, "source_id": s, "path": self.source_path(r, arch, s)}
                for r, s in sorted(pairs)]

    def extracted_sources(self, arch: str) -> list[str]:
        return sorted({s for k in self.attacks if "extracted" in self.attack_roles(k)
                       for s in self.role_sources(arch, k, "extracted")})

    # --- training ---------------------------------------------------------------------

    def train_params(self, arch: str) -> dict:
        """train.* with this architecture's own epochs/lr overrides applied."""
        knobs = self.config["archs"][arch]
        return {**self.config["train"], **{k: knobs[k] for k in ("epochs", "lr") if k in knobs}}

    def start_of(self, arch: str, seed: int) -> str | None:
        """The starting weights (archs.<arch>.weights) of the full or independent model."""
        role = "full" if int(seed) == self.seed_full else "independent"
        return self.config["archs"][arch].get("weights", {}).get(role)

    def start_files(self, arch: str, seed: int) -> list[str]:
        """A starting checkpoint is an input of its training job: replacing it retrains."""
        start = Start.parse(self.start_of(arch, seed))
        return [str(start.path)] if start.path else []

    # --- the jobs and their outputs ---------------------------------------------------------

    @cached_property
    def attack_tables(self) -> list[str]:
        return [self.paths.attack.format(arch=a, attack=k, role=r) for a in self.archs
                for k in self.attacks for r in self.attack_roles(k)
                if self.role_sources(a, k, r)]

    @cached_property
    def similarity_tables(self) -> list[str]:
        return [self.paths.similarity.format(arch=a) for a in self.archs]

    @cached_property
    def model_sidecars(self) -> dict[str, list[str]]:
        """The card of every model the run makes, by role: what the aggregate reads."""
        return {
            "full": [sidecar(self.full_path(a, self.seed_full)) for a in self.archs],
            "independent": [sidecar(self.full_path(a, self.seed_independent))
                            for a in self.archs],
            "sibling": [sidecar(self.source_path("sibling", a, c)) for a in self.archs
                        for c in self.compressions_of(a)],
            "defended": [sidecar(self.victim_path(a, s)) for a in self.archs
                         for s in self.defended_siblings(a)],
            "extracted": [sidecar(self.source_path("extracted", a, s)) for a in self.archs
                          for s in self.extracted_sources(a)],
        }

    @cached_property
    def report_files(self) -> list[str]:
        return [self.paths.report(f"{name}.{kind}") for name in FIGURES
                for kind in ("png", "pdf")] + [self.paths.report("summary.md")]

    def jobs(self) -> list[Job]:
        """Every job a run from empty executes, one per output, in stage order."""
        cards = self.model_sidecars
        return ([Job("data", self.paths.data)]
                + [Job("train", p) for p in cards["full"] + cards["independent"]]
                + [Job("compress", p) for p in cards["sibling"]]
                + [Job("defend", p) for p in cards["defended"]]
                + [Job("extract", p) for p in cards["extracted"]]
                + [Job("similarity", p) for p in self.similarity_tables]
                + [Job("attack", p) for p in self.attack_tables]
                + [Job("aggregate", self.paths.table("benchmark")),
                   Job("report", self.paths.report("summary.md")), Job("all", "")])

    # --- what each job's code fingerprint covers --------------------------------------

    def model_uses(self, arch: str, role: str = "whitebox",
                   source: str | None = None) -> dict[str, set[str]]:
        """What rebuilding a model runs: its architecture's factory, and for a sibling its
        compression (the student's architecture for distillation) and defense."""
        if role == "cross-arch":
            return {"architecture": {source}}
        uses = {"architecture": {arch}}
        if source is None or source == NO_SOURCE or source.startswith("seed"):
            return uses
        compression, _, defense = source.partition("+")
        params = self.config["compressions"][compression]
        uses["compression"] = {params["method"]}
        if params.get("student", "self") != "self":
            uses["architecture"].add(params["student"])
        if defense:
            uses["defense"] = {self.config["defenses"][defense]["method"]}
        return uses

    @cached_property
    def _fingerprints(self):
        return fingerprints()

    def code(self, stage: str, *uses: dict[str, set[str]]) -> str:
        """The code fingerprint of a ``stage`` job using the merged ``uses``."""
        return self._fingerprints.code_hash(stage, **merged(*uses))

    def attack_code(self, arch: str, attack: str, role: str) -> str:
        method = self.config["attacks"][attack]["method"]
        return self.code("attack", {"attack": {method}}, self.model_uses(arch),
                         *(self.model_uses(arch, role, s)
                           for s in self.role_sources(arch, attack, role)))

    def similarity_code(self, arch: str) -> str:
        return self.code("similarity", self.model_uses(arch),
                         *(self.model_uses(arch, s["role"], s["source_id"])
                           for s in self.similarity_sources(arch)))

    # --- Snakemake wildcards ------------------------------------------------------------

    def wildcard_constraints(self) -> dict[str, str]:
        """What each wildcard may match: exactly this run's names."""
        def alternatives(names: list[str]) -> str:
            return "|".join(re.escape(n) for n in names) if names else "$^"

        compressions, defenses = alternatives(self.compressions), alternatives(self.defenses)
        return {"arch": alternatives(self.archs), "compression": compressions,
                "attack": alternatives(self.attacks), "defense": defenses,
                "role": alternatives([*SOURCE_ROLES, NO_SOURCE]),
                "source": rf"({compressions})(\+({defenses}))?", "seed": r"\d+"}
