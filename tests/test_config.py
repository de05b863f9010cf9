import copy
from pathlib import Path

import pytest
import yaml

from siblings.config import ConfigError, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def smoke() -> dict:
    return yaml.safe_load((ROOT / "config/smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["smoke", "config", "full"])
def test_shipped_configs_validate(name):
    cfg = validate(yaml.safe_load((ROOT / f"config/{name}.yaml").read_text()), SCHEMA)
    assert cfg["train"]["batch_size"] >= 1 and cfg["threads"]["attack"] >= 1


def test_defaults_are_filled_without_touching_the_input():
    raw = smoke()
    cfg = validate(raw, SCHEMA)
    assert cfg["source_roles"] == ["sibling", "independent", "whitebox"]
    assert cfg["attacks"]["pgd"]["norm"] == "linf" and cfg["attacks"]["pgd"]["seed"] == 0
    assert "source_roles" not in raw


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
    "unknown role of an attack": (lambda c: c["attacks"]["mifgsm"].update(roles=["oracle"]),
                                  r"attacks\.mifgsm\.roles.*unknown source role 'oracle'; "
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
        lambda c: c["cross_arch"].update(resnet18="alexnet"),
        r"cross_arch\.resnet18.*unknown cross-arch source .* 'alexnet'; allowed: vgg16"),
    "cross-arch role without a source": (
        lambda c: c["cross_arch"].pop("vgg16"),
        r"cross-arch role of 'mifgsm' needs a source for vgg16"),
    "baseline with a prior": (lambda c: c["attacks"]["prgf"].update(baseline="pgd"),
                              r"attacks\.prgf\.baseline.*'pgd' is not a no-prior attack.*allowed: rgf"),
    "unknown sibling of an attack": (lambda c: c["attacks"]["prgf"].update(siblings=["ptq-w3a3"]),
                                     r"attacks\.prgf\.siblings.*'ptq-w3a3' is not a compression id"),
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
