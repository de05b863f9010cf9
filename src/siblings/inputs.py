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


def _size_problems(config: dict, shape: DataShape) -> list[str]:
    """Every image count the config asks for that the dataset's parts cannot supply."""
    ds = config["dataset"]
    problems = []
    if ds["calib_size"] >= shape.train:
        problems.append(f"config key 'dataset.calib_size': {ds['calib_size']} leaves no "
                        f"training images; the train part holds {shape.train}")
    remaining = shape.train - ds["calib_size"]
    if ds["train_subset"] is not None and 0 < remaining < ds["train_subset"]:
        problems.append(f"config key 'dataset.train_subset': {ds['train_subset']} exceeds the "
                        f"{remaining} train images left after calib_size")
    if ds["test_subset"] is not None and ds["test_subset"] > shape.test:
        problems.append(f"config key 'dataset.test_subset': {ds['test_subset']} exceeds the "
                        f"{shape.test} test images")
    test = min(ds["test_subset"] or shape.test, shape.test)
    wanted = [(f"attacks.{a}.n_examples", p["n_examples"]) for a, p in config["attacks"].items()]
    wanted.append(("similarity.n_examples", config["similarity"]["n_examples"]))
    problems += [f"config key '{key}': {n} exceeds the {test} test images" for key, n in wanted
                 if n > test]
    return problems


def check_inputs(config: dict) -> DataShape:
    """Checks the dataset root and every starting checkpoint of a validated config; returns
    the dataset's shape. Raises ConfigError naming each offending key."""
    ds = config["dataset"]
    try:
        shape = DATASETS.get(ds["name"]).shape(ds["root"], ds["download"], ds.get("image_size"))
    except DatasetNotFoundError as err:
        raise ConfigError(f"invalid config:\n  {err}") from err
    problems = _size_problems(config, shape) + _adapt_problems(config, shape)
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
