import copy
from pathlib import Path

import pytest
import yaml

from siblings.config import ConfigError, validate
from siblings.plan import Plan

ROOT = Path(__file__).resolve().parents[1]


def smoke() -> dict:
    return yaml.safe_load((ROOT / "config/smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["smoke", "config", "full", "zoo", "cifar10", "imagenet"])
def test_shipped_configs_validate(name):
    cfg = validate(yaml.safe_load((ROOT / f"config/{name}.yaml").read_text()))
    assert cfg["train"]["batch_size"] >= 1 and cfg["threads"]["attack"] >= 1


def test_defaults_are_filled_without_touching_the_input():
    raw = smoke()
    cfg = validate(raw)
    assert cfg["threads"] == {"train": 1, "compress": 1, "attack": 1, "defend": 1}
    assert cfg["defenses"]["unpair-l0"]["form"] == "abs" and cfg["extract"]["temperature"] == 4.0
    assert cfg["attacks"]["pgd"]["norm"] == "linf" and cfg["attacks"]["pgd"]["seed"] == 0
    assert "threads" not in raw and "form" not in raw["defenses"]["unpair-l0"]


def broken(edit) -> dict:
    cfg = copy.deepcopy(smoke())
    edit(cfg)
    return cfg


CASES = {
    "unknown arch": (lambda c: c["archs"].update({"resnet9000": {}}),
                     r"archs\.resnet9000.*unknown architecture 'resnet9000'; allowed: alexnet"),
    "unknown compression": (lambda c: c["compressions"].update({"zip": {"method": "zip"}}),
                            r"compressions\.zip\.method.*allowed: channel-prune, kd, prune, ptq, qat"),
    "unknown dataset": (lambda c: c["dataset"].update(name="mnist3d"),
                        r"dataset\.name.*allowed: cifar10, fashion-mnist, imagefolder"),
    "negative eps": (lambda c: c["attacks"]["pgd"].update(eps=[-0.1]),
                     r"attacks\.pgd\.eps\.0.*-0\.1 is less than or equal to the minimum of 0"),
    "non-numeric eps": (lambda c: c["attacks"]["pgd"].update(eps=["big"]),
                        r"attacks\.pgd\.eps\.0.*'big' is not of type 'number'"),
    "unknown key": (lambda c: c["train"].update(epochz=3),
                    r"config key 'train.epochz': section 'train' takes no knob 'epochz' \(did "
                    r"you mean 'epochs'\?\)"),
    "ptq without bits": (lambda c: c["compressions"].update({"ptq-x": {"method": "ptq"}}),
                         r"compressions\.ptq-x\.weight_bits': required by compression method "
                         r"'ptq'"),
    "unknown role": (lambda c: c.update(source_roles=["oracle"]),
                     r"source_roles\.0': 'oracle' is not one of \['sibling', 'independent'"),
    "unknown role of an attack": (lambda c: c["attacks"]["pgd"].update(roles=["oracle"]),
                                  r"attacks\.pgd\.roles': 'oracle' is not a source role; "
                                  r"allowed: sibling, independent, cross-arch, whitebox"),
    "unknown attack": (lambda c: c["attacks"]["pgd"].update(method="cw"),
                       r"attacks\.pgd\.method.*unknown attack method 'cw'; allowed: mifgsm, pgd"),
    "eps zero": (lambda c: c["attacks"]["pgd"].update(eps=[0]),
                 r"attacks\.pgd\.eps\.0.*0 is less than or equal to the minimum of 0"),
    "eps above 1": (lambda c: c["attacks"]["pgd"].update(eps=[1.5]),
                    r"attacks\.pgd\.eps\.0.*1\.5 is greater than the maximum of 1"),
    "budget zero": (lambda c: c["attacks"]["rgf"].update(queries=0),
                    r"attacks\.rgf\.queries.*0 is less than the minimum of 1"),
    "budget negative": (lambda c: c["attacks"]["rgf"].update(queries=-10),
                        r"attacks\.rgf\.queries.*-10 is less than the minimum of 1"),
    "query attack without budget": (lambda c: c["attacks"]["rgf"].pop("queries"),
                                    r"attacks\.rgf\.queries': required by attack method 'rgf'"),
    "cross-arch source not in the run": (
        lambda c: (c["archs"].update(vgg16={}), c.update(cross_arch={"resnet18": "alexnet"})),
        r"cross_arch\.resnet18': 'alexnet' is not a cross-arch source .*; allowed: vgg16"),
    "cross-arch role without a source": (
        lambda c: (c["archs"].update(vgg16={}), c.update(cross_arch={"resnet18": "vgg16"}),
                   c["attacks"]["pgd"].update(roles=["cross-arch"])),
        r"cross-arch role of 'pgd' needs a source for vgg16"),
    "baseline with a prior": (lambda c: c["attacks"]["prgf"].update(baseline="pgd"),
                              r"attacks\.prgf\.baseline': 'pgd' is not a no-prior attack.*"
                              r"allowed: rgf"),
    "unknown sibling of an attack": (lambda c: c["attacks"]["prgf"].update(siblings=["ptq-w3a3"]),
                                     r"attacks\.prgf\.siblings.*'ptq-w3a3' is not a compression id"),
    "negative lambda": (lambda c: c["defenses"]["unpair-l5"].update(lam=-1),
                        r"defenses\.unpair-l5\.lam.*-1 is less than the minimum of 0"),
    "tolerance above 100": (lambda c: c["defenses"]["unpair-l5"].update(tolerance=101),
                            r"defenses\.unpair-l5\.tolerance.*101 is greater than the maximum of 100"),
    "tolerance negative": (lambda c: c["defenses"]["unpair-l5"].update(tolerance=-0.5),
                           r"defenses\.unpair-l5\.tolerance.*-0\.5 is less than the minimum of 0"),
    "defense of a compression that does not exist": (
        lambda c: c["defenses"]["unpair-l5"].update(siblings=["ptq-w2a2"]),
        r"defenses\.unpair-l5\.siblings.*'ptq-w2a2' is not a compression of this run; "
        r"allowed: ptq-w8a8, prune-u80"),
    "defense of an architecture not in the run": (
        lambda c: c["defenses"]["unpair-l5"].update(archs=["alexnet"]),
        r"defenses\.unpair-l5\.archs.*'alexnet' is not an architecture of this run"),
    "unknown defense": (lambda c: c["defenses"]["unpair-l5"].update(method="armor"),
                        r"defenses\.unpair-l5\.method.*unknown defense method 'armor'; allowed: unpair"),
    "defense without a control": (lambda c: c["defenses"]["unpair-l5"].pop("control"),
                                  r"defenses\.unpair-l5\.control.*needs a lam = 0 control.*allowed: unpair-l0"),
    "control with another schedule": (
        lambda c: c["defenses"]["unpair-l0"].update(epochs=2),
        r"defenses\.unpair-l5\.control.*'unpair-l0' must have lam 0.*differs in: epochs"),
    "one variant with two schedules": (
        lambda c: c["defenses"].update({"unpair-l9": {**c["defenses"]["unpair-l5"], "lam": 9,
                                                      "smoothness": 0.5}}),
        r"defenses\.unpair-l9.*variant 'cosine/clean' is also 'unpair-l5', which differs in: "
        r"smoothness"),
    "unknown defense of an attack": (lambda c: c["attacks"]["pgd"].update(defenses=["nope"]),
                                     r"attacks\.pgd\.defenses.*'nope' is not a defense id"),
    "unknown similarity metric": (lambda c: c.update(similarity={"metrics": ["psnr"]}),
                                  r"similarity\.metrics': 'psnr' is not a similarity metric"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_config_names_the_key(case):
    edit, message = CASES[case]
    with pytest.raises(ConfigError, match=message):
        validate(broken(edit))


def test_key_order_does_not_change_the_validated_config():
    raw = smoke()
    shuffled = {k: raw[k] for k in reversed(list(raw))}
    assert repr(validate(shuffled)) == repr(validate(raw))


def test_a_width_on_an_architecture_without_a_knob_is_refused(monkeypatch):
    from dataclasses import replace

    from siblings.models import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES._items, "resnet18",
                        replace(ARCHITECTURES.get("resnet18"), unsupported={"width": "fixed"}))
    with pytest.raises(ConfigError, match=r"archs\.resnet18\.width': resnet18 has no width "
                                          r"knob \(fixed\); use 1\.0"):
        validate(smoke())


# Configs that used to pass planning (a knob silently ignored) or fail inside a job; each is
# now refused before any job, naming the key.
REFUSED_BEFORE_ANY_JOB = {
    "misspelt attack knob": (lambda c: c["attacks"]["pgd"].update(stpes=3),
                             r"'attacks\.pgd\.stpes': attack method 'pgd' takes no knob 'stpes' "
                             r"\(did you mean 'steps'\?\)"),
    "another attack's knob": (lambda c: c["attacks"]["pgd"].update(decay=0.5),
                              r"'attacks\.pgd\.decay': attack method 'pgd' takes no knob"),
    "a P-RGF knob on RGF": (lambda c: c["attacks"]["rgf"].update(norm_probes=5),
                            r"'attacks\.rgf\.norm_probes': attack method 'rgf' takes no knob"),
    "a query knob on a transfer attack": (lambda c: c["attacks"]["pgd"].update(query_batch=8),
                                          r"'attacks\.pgd\.query_batch': attack method 'pgd'"),
    "roles on an attack without a source": (
        lambda c: c["attacks"]["rgf"].update(roles=["sibling"]),
        r"'attacks\.rgf\.roles': attack method 'rgf' takes no knob 'roles'"),
    "a baseline on RGF": (lambda c: c["attacks"]["rgf"].update(baseline="rgf"),
                          r"'attacks\.rgf\.baseline': attack method 'rgf' takes no knob"),
    "an unsupported norm": (
        lambda c: c["attacks"].update(square={"method": "square", "eps": [0.1], "queries": 50,
                                              "norm": "l2"}),
        r"'attacks\.square\.norm': 'l2' is not one of \['linf'\]"),
    "misspelt compression knob": (lambda c: c["compressions"]["prune-u80"].update(sparsty=0.5),
                                  r"'compressions\.prune-u80\.sparsty': compression method "
                                  r"'prune' takes no knob 'sparsty' \(did you mean 'sparsity'\?\)"),
    "a pruning knob on PTQ": (lambda c: c["compressions"]["ptq-w8a8"].update(sparsity=0.5),
                              r"'compressions\.ptq-w8a8\.sparsity': compression method 'ptq' "
                              r"takes no knob"),
    "bits on pruning": (lambda c: c["compressions"]["prune-u80"].update(weight_bits=4),
                        r"'compressions\.prune-u80\.weight_bits': compression method 'prune'"),
    "a width factor on another student": (
        lambda c: c["compressions"]["kd-narrow"].update(student="resnet18"),
        r"'compressions\.kd-narrow\.width_factor': applies only where student is self"),
    "a temperature without distillation": (
        lambda c: c["compressions"].update(qat={"method": "qat", "weight_bits": 4, "act_bits": 4,
                                                "finetune_epochs": 1, "temperature": 2.0}),
        r"'compressions\.qat\.temperature': applies only where distill is true"),
    "a range search the observer cannot take": (
        lambda c: c["compressions"]["ptq-w8a8"].update(observer="histogram", range_search=True),
        r"'compressions\.ptq-w8a8\.range_search': applies only where observer is minmax or ema"),
    "misspelt defense knob": (lambda c: c["defenses"]["unpair-l5"].update(lamda=3),
                              r"'defenses\.unpair-l5\.lamda': defense method 'unpair' takes no "
                              r"knob 'lamda' \(did you mean 'lam'\?\)"),
    "a radius at clean points": (lambda c: c["defenses"]["unpair-l5"].update(radius=0.1),
                                 r"'defenses\.unpair-l5\.radius': applies only where points is "
                                 r"ball or pgd"),
    "a sign sharpness on another form": (
        lambda c: c["defenses"]["unpair-l5"].update(sign_sharpness=3.0),
        r"'defenses\.unpair-l5\.sign_sharpness': applies only where form is sign"),
    "an image size on a fixed-size dataset": (
        lambda c: c["dataset"].update(image_size=64),
        r"'dataset\.image_size': dataset 'fashion-mnist' takes no knob 'image_size'"),
}


@pytest.mark.parametrize("case", REFUSED_BEFORE_ANY_JOB)
def test_a_config_that_used_to_pass_is_refused_naming_the_key(case):
    edit, message = REFUSED_BEFORE_ANY_JOB[case]
    with pytest.raises(ConfigError, match=message) as err:
        Plan(broken(edit))
    assert "Traceback" not in str(err.value)


# Sizes the dataset cannot supply: refused with the dataset's own sizes, before any job.
TOO_LARGE = {
    "calibration split": (lambda c: c["dataset"].update(calib_size=60000),
                          r"'dataset\.calib_size': 60000 leaves no training images; the train "
                          r"part holds 60000"),
    "train subset": (lambda c: c["dataset"].update(calib_size=1000, train_subset=59500),
                     r"'dataset\.train_subset': 59500 exceeds the 59000 train images left"),
    "test subset": (lambda c: c["dataset"].update(test_subset=10001),
                    r"'dataset\.test_subset': 10001 exceeds the 10000 test images"),
    "attack images": (lambda c: c["attacks"]["pgd"].update(n_examples=501),
                      r"'attacks\.pgd\.n_examples': 501 exceeds the 500 test images"),
    "similarity images": (lambda c: c["similarity"].update(n_examples=600),
                          r"'similarity\.n_examples': 600 exceeds the 500 test images"),
}


@pytest.mark.parametrize("case", TOO_LARGE)
def test_a_size_the_dataset_cannot_supply_is_refused_before_any_job(case):
    from siblings.inputs import check_inputs

    edit, message = TOO_LARGE[case]
    with pytest.raises(ConfigError, match=message):
        check_inputs(Plan(broken(edit)).config)


def test_every_refusal_in_one_config_is_listed_at_once():
    def edit(c):
        c["attacks"]["pgd"].update(stpes=3)
        c["defenses"]["unpair-l5"].update(radius=0.1)

    with pytest.raises(ConfigError) as err:
        validate(broken(edit))
    assert "attacks.pgd.stpes" in str(err.value) and "defenses.unpair-l5.radius" in str(err.value)


def test_the_exported_schema_and_key_reference_are_what_the_declarations_give():
    from siblings.config_doc import README, SCHEMA_FILE, readme_with_keys, schema_yaml

    assert SCHEMA_FILE.read_text() == schema_yaml(), "run python -m siblings.config_doc"
    assert README.read_text() == readme_with_keys(README.read_text()), (
        "run python -m siblings.config_doc")


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "config").glob("*.yaml")))
def test_the_exported_schema_accepts_every_shipped_config(name):
    import jsonschema

    from siblings.config_doc import config_schema

    jsonschema.validate(yaml.safe_load((ROOT / f"config/{name}.yaml").read_text()),
                        config_schema())


def test_the_exported_schema_holds_each_method_to_its_own_knobs():
    import jsonschema

    from siblings.config_doc import config_schema

    cfg = broken(lambda c: c["attacks"]["pgd"].update(decay=0.5))
    with pytest.raises(jsonschema.ValidationError, match="'decay' was unexpected"):
        jsonschema.validate(cfg, config_schema())


def test_the_readme_quotes_the_recorded_times():
    from siblings.config_doc import TOP_README, readme_with_times

    assert TOP_README.read_text() == readme_with_times(TOP_README.read_text()), (
        "run python -m siblings.config_doc")


def test_every_recorded_run_time_measured_the_plan_its_config_makes_now():
    """A recorded time goes stale when its config's plan changes: re-measure, then record."""
    runs = yaml.safe_load((ROOT / "benchmarks/runs.yaml").read_text())
    plans = {}
    for path in (ROOT / "config").glob("*.yaml"):
        plan = Plan(yaml.safe_load(path.read_text()))
        plans[plan.config["name"]] = len(plan.jobs())
    for run, measured in runs.items():
        assert {"wall", "date", "commit", "machine"} <= set(measured), run
        if run != "make test":
            assert measured["jobs"] == plans[run], (
                f"benchmarks/runs.yaml: '{run}' was measured with {measured['jobs']} jobs; its "
                f"config plans {plans[run]} now")
