"""What a config points at outside itself, checked before any job: the dataset's root,
each architecture's starting weights, and whether each model named by config (``timm/...``)
adapts to the dataset. Bad input stops the run naming the key and the
path; nothing runs, so nothing is half-written. A dry run does not check: it plans where
the data is not (a login node).
"""

from __future__ import annotations

from siblings.checkpoints import CheckpointError, Start, check_checkpoint
from siblings.config import ConfigError
from siblings.data import DATASETS, DataShape, DatasetNotFoundError, model_input_size
from siblings.cards import ModelSpec
from siblings.models import ARCHITECTURES, adapt_problem

ROLES = ("full", "independent")


def _published_problem(arch: str, tag: str | bool, classes: int, trained: bool) -> str | None:
    """A timm tag the architecture's published model lacks, or published weights left
    untrained whose classifier does not fit the dataset's classes (timm would replace it
    with a random one). Checked offline, from timm's registry."""
    import timm
    from timm.models import get_pretrained_cfg

    published = ARCHITECTURES.get(arch).published
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{published}.*")]
    if isinstance(tag, str) and tag not in tags:
        return f"timm has no '{published}.{tag}'; its tags: {', '.join(tags) or 'none'}"
    name = f"{published}.{tag}" if isinstance(tag, str) else published
    published_classes = get_pretrained_cfg(name).num_classes
    if not trained and published_classes != classes:
        return (f"'{name}' classifies {published_classes} classes and the dataset has "
                f"{classes}; with 0 epochs its classifier would stay random (train it)")
    return None


def _start_problem(arch: str, knobs: dict, epochs: float, value: str,
                   shape: DataShape) -> str | None:
    start = Start.parse(value)
    if start.path is not None:
        spec = ModelSpec(arch, shape.channels, shape.classes, model_input_size(shape),
                         (0.0,) * shape.channels, (1.0,) * shape.channels, knobs["width"])
        try:
            check_checkpoint(start.path.resolve(), spec)
        except CheckpointError as err:
            return str(err)
        return None
    problem = ARCHITECTURES.get(arch).pretrained_problem(knobs["width"])
    if problem:
        return f"{arch} cannot start from published weights: {problem}"
    return _published_problem(arch, start.pretrained, shape.classes, epochs > 0)


def _adapt_problems(config: dict, shape: DataShape) -> list[str]:
    """Every model named by config and not curated (an architecture, a distillation
    student) that does not build and run for this dataset."""
    named = [(f"archs.{arch}", arch, knobs["width"]) for arch, knobs in config["archs"].items()]
    named += [(f"compressions.{cid}.student", p["student"], p.get("width", 1.0))
              for cid, p in config["compressions"].items() if p.get("student", "self") != "self"]
    problems = []
    for key, arch, width in named:
        if not ARCHITECTURES.get(arch).probe:
            continue
        problem = adapt_problem(ModelSpec(arch, shape.channels, shape.classes,
                                          model_input_size(shape), (0.0,) * shape.channels,
                                          (1.0,) * shape.channels, width))
        if problem:
            problems.append(f"config key '{key}': {arch} cannot adapt to the dataset "
                            f"({shape.channels} channels, {shape.classes} classes, "
                            f"{model_input_size(shape)} px): {problem}")
    return problems


def check_inputs(config: dict) -> DataShape:
    """Checks the dataset root and every starting checkpoint of a validated config; returns
    the dataset's shape. Raises ConfigError naming each offending key."""
    ds = config["dataset"]
    try:
        shape = DATASETS.get(ds["name"]).shape(ds["root"], ds["download"], ds["image_size"])
    except DatasetNotFoundError as err:
        raise ConfigError(f"invalid config:\n  {err}") from err
    problems = _adapt_problems(config, shape)
    for arch, knobs in config["archs"].items():
        epochs = knobs.get("epochs", config["train"]["epochs"])
        for role, value in knobs.get("weights", {}).items():
            problem = _start_problem(arch, knobs, epochs, value, shape)
            if problem:
                problems.append(f"config key 'archs.{arch}.weights.{role}': {problem}")
        untrained = [r for r in ROLES if r not in knobs.get("weights", {})]
        if epochs == 0 and untrained:
            problems.append(f"config key 'archs.{arch}.epochs': 0 epochs leaves the "
                            f"{' and '.join(untrained)} model random; give it starting "
                            f"weights (archs.{arch}.weights)")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return shape
