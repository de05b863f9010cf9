import pickle

import pytest
import torch

from siblings.artifacts import UnsafeArtifactError, atomic_path, load_tensors, save_tensors
from siblings.checkpoints import load_model


def test_roundtrip_with_sidecar(tmp_path):
    path = tmp_path / "m.safetensors"
    save_tensors(path, {"w": torch.arange(6.0).view(2, 3)}, {"arch": "x", "acc": 91.5})
    tensors, meta = load_tensors(path)
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3))
    assert meta == {"arch": "x", "acc": 91.5}


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_checkpoints_are_refused(tmp_path, writer):
    path = tmp_path / "evil.safetensors"
    state = {"w": torch.zeros(3)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    (tmp_path / "evil.json").write_text("{}")
    with pytest.raises(UnsafeArtifactError, match="never loaded"):
        load_tensors(path)
    with pytest.raises(UnsafeArtifactError):
        load_model(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("job died")
    assert list(tmp_path.iterdir()) == []
