"""Config validation: the JSON schema for shape and types, the registries for names.

Runs in ``common.smk`` before any job starts, so a bad config fails at once, names the
offending key and the allowed values, and leaves nothing half-written.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from siblings.attack import ATTACKS, SOURCE_ROLES
from siblings.compress import COMPRESSIONS
from siblings.data import DATASETS
from siblings.models import ARCHITECTURES


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

    need("dataset.name", config["dataset"]["name"], DATASETS.names(), "dataset")
    for arch in config["archs"]:
        need(f"archs.{arch}", arch, ARCHITECTURES.names(), "architecture")
    for cid, params in config["compressions"].items():
        need(f"compressions.{cid}.method", params["method"], COMPRESSIONS.names(),
             "compression method")
        student = params.get("student")
        if student is not None and student != "self":
            need(f"compressions.{cid}.student", student, ["self", *ARCHITECTURES.names()],
                 "student architecture")
        calib = params.get("calib_size")
        if calib is not None and calib > config["dataset"]["calib_size"]:
            problems.append(f"config key 'compressions.{cid}.calib_size': {calib} exceeds "
                            f"dataset.calib_size ({config['dataset']['calib_size']})")
    for aid, params in config["attacks"].items():
        need(f"attacks.{aid}.method", params["method"], ATTACKS.names(), "attack method")
    for role in config["source_roles"]:
        need("source_roles", role, list(SOURCE_ROLES), "source role")
    if config["seeds"]["full"] == config["seeds"]["independent"]:
        problems.append("config keys 'seeds.full' and 'seeds.independent' must differ: "
                        "the independent model is the attacker's own, trained apart")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


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
