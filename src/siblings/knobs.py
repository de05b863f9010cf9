"""Knobs: every config key a component takes, declared once, beside the component.

A :class:`Knob` is a JSON-schema type, a default and a one-line meaning, and may apply only
where other keys of its entry take certain values (``radius`` only with ``points: ball``).
The declarations are the one source of the config's validation (``siblings.config``), of
the JSON schema export (``workflow/schemas/config.schema.yaml``) and of the key reference
in ``config/README.md``: a key that no declaration names, or one set where it does not
apply, is refused before any job, naming it; a knob added to a component appears in all
three at once.

Dataclass components (attacks, the quantization scheme) declare their knobs as fields
(:func:`knob`), so the class's defaults and the config's are the same numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping


class _Unset:
    def __repr__(self) -> str:
        return "unset"


UNSET: Any = _Unset()  # no default: absent stays absent (or is required)
META = "knob"  # the dataclass field metadata key a knob lives under


@dataclass(frozen=True)
class Knob:
    """One config key: its JSON-schema ``schema`` (type and range), its ``doc`` (one line),
    its ``default`` (UNSET: none), whether it is ``required``, and ``when``: the values
    other keys of its entry must take for it to apply (e.g. ``{"points": ("ball", "pgd")}``)."""

    schema: dict
    doc: str
    default: Any = UNSET
    required: bool = False
    when: Mapping[str, tuple | Not] = field(default_factory=dict)

    def applies(self, params: Mapping, knobs: Mapping[str, "Knob"]) -> bool:
        """Whether this knob means anything in ``params`` (its siblings' defaults counted)."""
        return all(value_of(params, knobs, key) in values for key, values in self.when.items())

    def where(self) -> str:
        """``when`` in words, for errors and the docs ("" when it always applies)."""
        return " and ".join(f"{k} is {v if isinstance(v, Not) else ' or '.join(map(shown, v))}"
                            for k, v in self.when.items())


class Not:
    """``when`` values that apply everywhere except at these (``student`` is not ``self``)."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def __contains__(self, value: object) -> bool:
        return value not in self.values

    def __str__(self) -> str:
        return "not " + " or ".join(map(shown, self.values))


def value_of(params: Mapping, knobs: Mapping[str, Knob], key: str) -> Any:
    """``params[key]``, or its declared default."""
    return params.get(key, knobs[key].default if key in knobs else UNSET)


def knob(default: Any, doc: str, schema: dict, **when: tuple | Not) -> Any:
    """A dataclass field that is also a config knob (its default is the config's)."""
    return field(default=default, metadata={META: Knob(schema, doc, default, when=when)})


def required_knob(doc: str, schema: dict) -> Any:
    """A dataclass field without a default that is a required config knob."""
    return field(metadata={META: Knob(schema, doc, required=True)})


def declared(cls: type) -> dict[str, Knob]:
    """The knobs a dataclass declares as fields, in field order."""
    return {f.name: f.metadata[META] for f in dataclasses.fields(cls) if META in f.metadata}


# --- JSON-schema types -----------------------------------------------------------------

def integer(minimum: int | None = None, maximum: int | None = None,
            nullable: bool = False) -> dict:
    return _bounded({"type": ["integer", "null"] if nullable else "integer"},
                    minimum=minimum, maximum=maximum)


def number(minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None) -> dict:
    """A number in [minimum, maximum], or strictly ``above``/``below`` a bound."""
    return _bounded({"type": "number"}, minimum=minimum, maximum=maximum,
                    exclusiveMinimum=above, exclusiveMaximum=below)


def _bounded(schema: dict, **bounds: float | None) -> dict:
    return {**schema, **{k: v for k, v in bounds.items() if v is not None}}


BOOLEAN = {"type": "boolean"}
STRING = {"type": "string"}


def one_of(*values: Any) -> dict:
    return {"enum": list(values)}


def names(minimum: int = 1) -> dict:
    """A list of distinct names."""
    return {"type": "array", "minItems": minimum, "uniqueItems": True,
            "items": {"type": "string"}}


def per_device(value: dict) -> dict:
    """One ``value`` for every device, or one per device: ``{cpu: ..., cuda: ...}``."""
    return {"oneOf": [value, {"type": "object", "additionalProperties": False,
                              "required": ["cpu", "cuda"],
                              "properties": {"cpu": value, "cuda": value}}]}


# --- checking and completing one entry ------------------------------------------------------

def problems(knobs: Mapping[str, Knob], params: Mapping, key: str, what: str) -> list[str]:
    """Keys of ``params`` (config key ``key``, a ``what``) that no knob declares (with close
    matches), that are set where they do not apply, or that are required and missing."""
    found = []
    for name in params:
        if name not in knobs:
            close = difflib.get_close_matches(name, list(knobs), n=1)
            found.append(f"config key '{key}.{name}': {what} takes no knob '{name}'"
                         + (f" (did you mean '{close[0]}'?)" if close else "")
                         + f"; its knobs: {', '.join(knobs)}")
        elif not knobs[name].applies(params, knobs):
            here = ", ".join(f"{k} is {shown(value_of(params, knobs, k))}"
                             for k in knobs[name].when)
            found.append(f"config key '{key}.{name}': applies only where "
                         f"{knobs[name].where()} (here {here})")
    found += [f"config key '{key}.{name}': required by {what}"
              for name, k in knobs.items() if k.required and name not in params]
    return found


def filled(knobs: Mapping[str, Knob], params: Mapping) -> dict:
    """``params`` with the default of every applicable knob it leaves out."""
    out = dict(params)
    for name, k in knobs.items():
        if name not in out and k.default is not UNSET and k.applies(params, knobs):
            out[name] = copy.deepcopy(k.default)
    return out


def object_schema(knobs: Mapping[str, Knob], description: str | None = None) -> dict:
    """The JSON schema of an entry holding exactly ``knobs``."""
    schema: dict = {"type": "object", "additionalProperties": False,
                    "properties": {name: property_schema(k) for name, k in knobs.items()}}
    required = [name for name, k in knobs.items() if k.required]
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    return schema


def property_schema(k: Knob) -> dict:
    schema = {**k.schema, "description": k.doc + (f" (only where {k.where()})" if k.when else "")}
    if k.default is not UNSET:
        schema["default"] = k.default
    return schema


# --- documentation ---------------------------------------------------------------------

def type_words(schema: dict) -> str:
    """A knob's type and range in a few words: ``integer >= 1``, ``one of linf, l2``."""
    if "enum" in schema:
        return "one of " + ", ".join(shown(v) for v in schema["enum"])
    if "oneOf" in schema:
        return type_words(schema["oneOf"][0]) + ", or one per device"
    kind = schema.get("type", "object")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if kind == "array":
        return f"list of {schema.get('items', {}).get('type', 'value')}s"
    bounds = [f"{op} {schema[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                ("maximum", "<="), ("exclusiveMaximum", "<"))
              if k in schema]
    return " ".join([kind, ", ".join(bounds)]).strip()


def markdown(knobs: Mapping[str, Knob], indent: str = "") -> list[str]:
    """One bullet per knob: name, type, default (or required), meaning, where it applies."""
    lines = []
    for name, k in knobs.items():
        default = ("required" if k.required else "no default" if k.default is UNSET
                   else f"default `{shown(k.default)}`")
        where = f" Only where {k.where()}." if k.when else ""
        lines.append(f"{indent}- `{name}` ({type_words(k.schema)}; {default}): {k.doc}.{where}")
    return lines


def shown(value: Any) -> str:
    """A value as YAML writes it: null, true, 0.5."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
