"""What a config points at outside itself, checked before any job: the dataset's root and
each architecture's starting weights. Bad input stops the planner naming the key and the
path; nothing runs, so nothing is half-written.
"""

from __future__ import annotations

from siblings.checkpoints import CheckpointError, Start, check_checkpoint
from siblings.config import ConfigError
from siblings.data import DATASETS, DataShape, DatasetNotFoundError, model_input_size
from siblings.models import ARCHITECTURES, ModelSpec

ROLES = ("full", "independent")


def _published_tag_problem(arch: str, tag: str) -> str | None:
    """A timm tag the architecture's published model does not have (checked offline)."""
    import timm

    published = ARCHITECTURES.get(arch).published
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{published}.*")]
    return None if tag in tags else (f"timm has no '{published}.{tag}'; its tags: "
                                     f"{', '.join(tags) or 'none'}")


def _start_problem(arch: str, knobs: dict, value: str, shape: DataShape) -> str | None:
    start = Start.parse(value)
    if start.path is not None:
        spec = ModelSpec(arch, shape.channels, shape.classes, model_input_size(shape),
                         (0.0,) * shape.channels, (1.0,) * shape.channels, knobs["width"])
        try:
            check_checkpoint(start.path.resolve(), spec)
        except CheckpointError as err:
            return str(err)
        return None
    why = ARCHITECTURES.get(arch).why_not("pretrained")
    if why:
        return f"{arch} cannot take published weights: {why}"
    if knobs["width"] != 1.0:
        return f"published weights fit width 1.0 only, not {knobs['width']:g}"
    if isinstance(start.pretrained, str):
        return _published_tag_problem(arch, start.pretrained)
    return None


def check_inputs(config: dict) -> DataShape:
    """Checks the dataset root and every starting checkpoint of a validated config; returns
    the dataset's shape. Raises ConfigError naming each offending key."""
    ds = config["dataset"]
    try:
        shape = DATASETS.get(ds["name"]).shape(ds["root"], ds["download"], ds["image_size"])
    except DatasetNotFoundError as err:
        raise ConfigError(f"invalid config:\n  {err}") from err
    problems = []
    for arch, knobs in config["archs"].items():
        for role, value in knobs.get("weights", {}).items():
            problem = _start_problem(arch, knobs, value, shape)
            if problem:
                problems.append(f"config key 'archs.{arch}.weights.{role}': {problem}")
        untrained = [r for r in ROLES if r not in knobs.get("weights", {})]
        if knobs.get("epochs", config["train"]["epochs"]) == 0 and untrained:
            problems.append(f"config key 'archs.{arch}.epochs': 0 epochs leaves the "
                            f"{' and '.join(untrained)} model random; give it starting "
                            f"weights (archs.{arch}.weights)")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return shape
