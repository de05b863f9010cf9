"""Config validation, from the components' knob declarations (``siblings.knobs``).

Every top-level key is a :class:`Section`: one value, one object of declared knobs, or a
map of ids to entries whose knobs depend on the entry (an attack's on its ``method``). The
validator checks each entry against the knobs its component declares (no unknown or
inapplicable key, types and ranges, required keys), fills their defaults, then checks the
names and cross-references between sections. It runs before any job (``siblings.plan``),
so a bad config fails at once, names every offending key and the allowed values, and
leaves nothing half-written. The JSON schema export and config/README.md's key reference
are generated from the same sections (``siblings.config_doc``).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Callable

import jsonschema

import siblings.extensions  # noqa: F401  (registers the user's own components)
from siblings.attacks import ATTACKS
from siblings.attacks.batch import entry_knobs as attack_knobs
from siblings.compress import COMPRESSIONS
from siblings.data import DATASET_KNOBS, DATASETS
from siblings.defend import DEFENSES, ENTRY_KNOBS as DEFENSE_KNOBS, variant_name, variant_settings
from siblings.device import DEVICES
from siblings.extract import EXTRACT_KNOBS
from siblings.knobs import STRING, Knob, filled, integer, names, object_schema, one_of, problems
from siblings.models import ARCH_KNOBS, ARCHITECTURES
from siblings.registry import UnknownNameError
from siblings.roles import SOURCE_ROLES
from siblings.similarity import SIMILARITIES, SIMILARITY_KNOBS
from siblings.train import SEED_KNOBS, TRAIN_KNOBS


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and what it accepts."""


NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ID_PATTERN = "^[a-z0-9][a-z0-9.-]*$"
THREAD_KNOBS = {stage: Knob(integer(1), f"CPU threads of each {stage} job", 1)
                for stage in ("train", "compress", "attack", "defend")}
METHOD = Knob(STRING, "the registered method", required=True)


@dataclass(frozen=True)
class Section:
    """A top-level key: a single ``value``, an object whose ``knobs(entry)`` are declared,
    or (``entries``) a map of ids to objects whose ``knobs(id, entry)`` are. ``knobs``
    returns the knobs and what the entry is, in words ("attack method 'pgd'"), and raises
    UnknownNameError for a name no component registered."""

    doc: str
    value: Knob | None = None
    knobs: Callable[..., tuple[dict[str, Knob], str]] | None = None
    entries: bool = False
    required: bool = False


def _fixed(name: str, knobs: dict[str, Knob]) -> Callable[[dict], tuple[dict[str, Knob], str]]:
    return lambda entry: (knobs, f"section '{name}'")


def _dataset(entry: dict) -> tuple[dict[str, Knob], str]:
    return DATASET_KNOBS | DATASETS.get(entry["name"]).knobs, f"dataset '{entry['name']}'"


def _arch(arch: str, entry: dict) -> tuple[dict[str, Knob], str]:
    ARCHITECTURES.get(arch)
    return ARCH_KNOBS, f"architecture '{arch}'"


def _compression(cid: str, entry: dict) -> tuple[dict[str, Knob], str]:
    method = COMPRESSIONS.get(entry["method"])
    return {"method": METHOD, **method.knobs}, f"compression method '{entry['method']}'"


def _attack(aid: str, entry: dict) -> tuple[dict[str, Knob], str]:
    return attack_knobs(ATTACKS.get(entry["method"])), f"attack method '{entry['method']}'"


def _defense(did: str, entry: dict) -> tuple[dict[str, Knob], str]:
    method = DEFENSES.get(entry["method"])
    return DEFENSE_KNOBS | method.knobs, f"defense method '{entry['method']}'"


SECTIONS: dict[str, Section] = {
    "name": Section("namespaces the outputs", Knob(
        {"type": "string", "pattern": NAME_PATTERN}, "namespaces outputs as results/<name>/ "
        "and reports/<name>/", required=True), required=True),
    "device": Section("where the stages compute", Knob(
        one_of(*DEVICES), "auto (CUDA when torch sees a GPU, else the CPU), cpu or cuda",
        "auto")),
    "dataset": Section("the dataset and its seeded splits", knobs=_dataset, required=True),
    "archs": Section("architecture name -> its knobs: one of the curated architectures, "
                     "timm/<any timm model> or torchvision/<any torchvision classifier>",
                     knobs=_arch, entries=True, required=True),
    "train": Section("how the full and independent models train", knobs=_fixed("train",
                                                                               TRAIN_KNOBS)),
    "seeds": Section("the two training seeds", knobs=_fixed("seeds", SEED_KNOBS)),
    "compressions": Section("compression id (the sibling's name, e.g. ptq-w8a8) -> method and "
                            "its knobs", knobs=_compression, entries=True, required=True),
    "attacks": Section("attack id -> method and its knobs", knobs=_attack, entries=True,
                       required=True),
    "defenses": Section("defense id (e.g. unpair-l5) -> method and its knobs; each defends "
                        "the listed siblings", knobs=_defense, entries=True),
    "extract": Section("the adaptive attacker's surrogate, distilled from a (defended) "
                       "sibling's scores (role extracted)", knobs=_fixed("extract",
                                                                          EXTRACT_KNOBS)),
    "similarity": Section("the (full model, source) comparisons",
                          knobs=_fixed("similarity", SIMILARITY_KNOBS)),
    "cross_arch": Section("cross-arch sources", Knob(
        {"type": "object", "additionalProperties": {"type": "string"}}, "target architecture "
        "-> the architecture of this run whose full model is its cross-arch source", {})),
    "source_roles": Section("which sources attack the target", Knob(
        {**names(), "items": one_of(*SOURCE_ROLES)}, "source roles every attack that takes "
        "a source runs from, unless its roles say otherwise",
        ["sibling", "independent", "whitebox"])),
    "threads": Section("CPU threads per job", knobs=_fixed("threads", THREAD_KNOBS)),
}


def _schema_problems(schema: dict, value: object, key: str) -> list[str]:
    """Type and range problems of ``value`` (unknown and missing keys are reported by
    :func:`siblings.knobs.problems`, with close matches)."""
    found = sorted(jsonschema.Draft7Validator(schema).iter_errors(value),
                   key=lambda e: list(e.absolute_path))
    return [f"config key '{'.'.join([key, *map(str, e.absolute_path)])}': {e.message}"
            for e in found if e.validator not in ("additionalProperties", "required")]


def _object(knobs_of: Callable, args: tuple, entry: object, key: str) -> tuple[dict, list[str]]:
    """One object entry checked against its knobs; returns it completed and the problems."""
    if not isinstance(entry, dict):
        return {}, [f"config key '{key}': {entry!r} is not a mapping of knobs"]
    try:
        knobs, what = knobs_of(*args, entry)
    except UnknownNameError as err:
        name_key = "method" if "method" in entry else "name" if key == "dataset" else ""
        return entry, [f"config key '{key}{'.' + name_key if name_key else ''}': {err}"]
    except KeyError as err:
        return entry, [f"config key '{key}.{err.args[0]}': required"]
    found = problems(knobs, entry, key, what) + _schema_problems(object_schema(knobs), entry, key)
    return filled(knobs, entry), found


def _section(name: str, section: Section, raw: dict) -> tuple[object, list[str]]:
    """Section ``name`` of ``raw`` checked and completed."""
    if section.value is not None:
        value = raw.get(name, copy.deepcopy(section.value.default))
        return value, _schema_problems(section.value.schema, value, name)
    value = raw.get(name, {})
    if not section.entries:
        return _object(section.knobs, (), value, name)
    if not isinstance(value, dict):
        return value, [f"config key '{name}': {value!r} is not a mapping of ids"]
    out, found = {}, []
    if section.required and not value:
        found.append(f"config key '{name}': needs at least one entry")
    for ident, entry in value.items():
        key = f"{name}.{ident}"
        if name != "archs" and not re.match(ID_PATTERN, str(ident)):
            found.append(f"config key '{key}': an id is lower-case letters, digits, '.' and "
                         "'-', starting with a letter or digit")
        out[ident], problems_ = _object(section.knobs, (ident,), entry, key)
        found += problems_
    return out, found


def entry(section: str, params: dict, ident: str = "entry") -> dict:
    """One entry of an entries section (``compressions``, ``attacks``, ``defenses``, ...)
    checked against its component's knobs and completed with their defaults, as the
    validator completes it for a stage; raises ConfigError naming the offending keys."""
    out, found = _object(SECTIONS[section].knobs, (ident,), params, f"{section}.{ident}")
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
    return out


def _check_shape(config: dict) -> dict:
    """Every section checked against its declarations and completed; raises ConfigError."""
    found = [f"config key '{k}': unknown top-level key; allowed: {', '.join(SECTIONS)}"
             for k in config if k not in SECTIONS]
    found += [f"config key '{k}': required" for k, s in SECTIONS.items()
              if s.required and k not in config]
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
    out = {}
    for name, section in SECTIONS.items():
        out[name], problems_ = _section(name, section, config)
        found += problems_
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
    return out


def _check_names(config: dict) -> None:
    """Names and cross-references between sections; the error lists the allowed values."""
    problems_ = []
    for arch, knobs in config["archs"].items():
        why = ARCHITECTURES.get(arch).why_not("width")
        if why and knobs["width"] != 1.0:
            problems_.append(f"config key 'archs.{arch}.width': {arch} has no width knob "
                             f"({why}); use 1.0")
    for cid, params in config["compressions"].items():
        student = params.get("student")
        if student is not None and student != "self":
            try:
                ARCHITECTURES.get(student)
            except UnknownNameError as err:
                problems_.append(f"config key 'compressions.{cid}.student': {err}")
        calib = params.get("calib_size")
        if calib is not None and calib > config["dataset"]["calib_size"]:
            problems_.append(f"config key 'compressions.{cid}.calib_size': {calib} exceeds "
                             f"dataset.calib_size ({config['dataset']['calib_size']})")
    for aid, params in config["attacks"].items():
        problems_ += _attack_problems(config, aid, params)
    for did, params in config["defenses"].items():
        problems_ += _defense_problems(config, did, params)
    problems_ += _variant_problems(config["defenses"])
    problems_ += _not_in("extract.siblings", config["extract"].get("siblings", []),
                         list(config["compressions"]), "a compression id")
    problems_ += _not_in("similarity.metrics", config["similarity"]["metrics"],
                         SIMILARITIES.names(), "a similarity metric")
    for target, source in config["cross_arch"].items():
        problems_ += _not_in(f"cross_arch.{target}", [target], list(config["archs"]),
                             "a target architecture of this run")
        problems_ += _not_in(f"cross_arch.{target}", [source],
                             [a for a in config["archs"] if a != target],
                             "a cross-arch source (another architecture of this run)")
    if config["seeds"]["full"] == config["seeds"]["independent"]:
        problems_.append("config keys 'seeds.full' and 'seeds.independent' must differ: "
                         "the independent model is the attacker's own, trained apart")
    if problems_:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems_))


def _not_in(key: str, names_: list[str], allowed: list[str], what: str) -> list[str]:
    """One problem per name of ``names_`` (config key ``key``) that ``allowed`` lacks."""
    listed = ", ".join(allowed) or "none configured"
    return [f"config key '{key}': '{n}' is not {what}; allowed: {listed}"
            for n in names_ if n not in allowed]


def _attack_problems(config: dict, aid: str, params: dict) -> list[str]:
    """What is wrong with attack ``aid``'s references: radii, sources and baseline."""
    key = f"attacks.{aid}"
    attack = ATTACKS.get(params["method"])
    problems_ = [f"config key '{key}.eps.{i}': {eps} is greater than the maximum of 1 (an "
                 "L-inf radius in [0, 1] pixels)"
                 for i, eps in enumerate(params["eps"]) if params["norm"] == "linf" and eps > 1]
    problems_ += _not_in(f"{key}.siblings", params.get("siblings", []),
                         list(config["compressions"]), "a compression id")
    problems_ += _not_in(f"{key}.defenses", params.get("defenses", []), list(config["defenses"]),
                         "a defense id")
    roles = params.get("roles", config["source_roles"]) if attack.needs_source else []
    missing = [a for a in config["archs"] if a not in config["cross_arch"]]
    if "cross-arch" in roles and missing:
        problems_.append(f"config key 'cross_arch': the cross-arch role of '{aid}' needs a "
                         f"source for {', '.join(missing)}")
    problems_ += _not_in(f"{key}.roles", params.get("roles", []), list(SOURCE_ROLES),
                         "a source role")
    baseline = params.get("baseline")
    no_prior = [a for a, p in config["attacks"].items()
                if not ATTACKS.get(p["method"]).needs_source]
    problems_ += _not_in(f"{key}.baseline", [baseline] if baseline else [], no_prior,
                         "a no-prior attack of this config")
    return problems_


# A control must share these with the defense it controls, so only lam (and the penalty's
# form, points and smoothness) differ between them.
SCHEDULE_KEYS = ("method", "epochs", "lr", "batch_size")


def _defense_problems(config: dict, did: str, params: dict) -> list[str]:
    """What is wrong with defense ``did``'s references: the siblings and architectures it
    defends, and its lam = 0 control."""
    key = f"defenses.{did}"
    problems_ = _not_in(f"{key}.siblings", params["siblings"], list(config["compressions"]),
                        "a compression of this run")
    problems_ += _not_in(f"{key}.archs", params.get("archs", []), list(config["archs"]),
                         "an architecture of this run")
    if params["lam"] == 0:
        return problems_
    control = config["defenses"].get(params.get("control", ""))
    if control is None:
        zeros = [d for d, p in config["defenses"].items() if p["lam"] == 0]
        return problems_ + [f"config key '{key}.control': a defense with lam > 0 needs a lam = 0"
                            " control with the same schedule (fine-tuning alone changes "
                            "accuracy and transfer); allowed: "
                            f"{', '.join(zeros) or 'none configured'}"]
    differ = [k for k in SCHEDULE_KEYS if control.get(k) != params.get(k)]
    uncovered = [c for c in params["siblings"] if c not in control["siblings"]]
    archs = params.get("archs", list(config["archs"]))
    uncovered += [a for a in archs if a not in control.get("archs", list(config["archs"]))]
    if control["lam"] != 0 or differ or uncovered:
        problems_.append(f"config key '{key}.control': '{params['control']}' must have lam 0, "
                         f"the same {', '.join(SCHEDULE_KEYS)} and cover every sibling and "
                         f"architecture it controls (lam {control['lam']}, differs in: "
                         f"{', '.join(differ) or 'nothing'}, misses: "
                         f"{', '.join(uncovered) or 'nothing'})")
    return problems_


def _variant_problems(defenses: dict) -> list[str]:
    """Defenses of one variant (lam > 0) must differ only in lam and where they apply: lam
    is chosen among them, so any other difference would be chosen by the same rule."""
    first: dict[str, tuple[str, dict]] = {}
    problems_ = []
    for did, params in defenses.items():
        if params["lam"] == 0:
            continue
        name, settings = variant_name(params), variant_settings(params)
        seen, reference = first.setdefault(name, (did, settings))
        differ = sorted(k for k in settings.keys() | reference.keys()
                        if settings.get(k) != reference.get(k))
        if differ:
            problems_.append(f"config key 'defenses.{did}': variant '{name}' is also "
                             f"'{seen}', which differs in: {', '.join(differ)}; give one a "
                             "`variant` name of its own")
    return problems_


def _canonical(obj: object) -> object:
    """Dicts with sorted keys, recursively: Snakemake compares params by repr, so key order
    in a config file must not decide whether jobs rerun."""
    if isinstance(obj, dict):
        return {k: _canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    return obj


def validate(config: dict) -> dict:
    """Returns ``config`` checked, completed with the declared defaults and key-sorted.

    Raises ConfigError naming every offending key.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"invalid config: a config is a mapping of keys, not {config!r}")
    complete = _check_shape(copy.deepcopy(config))
    _check_names(complete)
    return _canonical(complete)
