"""Config validation: the JSON schema for shape and types, the registries for names.

Runs in ``common.smk`` before any job starts, so a bad config fails at once, names the
offending key and the allowed values, and leaves nothing half-written.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from siblings.attacks import ATTACKS
from siblings.compress import COMPRESSIONS
from siblings.data import DATASETS
from siblings.defend import DEFENSES, variant_name, variant_settings
from siblings.models import ARCHITECTURES
from siblings.registry import UnknownNameError
from siblings.similarity import SIMILARITIES
from siblings.roles import SOURCE_ROLES


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and what it accepts."""


def _key(path: list) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _fill_defaults(schema: dict, obj: object) -> None:
    """Writes schema ``default`` values into ``obj`` in place, recursing into nested objects."""
    if not isinstance(obj, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in obj and "default" in sub:
            obj[name] = copy.deepcopy(sub["default"])
        if name in obj:
            _fill_defaults(sub, obj[name])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name, value in obj.items():
            if name not in schema.get("properties", {}):
                _fill_defaults(extra, value)


def _check_schema(config: dict, schema: dict) -> None:
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config),
                    key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"config key '{_key(list(e.absolute_path))}': {e.message}" for e in errors]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))


def _check_names(config: dict) -> None:
    """Every name the config uses must be registered; the error lists the allowed ones."""
    problems = []

    def need(key: str, name: str, allowed: list[str], kind: str) -> None:
        if name not in allowed:
            problems.append(f"config key '{key}': unknown {kind} '{name}'; "
                            f"allowed: {', '.join(allowed)}")

    def need_arch(key: str, arch: str) -> bool:
        """An architecture is a registered name or a family's (``timm/<model>``)."""
        try:
            ARCHITECTURES.get(arch)
        except UnknownNameError as err:
            problems.append(f"config key '{key}': {err}")
            return False
        return True

    need("dataset.name", config["dataset"]["name"], DATASETS.names(), "dataset")
    for arch, knobs in config["archs"].items():
        why = need_arch(f"archs.{arch}", arch) and ARCHITECTURES.get(arch).why_not("width")
        if why and knobs["width"] != 1.0:
            problems.append(f"config key 'archs.{arch}.width': {arch} has no width knob "
                            f"({why}); use 1.0")
    for cid, params in config["compressions"].items():
        need(f"compressions.{cid}.method", params["method"], COMPRESSIONS.names(),
             "compression method")
        student = params.get("student")
        if student is not None and student != "self":
            need_arch(f"compressions.{cid}.student", student)
        calib = params.get("calib_size")
        if calib is not None and calib > config["dataset"]["calib_size"]:
            problems.append(f"config key 'compressions.{cid}.calib_size': {calib} exceeds "
                            f"dataset.calib_size ({config['dataset']['calib_size']})")
    for aid, params in config["attacks"].items():
        problems.extend(_attack_problems(config, aid, params))
    for did, params in config["defenses"].items():
        problems.extend(_defense_problems(config, did, params))
    problems += _variant_problems(config["defenses"])
    for cid in config["extract"].get("siblings", []):
        need("extract.siblings", cid, list(config["compressions"]), "compression id")
    for metric in config["similarity"]["metrics"]:
        need("similarity.metrics", metric, SIMILARITIES.names(), "similarity metric")
    for role in config["source_roles"]:
        need("source_roles", role, list(SOURCE_ROLES), "source role")
    for target, source in config["cross_arch"].items():
        need(f"cross_arch.{target}", target, list(config["archs"]), "target architecture of this run")
        need(f"cross_arch.{target}", source, [a for a in config["archs"] if a != target],
             "cross-arch source (another architecture of this run)")
    if config["seeds"]["full"] == config["seeds"]["independent"]:
        problems.append("config keys 'seeds.full' and 'seeds.independent' must differ: "
                        "the independent model is the attacker's own, trained apart")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _not_in(key: str, names: list[str], allowed: list[str], what: str) -> list[str]:
    """One problem per name of ``names`` (config key ``key``) that ``allowed`` lacks."""
    listed = ", ".join(allowed) or "none configured"
    return [f"config key '{key}': '{n}' is not {what}; allowed: {listed}"
            for n in names if n not in allowed]


def _attack_problems(config: dict, aid: str, params: dict) -> list[str]:
    """What is wrong with attack ``aid``: its method, roles, siblings, budget and baseline."""
    key = f"attacks.{aid}"
    if params["method"] not in ATTACKS.names():
        return [f"config key '{key}.method': unknown attack method '{params['method']}'; "
                f"allowed: {', '.join(ATTACKS.names())}"]
    attack = ATTACKS.get(params["method"])
    problems = []
    for role in params.get("roles", []):
        if role not in SOURCE_ROLES:
            problems.append(f"config key '{key}.roles': unknown source role '{role}'; "
                            f"allowed: {', '.join(SOURCE_ROLES)}")
    problems += _not_in(f"{key}.siblings", params.get("siblings", []), list(config["compressions"]),
                        "a compression id")
    roles = params.get("roles", config["source_roles"]) if attack.needs_source else []
    missing = [a for a in config["archs"] if a not in config["cross_arch"]]
    if "cross-arch" in roles and missing:
        problems.append(f"config key 'cross_arch': the cross-arch role of '{aid}' needs a "
                        f"source for {', '.join(missing)}")
    if attack.is_query and "queries" not in params:
        problems.append(f"config key '{key}.queries': a query attack needs a query budget "
                        "(a positive integer)")
    problems += _not_in(f"{key}.defenses", params.get("defenses", []), list(config["defenses"]),
                        "a defense id")
    baseline = params.get("baseline")
    if baseline is not None and (baseline not in config["attacks"] or ATTACKS.get(
            config["attacks"][baseline]["method"]).needs_source):
        allowed = [a for a, p in config["attacks"].items()
                   if p["method"] in ATTACKS.names() and not ATTACKS.get(p["method"]).needs_source]
        problems.append(f"config key '{key}.baseline': '{baseline}' is not a no-prior attack "
                        f"of this config; allowed: {', '.join(allowed) or 'none configured'}")
    return problems


# A control must share these with the defense it controls, so only lam (and the penalty's
# form, points and smoothness) differ between them.
SCHEDULE_KEYS = ("method", "epochs", "lr", "batch_size")


def _defense_problems(config: dict, did: str, params: dict) -> list[str]:
    """What is wrong with defense ``did``: its method, the siblings and architectures it
    defends, and its lam = 0 control."""
    key = f"defenses.{did}"
    problems = []
    if params["method"] not in DEFENSES.names():
        problems.append(f"config key '{key}.method': unknown defense method "
                        f"'{params['method']}'; allowed: {', '.join(DEFENSES.names())}")
    problems += _not_in(f"{key}.siblings", params["siblings"], list(config["compressions"]),
                        "a compression of this run")
    problems += _not_in(f"{key}.archs", params.get("archs", []), list(config["archs"]),
                        "an architecture of this run")
    if params["lam"] == 0:
        return problems
    control = config["defenses"].get(params.get("control", ""))
    if control is None:
        zeros = [d for d, p in config["defenses"].items() if p["lam"] == 0]
        return problems + [f"config key '{key}.control': a defense with lam > 0 needs a lam = 0 "
                           f"control with the same schedule (fine-tuning alone changes accuracy "
                           f"and transfer); allowed: {', '.join(zeros) or 'none configured'}"]
    differ = [k for k in SCHEDULE_KEYS if control[k] != params[k]]
    uncovered = [c for c in params["siblings"] if c not in control["siblings"]]
    archs = params.get("archs", list(config["archs"]))
    uncovered += [a for a in archs if a not in control.get("archs", list(config["archs"]))]
    if control["lam"] != 0 or differ or uncovered:
        problems.append(f"config key '{key}.control': '{params['control']}' must have lam 0, "
                        f"the same {', '.join(SCHEDULE_KEYS)} and cover every sibling and "
                        f"architecture it controls (lam {control['lam']}, differs in: "
                        f"{', '.join(differ) or 'nothing'}, misses: {', '.join(uncovered) or 'nothing'})")
    return problems


def _variant_problems(defenses: dict) -> list[str]:
    """Defenses of one variant (lam > 0) must differ only in lam and where they apply: lam
    is chosen among them, so any other difference would be chosen by the same rule."""
    first: dict[str, tuple[str, dict]] = {}
    problems = []
    for did, params in defenses.items():
        if params["lam"] == 0:
            continue
        name, settings = variant_name(params), variant_settings(params)
        seen, reference = first.setdefault(name, (did, settings))
        differ = sorted(k for k in settings.keys() | reference.keys()
                        if settings.get(k) != reference.get(k))
        if differ:
            problems.append(f"config key 'defenses.{did}': variant '{name}' is also "
                            f"'{seen}', which differs in: {', '.join(differ)}; give one a "
                            "`variant` name of its own")
    return problems


def _canonical(obj: object) -> object:
    """Dicts with sorted keys, recursively: Snakemake compares params by repr, so key order
    in a config file must not decide whether jobs rerun."""
    if isinstance(obj, dict):
        return {k: _canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    return obj


def validate(config: dict, schema_path: str | Path) -> dict:
    """Returns ``config`` checked, completed with the schema's defaults and key-sorted.

    Raises ConfigError naming every offending key.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    config = copy.deepcopy(config)
    _check_schema(config, schema)
    _fill_defaults(schema, config)
    _check_names(config)
    return _canonical(config)
