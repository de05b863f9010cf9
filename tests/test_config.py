import copy
from pathlib import Path

import pytest
import yaml

from siblings.config import ConfigError, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def smoke() -> dict:
    return yaml.safe_load((ROOT / "config/smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["smoke", "config", "full", "zoo", "cifar10", "imagenet"])
def test_shipped_configs_validate(name):
    cfg = validate(yaml.safe_load((ROOT / f"config/{name}.yaml").read_text()), SCHEMA)
    assert cfg["train"]["batch_size"] >= 1 and cfg["threads"]["attack"] >= 1


def test_defaults_are_filled_without_touching_the_input():
    raw = smoke()
    cfg = validate(raw, SCHEMA)
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
                    r"config key 'train'.*'epochz' was unexpected"),
    "ptq without bits": (lambda c: c["compressions"].update({"ptq-x": {"method": "ptq"}}),
                         r"compressions\.ptq-x.*'weight_bits' is a required property"),
    "unknown role": (lambda c: c.update(source_roles=["oracle"]),
                     r"unknown source role 'oracle'"),
    "unknown role of an attack": (lambda c: c["attacks"]["pgd"].update(roles=["oracle"]),
                                  r"attacks\.pgd\.roles.*unknown source role 'oracle'; "
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
                                    r"attacks\.rgf\.queries': a query attack needs a query budget"),
    "cross-arch source not in the run": (
        lambda c: (c["archs"].update(vgg16={}), c.update(cross_arch={"resnet18": "alexnet"})),
        r"cross_arch\.resnet18.*unknown cross-arch source .* 'alexnet'; allowed: vgg16"),
    "cross-arch role without a source": (
        lambda c: (c["archs"].update(vgg16={}), c.update(cross_arch={"resnet18": "vgg16"}),
                   c["attacks"]["pgd"].update(roles=["cross-arch"])),
        r"cross-arch role of 'pgd' needs a source for vgg16"),
    "baseline with a prior": (lambda c: c["attacks"]["prgf"].update(baseline="pgd"),
                              r"attacks\.prgf\.baseline.*'pgd' is not a no-prior attack.*allowed: rgf"),
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
                                  r"similarity\.metrics.*unknown similarity metric 'psnr'"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_config_names_the_key(case):
    edit, message = CASES[case]
    with pytest.raises(ConfigError, match=message):
        validate(broken(edit), SCHEMA)


def test_key_order_does_not_change_the_validated_config():
    raw = smoke()
    shuffled = {k: raw[k] for k in reversed(list(raw))}
    assert repr(validate(shuffled, SCHEMA)) == repr(validate(raw, SCHEMA))


def test_a_width_on_an_architecture_without_a_knob_is_refused(monkeypatch):
    from dataclasses import replace

    from siblings.models import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES._items, "resnet18",
                        replace(ARCHITECTURES.get("resnet18"), unsupported={"width": "fixed"}))
    with pytest.raises(ConfigError, match=r"archs\.resnet18\.width': resnet18 has no width "
                                          r"knob \(fixed\); use 1\.0"):
        validate(smoke(), SCHEMA)
