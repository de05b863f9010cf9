import shutil

import pytest

from siblings.provenance import SRC, code_hash, config_hash, stage_modules


def test_stage_hash_follows_imports_only():
    attack_files = {p.relative_to(SRC).as_posix() for p in stage_modules("attack")}
    assert {"stages/attack.py", "models.py", "compress.py", "quant.py", "attacks/__init__.py",
            "attacks/base.py", "attacks/query.py", "attacks/transfer.py"} <= attack_files
    assert "stages/attack.py" not in {p.relative_to(SRC).as_posix()
                                      for p in stage_modules("train")}


@pytest.mark.parametrize("edited", ["stages/attack.py", "attacks/query.py"])
def test_editing_attack_code_changes_only_the_attack_hash(tmp_path, edited):
    src = tmp_path / "siblings"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    before = {s: code_hash(s, src) for s in ("data", "train", "compress", "attack")}
    with open(src / edited, "a") as f:
        f.write("\n# an edit\n")
    after = {s: code_hash(s, src) for s in before}
    assert after["attack"] != before["attack"]
    assert {s: after[s] for s in ("data", "train", "compress")} == {
        s: before[s] for s in ("data", "train", "compress")}


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
