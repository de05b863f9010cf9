import json
import pickle

import pandas as pd
import pyarrow as pa
import pytest
import torch

from siblings.artifacts import (CHECKSUM_KEY, RERUN_VARIABLE, CorruptArtifactError,
                                UnsafeArtifactError, atomic_path, file_sha256, load_tensors,
                                read_parquet, save_tensors, write_parquet)
from siblings.cards import ModelCard, read_card
from siblings.checkpoints import load_model
from siblings.stages.runner import stage
from conftest import tiny_spec


def test_roundtrip_with_sidecar(tmp_path):
    path = tmp_path / "m.safetensors"
    save_tensors(path, {"w": torch.arange(6.0).view(2, 3)}, {"arch": "x", "acc": 91.5})
    tensors, meta = load_tensors(path)
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3))
    assert meta == {"arch": "x", "acc": 91.5}
    assert CHECKSUM_KEY in json.loads((tmp_path / "m.json").read_text())


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_checkpoints_are_refused(tmp_path, writer):
    path = tmp_path / "evil.safetensors"
    state = {"w": torch.zeros(3)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    # even with a sidecar whose checksum matches, a pickle is never loaded
    (tmp_path / "evil.json").write_text(json.dumps({CHECKSUM_KEY: file_sha256(path)}))
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


@pytest.fixture
def stored_model(tmp_path, monkeypatch):
    """A stored full model, and the run's command the workflow would name."""
    from siblings.models import create_model

    monkeypatch.setenv(RERUN_VARIABLE, "make bench CONFIG=config/smoke.yaml")
    model = create_model(tiny_spec())
    card = ModelCard(kind="full", spec=model.spec, seed=0, n_correct=5, n_test=10,
                     parameters=1, seconds=0.0, code_version="x", device="cpu")
    path = tmp_path / "seed0.safetensors"
    save_tensors(path, model.state_dict(), card.to_dict())
    return path


def refused(path, load=load_model):
    with pytest.raises(CorruptArtifactError) as err:
        load(path)
    return str(err.value)


def test_truncated_or_altered_weights_are_refused_by_name_with_the_regenerating_command(
        stored_model):
    load_model(stored_model)
    data = stored_model.read_bytes()
    stored_model.write_bytes(data[: len(data) // 2])
    message = refused(stored_model)
    assert message.startswith(f"{stored_model} is corrupted (its SHA-256 differs")
    assert "rerun `make bench CONFIG=config/smoke.yaml`" in message
    flipped = bytearray(data)
    flipped[-5] ^= 1  # one bit of one weight: still a valid safetensors file
    stored_model.write_bytes(bytes(flipped))
    assert "SHA-256 differs" in refused(stored_model)


def test_a_truncated_or_foreign_sidecar_is_refused_by_name(stored_model):
    sidecar = stored_model.with_suffix(".json")
    text = sidecar.read_text()
    sidecar.write_text(text[: len(text) // 2])
    assert refused(stored_model).startswith(f"{sidecar} is corrupted (not valid JSON")
    assert refused(sidecar, read_card).startswith(f"{sidecar} is corrupted (not valid JSON")
    card = json.loads(text)
    del card["n_correct"]
    card["accuracy"] = 50.0
    sidecar.write_text(json.dumps(card))
    assert (f"{sidecar} is corrupted (not a model card: missing ['n_correct'], unknown "
            f"['accuracy'])") in refused(stored_model)


def test_truncated_or_altered_parquet_is_refused_by_name(tmp_path):
    path = tmp_path / "t.parquet"
    df = pd.DataFrame({"x": range(1000), "y": [0.5] * 1000})
    write_parquet(pa.Table.from_pandas(df, preserve_index=False), path)
    pd.testing.assert_frame_equal(read_parquet(path), df)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    assert refused(path, read_parquet).startswith(f"{path} is corrupted (Parquet that does not")
    flipped = bytearray(data)
    flipped[200] ^= 0xFF  # inside the first data page: only its checksum can tell
    path.write_bytes(bytes(flipped))
    assert "does not read back" in refused(path, read_parquet)


def test_a_stage_ends_on_a_corrupted_input_with_the_message_not_a_stack_trace(
        stored_model, tmp_path, capsys):
    stored_model.write_bytes(stored_model.read_bytes()[:100])
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit) as ended:
        with stage(str(log), threads=1, seed=0, device=None):
            load_model(stored_model)
    assert ended.value.code == 1
    assert log.read_text().startswith(f"error: {stored_model} is corrupted")
    assert "Traceback" not in log.read_text()
    assert capsys.readouterr().err.startswith(f"siblings error: {stored_model} is corrupted")
