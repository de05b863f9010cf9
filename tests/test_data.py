import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from siblings import data
from siblings.data import DatasetNotFoundError, RawDataset, prepare, read_idx_gz


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(folder: Path, n_train: int = 50, n_test: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for key, fname in data.FASHION_MNIST_FILES.items():
        n = n_train if "train" in key else n_test
        arr = rng.integers(0, 256, (n, 28, 28)) if key.startswith("x") else np.arange(n) % 10
        write_idx(folder / fname, arr)


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert (read_idx_gz(tmp_path / "a.gz") == arr).all()


def test_fashion_mnist_reads_from_siblings_data(tmp_path, monkeypatch):
    fake_fashion_mnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("SIBLINGS_DATA", str(tmp_path))
    raw = data.DATASETS.get("fashion-mnist").load(None, False, None)
    assert raw.x_train.shape == (50, 1, 28, 28) and raw.x_train.dtype == torch.uint8
    assert raw.y_test.shape == (20,)
    assert raw.source == str(tmp_path / "fashion-mnist")


def test_missing_dataset_lists_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SIBLINGS_DATA", str(tmp_path / "home"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    with pytest.raises(DatasetNotFoundError) as err:
        data.DATASETS.get("fashion-mnist").load(str(tmp_path / "root"), False, None)
    msg = str(err.value)
    for place in ("root", "home/fashion-mnist", "debian"):
        assert str(tmp_path / place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_splits_are_seeded_disjoint_and_keep_the_official_test_set():
    raw = RawDataset(x_train=torch.arange(100).view(100, 1, 1, 1).to(torch.uint8),
                     y_train=torch.arange(100), x_test=torch.zeros(30, 1, 1, 1, dtype=torch.uint8),
                     y_test=torch.arange(30), mean=(0.0,), std=(1.0,), source="mem")
    a, b = prepare(raw, 10, seed=3), prepare(raw, 10, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(a["y_calib"].tolist()).isdisjoint(a["y_train"].tolist())
    assert len(a["y_calib"]) == 10 and len(a["y_train"]) == 90
    assert torch.equal(a["y_test"], raw.y_test)
    assert not torch.equal(prepare(raw, 10, seed=4)["y_calib"], a["y_calib"])
    with pytest.raises(ValueError, match="calib_size"):
        prepare(raw, 100, seed=0)


def test_cifar10_binary_is_read_without_unpickling(tmp_path):
    folder = tmp_path / data.CIFAR10_BIN
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rows = rng.integers(0, 256, (4, 3073), dtype=np.uint8)
        rows[:, 0] = np.arange(4)
        rows.tofile(folder / name)
    raw = data.DATASETS.get("cifar10").load(str(tmp_path), False, None)
    assert raw.x_train.shape == (20, 3, 32, 32) and raw.x_test.shape == (4, 3, 32, 32)
    assert raw.y_test.tolist() == [0, 1, 2, 3]


def test_missing_cifar10_names_the_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / data.CIFAR10_BIN)):
        data.DATASETS.get("cifar10").load(str(tmp_path), False, None)
