"""The config's JSON schema and key reference, generated from the knob declarations.

``python -m siblings.config_doc`` rewrites ``workflow/schemas/config.schema.yaml`` (for
editors and the Snakemake workflow catalog), the configs table (what each runs, the jobs
it plans, its measured time) and the key reference between the markers of
``config/README.md``, and the measured times in the README (from ``benchmarks/runs.yaml``);
``tests/test_config.py`` fails when any of them differs from what the code and the record
give, so none can go stale. The validation itself (``siblings.config``) reads the
declarations, not these files.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from siblings.attacks import ATTACKS
from siblings.attacks.batch import ENTRY_KNOBS, QUERY_KNOBS, SOURCE_KNOBS, own_knobs
from siblings.attacks.batch import entry_knobs as attack_knobs
from siblings.compress import COMPRESSIONS
from siblings.config import (DEFENSE_KNOBS, ID_PATTERN, METHOD, SECTIONS, Section)
from siblings.data import DATASET_KNOBS, DATASETS
from siblings.defend import DEFENSES
from siblings.knobs import Knob, markdown, object_schema, property_schema
from siblings.models import ARCH_KNOBS, ARCHITECTURES
from siblings.registry import Registry
from siblings.similarity import SIMILARITIES

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "workflow/schemas/config.schema.yaml"
README = ROOT / "config/README.md"
TOP_README = ROOT / "README.md"
RUNS = ROOT / "benchmarks/runs.yaml"


def _method_knobs() -> dict[str, tuple[str, Registry, dict[str, dict[str, Knob]]]]:
    """Per entry section: the key naming the component, its registry, and each component's
    knobs."""
    return {
        "dataset": ("name", DATASETS, {n: DATASET_KNOBS | DATASETS.get(n).knobs
                                       for n in DATASETS.names()}),
        "compressions": ("method", COMPRESSIONS, {n: {"method": METHOD} | COMPRESSIONS.get(n).knobs
                                                  for n in COMPRESSIONS.names()}),
        "attacks": ("method", ATTACKS, {n: attack_knobs(ATTACKS.get(n)) for n in ATTACKS.names()}),
        "defenses": ("method", DEFENSES, {n: DEFENSE_KNOBS | DEFENSES.get(n).knobs
                                          for n in DEFENSES.names()}),
    }


def _by_method(key: str, knobs: dict[str, dict[str, Knob]]) -> dict:
    """An object whose knobs depend on the value of ``key``: one if/then per component."""
    return {"type": "object", "required": [key],
            "properties": {key: {"enum": sorted(knobs)}},
            "allOf": [{"if": {"properties": {key: {"const": name}}},
                       "then": object_schema(own)} for name, own in sorted(knobs.items())]}


def _section_schema(name: str, section: Section) -> dict:
    if section.value is not None:
        return property_schema(section.value)
    methods = _method_knobs()
    if name in methods and not section.entries:
        return {**_by_method(*[methods[name][i] for i in (0, 2)]), "description": section.doc}
    if not section.entries:
        return object_schema(section.knobs({})[0], section.doc)
    entry = (object_schema(ARCH_KNOBS) if name == "archs"
             else _by_method(methods[name][0], methods[name][2]))
    schema = {"type": "object", "description": section.doc, "additionalProperties": entry}
    if name != "archs":
        schema["propertyNames"] = {"pattern": ID_PATTERN}
    if section.required:
        schema["minProperties"] = 1
    return schema


def config_schema() -> dict:
    """The whole config as draft-07 JSON schema. Knobs that apply only where other keys
    take certain values are listed without that condition: the validator checks it."""
    return {"$schema": "http://json-schema.org/draft-07/schema#",
            "description": "A siblings benchmark run, generated from the components' knob "
                           "declarations by `python -m siblings.config_doc` (do not edit); "
                           "keys: config/README.md",
            "type": "object", "additionalProperties": False,
            "required": [k for k, s in SECTIONS.items() if s.required],
            "properties": {k: _section_schema(k, s) for k, s in SECTIONS.items()}}


def _doc(entry: object) -> str:
    """What a component is, in one line: its ``doc``, or an attack class's docstring's."""
    if isinstance(entry, type):
        return " ".join((entry.__doc__ or "").strip().split("\n\n")[0].split()).rstrip(".")
    return getattr(entry, "doc", "")


def _components(registry: Registry, own: dict[str, dict[str, Knob]]) -> list[str]:
    """Per registered component: what it is and its own knobs."""
    lines = []
    for name in registry.names():
        doc = _doc(registry.get(name))
        lines += [f"  - `{name}`{': ' + doc if doc else ''}", *markdown(own[name], "    ")]
    return lines


def keys_markdown() -> str:
    """The key reference: every section and its knobs; for the sections of registered
    components, the knobs every entry takes, then each component with its own."""
    lines = []
    for name, section in SECTIONS.items():
        if section.value is not None:
            lines += markdown({name: section.value})
            continue
        lines.append(f"- `{name}`: {section.doc}.")
        if name == "dataset":
            lines += markdown(DATASET_KNOBS, "  ")
            lines += _components(DATASETS, {n: DATASETS.get(n).knobs for n in DATASETS.names()})
        elif name == "archs":
            lines += markdown(ARCH_KNOBS, "  ")
        elif name == "compressions":
            lines += markdown({"method": METHOD}, "  ")
            lines += _components(COMPRESSIONS, {n: COMPRESSIONS.get(n).knobs
                                                for n in COMPRESSIONS.names()})
        elif name == "attacks":
            lines += markdown(ENTRY_KNOBS, "  ")
            lines.append("  - attacks that take a source (transfer, P-RGF) also:")
            lines += markdown(SOURCE_KNOBS, "    ")
            lines.append("  - query attacks also:")
            lines += markdown(QUERY_KNOBS, "    ")
            lines += _components(ATTACKS, {n: own_knobs(ATTACKS.get(n)) for n in ATTACKS.names()})
        elif name == "defenses":
            lines += markdown(DEFENSE_KNOBS, "  ")
            lines += _components(DEFENSES, {n: DEFENSES.get(n).knobs for n in DEFENSES.names()})
        else:
            lines += markdown(section.knobs({})[0], "  ")
            if name == "similarity":
                lines.append("  - metrics registered: " + ", ".join(
                    f"`{m}`" for m in SIMILARITIES.names()))
    return "\n".join(lines)


def _architectures() -> list[str]:
    lines = markdown(ARCH_KNOBS, "  ")
    for name in ARCHITECTURES.names():
        arch = ARCHITECTURES.get(name)
        lacks = "; ".join(f"no {c}: {why}" for c, why in arch.unsupported.items())
        lines.append(f"  - `{name}` ({arch.library}, {arch.family})" + (f": {lacks}" if lacks
                                                                          else ""))
    lines.append("  - `timm/<model>`, `torchvision/<model>`: any classifier of those "
                 "libraries, by name (no width knob, no channel pruning)")
    return lines


# Each kind of component: its config section's entry knobs and each component's own.
KINDS = {
    "architectures": _architectures,
    "datasets": lambda: markdown(DATASET_KNOBS, "  ") + _components(
        DATASETS, {n: DATASETS.get(n).knobs for n in DATASETS.names()}),
    "compressions": lambda: markdown({"method": METHOD}, "  ") + _components(
        COMPRESSIONS, {n: COMPRESSIONS.get(n).knobs for n in COMPRESSIONS.names()}),
    "attacks": lambda: markdown(ENTRY_KNOBS, "  ") + _components(
        ATTACKS, {n: own_knobs(ATTACKS.get(n)) for n in ATTACKS.names()}),
    "defenses": lambda: markdown(DEFENSE_KNOBS, "  ") + _components(
        DEFENSES, {n: DEFENSES.get(n).knobs for n in DEFENSES.names()}),
    "similarity": lambda: [f"  - `{n}`: {_similarity_doc(n)}" for n in SIMILARITIES.names()],
}


def _similarity_doc(name: str) -> str:
    return " ".join((SIMILARITIES.get(name).__doc__ or "").strip().split("\n\n")[0].split())


def components_markdown(kind: str | None = None) -> str:
    """Every registered component of ``kind`` (None: of every kind), with the knobs every
    entry of its kind takes, then its own."""
    lines = []
    for name, describe in KINDS.items():
        if kind in (None, name):
            lines += [f"{name}:", *describe(), ""]
    return "\n".join(lines).rstrip()


def summary_of(config: Path) -> str:
    """What a config runs, in its own words: the first clause of its header comment."""
    header = " ".join(line[1:].strip() for line in config.read_text().splitlines()
                      if line.startswith("#"))
    return re.split(r"[:.](?:\s|$)", header, maxsplit=1)[0]


def measured(run: str) -> str:
    """A run's recorded wall time from empty, dated and attributed ("" when none)."""
    m = yaml.safe_load(RUNS.read_text()).get(run)
    return (f"{m['wall']}, {m['jobs']} jobs ({m['date']}, commit {m['commit']}, "
            f"{m['machine']})" if m else "")


def configs_markdown() -> str:
    """The table of the shipped configs: what each runs, how many jobs it plans now, and
    its recorded wall time from empty (benchmarks/runs.yaml)."""
    from siblings.plan import Plan

    rows = ["| file | name | what it runs | jobs | measured from empty |", "|---|---|---|---|---|"]
    for path in sorted((ROOT / "config").glob("*.yaml")):
        plan = Plan(yaml.safe_load(path.read_text()))
        name = plan.config["name"]
        rows.append(f"| `{path.name}` | `{name}` | {summary_of(path)} | {len(plan.jobs())} | "
                    f"{measured(name) or 'not measured'} |")
    return "\n".join(rows)


def replaced(text: str, marker: str, body: str) -> str:
    """``text`` with what lies between ``<!-- marker:begin -->`` and its end replaced."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"


def readme_with_keys(text: str) -> str:
    """``text`` (config/README.md) with its configs table and key reference regenerated."""
    return replaced(replaced(text, "configs", configs_markdown()), "keys", keys_markdown())


def readme_with_times(text: str) -> str:
    """``text`` (README.md) with its measured times regenerated from benchmarks/runs.yaml."""
    tests = yaml.safe_load(RUNS.read_text())["make test"]
    return replaced(text, "measured", (
        f"Measured from empty: `make bench` {measured('default')}; `make test` "
        f"{tests['tests']} tests in {tests['wall']} on a fresh clone ({tests['date']}, commit "
        f"{tests['commit']}). Every config's: [config/README.md](config/README.md)."))


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:  # a shared value is written out again
        return True


def schema_yaml() -> str:
    return ("# Generated by `python -m siblings.config_doc` from the knob declarations: do not "
            "edit.\n" + yaml.dump(config_schema(), Dumper=_NoAliases, sort_keys=False,
                                   width=100))


def main() -> int:
    SCHEMA_FILE.write_text(schema_yaml())
    README.write_text(readme_with_keys(README.read_text()))
    TOP_README.write_text(readme_with_times(TOP_README.read_text()))
    print(f"wrote {SCHEMA_FILE.relative_to(ROOT)}, the tables of {README.relative_to(ROOT)} and "
          f"the times in {TOP_README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
