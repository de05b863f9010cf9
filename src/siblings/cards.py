"""The model card: the sidecar of every model's weights, as one typed contract, and the
model spec inside it (what rebuilds the model's structure).

Train, compress, defend and extract each write one; every stage that loads a model and
the aggregate stage read it. One dataclass, so no stage writes a key another misses, and
a sidecar that does not fit it (a key missing or unknown, truncated JSON) is a corrupted
artifact, refused by name (:class:`siblings.artifacts.CorruptArtifactError`).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from siblings.artifacts import CHECKSUM_KEY, CorruptArtifactError, read_json
from siblings.engine import percent

KINDS = ("full", "sibling", "defended", "extracted")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's structure; stored in every weight sidecar."""

    arch: str
    in_chans: int
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    width: float = 1.0
    pretrained: bool | str = False  # True: the published weights; a string: a timm tag
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


@dataclass(frozen=True)
class Parent:
    """The model this one was made from, as it was when it was used: its path, how many of
    the same test images it labelled right, and its code fingerprint."""

    path: str
    n_correct: int
    code_version: str


@dataclass(frozen=True)
class ModelCard:
    """What a stored model is and how it was made.

    ``kind``: full (trained), sibling (compressed from the full model), defended (a
    sibling after a defense) or extracted (the adaptive attacker's surrogate of a sibling).
    Extracted cards keep the ``compression_id``/``defense_id`` of the sibling they copy,
    with ``compression`` None: the surrogate is a plain float model.
    """

    kind: str
    spec: ModelSpec
    seed: int
    n_correct: int  # test images it labels right, as stored (not as deployed)
    n_test: int
    parameters: int
    seconds: float  # the stage's own work: training, compressing, defending, distilling
    code_version: str
    device: str
    product: dict[str, Any] | None = None  # the deployed artifact (measure.measure)
    settings: dict[str, Any] | None = None  # train.* (full) or extract.* (extracted)
    start: str | None = None  # the full model's starting weights (archs.<arch>.weights)
    parent: Parent | None = None
    compression_id: str | None = None
    compression: dict[str, Any] | None = None  # the method's params: rebuild the structure
    family: str | None = None
    structure: dict[str, Any] | None = None  # what prepare() decided (channel pruning)
    defense_id: str | None = None
    defense: dict[str, Any] | None = None
    agreement_with_full: float | None = None  # % of test images labelled as the full model does
    accuracy_cost: float | None = None  # points lost against the parent (defended, extracted)
    failed: bool | None = None  # a defense or extraction that missed its accuracy goal
    measured: dict[str, Any] = field(default_factory=dict)  # the stage's own readings

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind '{self.kind}' is none of {', '.join(KINDS)}")

    @property
    def test_accuracy(self) -> float:
        """Top-1 test accuracy in percent, from the counts."""
        return percent(self.n_correct, self.n_test)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        """The card of a sidecar; ValueError naming what does not fit."""
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING}
        missing, unknown = sorted(required - set(d)), sorted(set(d) - names)
        if missing or unknown:
            raise ValueError(f"missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
        d = dict(d)
        d["spec"] = ModelSpec.from_dict(d["spec"])
        if d.get("parent") is not None:
            d["parent"] = Parent(**d["parent"])
        return cls(**d)


def card_from(meta: dict, sidecar: str | Path) -> ModelCard:
    """The card in the sidecar dict ``meta`` read from ``sidecar``."""
    try:
        return ModelCard.from_dict(meta)
    except (TypeError, ValueError, KeyError) as err:
        raise CorruptArtifactError(sidecar, f"not a model card: {err}") from None


def read_card(sidecar: str | Path) -> ModelCard:
    """A model card read from its sidecar file alone (the weights are checked where they
    are loaded)."""
    meta = read_json(sidecar)
    meta.pop(CHECKSUM_KEY, None)
    return card_from(meta, sidecar)
