"""Dataset registry and the fixed, seeded train/calibration/test splits every stage shares.

A dataset loader returns raw uint8 images (N, C, H, W) and int64 labels for the official
train and test parts. ``prepare`` carves a calibration split off the training part with a
seeded permutation (the test split stays the official one), optionally subsamples for
smoke runs, and the ``data`` stage stores the result as one safetensors file so every
later stage reads exactly the same tensors.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from siblings.knobs import BOOLEAN, STRING, Knob, integer
from siblings.registry import Registry


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is nowhere we looked; the message lists every place and how to get it."""


@dataclass(frozen=True)
class RawDataset:
    """Official train/test parts as uint8 NCHW images plus int64 labels, and normalisation
    stats. Images are a tensor, or (image folders) decoded when indexed with a tensor."""

    x_train: torch.Tensor | _DecodedOnIndex
    y_train: torch.Tensor
    x_test: torch.Tensor | _DecodedOnIndex
    y_test: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str


@dataclass(frozen=True)
class DataShape:
    """What a dataset's images look like once loaded: channels, classes and side (px), and
    how many images its official train and test parts hold."""

    channels: int
    classes: int
    side: int
    train: int
    test: int


@dataclass(frozen=True)
class Dataset:
    """A registered dataset. ``load(root, download, image_size)`` reads its official parts;
    ``shape(root, download, image_size)`` runs before any job, decodes nothing, and
    refuses a root that cannot hold the dataset (naming config key ``dataset.root``).
    ``knobs`` are its own config keys beside :data:`DATASET_KNOBS`; ``doc`` says what it is."""

    load: Callable[[str | None, bool, int | None], RawDataset]
    shape: Callable[[str | None, bool, int | None], DataShape]
    knobs: dict[str, Knob] = field(default_factory=dict)
    doc: str = ""


# The keys of the ``dataset`` section every dataset takes.
DATASET_KNOBS = {
    "name": Knob(STRING, "the registered dataset", required=True),
    "root": Knob({"type": ["string", "null"]}, "folder to read the dataset from first", None),
    "download": Knob(BOOLEAN, "fall back to a download when no local copy is found", True),
    "calib_size": Knob(integer(1), "calibration images carved off the train part, with "
                       "split_seed", 1000),
    "split_seed": Knob(integer(0), "seeds the calibration split and the subsets", 0),
    "train_subset": Knob(integer(1, nullable=True), "train on only this many of the "
                         "remaining train images (null: all)", None),
    "test_subset": Knob(integer(1, nullable=True), "test on only this many test images "
                        "(null: all)", None),
}


DATASETS: Registry[Dataset] = Registry("dataset")

FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def data_home() -> Path:
    """Where downloads go and local copies are looked for first: ``$SIBLINGS_DATA`` or ./data."""
    return Path(os.environ.get("SIBLINGS_DATA", "data")).resolve()


def read_idx_gz(path: Path) -> np.ndarray:
    """Reads one IDX file (the MNIST format): magic, dims, then big-endian uint8 payload."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_dir_complete(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / name).is_file() for name in files.values())


def _missing(name: str, looked: list[Path], how: str) -> DatasetNotFoundError:
    places = "\n".join(f"  - {p}" for p in looked)
    return DatasetNotFoundError(f"dataset '{name}' not found. Looked in:\n{places}\n{how}")


def _root_exists(root: str | None) -> None:
    """A root the config names must be a folder; unset, the loaders look elsewhere."""
    if root is not None and not Path(root).is_dir():
        raise DatasetNotFoundError(f"config key 'dataset.root': {Path(root).resolve()} is not "
                                   "a folder")


def _fashion_mnist_shape(root: str | None, download: bool, image_size: int | None) -> DataShape:
    """A named root must exist: downloads go to ``$SIBLINGS_DATA``, never to it."""
    _root_exists(root)
    return DataShape(1, 10, 28, 60000, 10000)


def fashion_mnist(root: str | None, download: bool, image_size: int | None) -> RawDataset:
    """Fashion-MNIST from IDX gz files: ``root``, ``$SIBLINGS_DATA``, Debian's package, or download."""
    candidates = ([Path(root)] if root else []) + [data_home() / "fashion-mnist",
                                                    DEBIAN_FASHION_MNIST, _downloaded(data_home())]
    folder = next((c for c in candidates if _idx_dir_complete(c, FASHION_MNIST_FILES)), None)
    if folder is None and download:
        folder = _download_fashion_mnist(data_home())
    if folder is None:
        tried = "The download was tried and failed. " if download else ""
        raise _missing("fashion-mnist", candidates,
                       f"{tried}Get it with `apt-get install dataset-fashion-mnist` (Debian), "
                       "set dataset.download: true (needs internet), or point dataset.root "
                       "at a folder holding the four IDX .gz files.")
    arrays = {k: read_idx_gz(folder / f) for k, f in FASHION_MNIST_FILES.items()}
    return RawDataset(
        x_train=torch.from_numpy(arrays["x_train"].copy()).unsqueeze(1),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=torch.from_numpy(arrays["x_test"].copy()).unsqueeze(1),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        mean=(0.2860,), std=(0.3530,), source=str(folder),
    )


DATASETS.register("fashion-mnist")(Dataset(
    fashion_mnist, _fashion_mnist_shape,
    doc="Fashion-MNIST, 28 px grey, 60,000 train and 10,000 test images (Debian's "
        "dataset-fashion-mnist, $SIBLINGS_DATA, or torchvision's downloader)"))


def _downloaded(home: Path) -> Path:
    """Where torchvision's downloader leaves the IDX files (searched on later runs too)."""
    return home / "torchvision" / "FashionMNIST" / "raw"


def _download_fashion_mnist(home: Path) -> Path | None:
    """torchvision's downloader, for users with internet; None when it cannot fetch."""
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(home / "torchvision"), train=True, download=True)
        FashionMNIST(str(home / "torchvision"), train=False, download=True)
    except (OSError, RuntimeError) as err:  # no network, or a broken mirror
        print(f"fashion-mnist download failed: {err}")
        return None
    return _downloaded(home)


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_BIN = "cifar-10-batches-bin"


def _read_cifar_bin(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR's binary format: per image one label byte, then 3x32x32 bytes (no pickle)."""
    rows = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, 3073) for f in files])
    return (torch.from_numpy(rows[:, 1:].reshape(-1, 3, 32, 32).copy()),
            torch.from_numpy(rows[:, 0].astype(np.int64)))


def _cifar10_files(root: str | None) -> tuple[Path, list[Path], Path]:
    folder = Path(root) if root else data_home() / "cifar10"
    return (folder, [folder / CIFAR10_BIN / f"data_batch_{i}.bin" for i in range(1, 6)],
            folder / CIFAR10_BIN / "test_batch.bin")


def _cifar10_missing(folder: Path) -> DatasetNotFoundError:
    return _missing("cifar10", [folder / CIFAR10_BIN],
                    f"Point dataset.root at the folder holding {CIFAR10_BIN}/ (the binary "
                    f"version, {CIFAR10_URL}), or set dataset.download: true.")


def _cifar10_shape(root: str | None, download: bool, image_size: int | None) -> DataShape:
    """With ``download`` the root is where the archive goes; without, it must hold it."""
    folder, train_files, test_file = _cifar10_files(root)
    if not download:
        _root_exists(root)
        if not all(f.is_file() for f in [*train_files, test_file]):
            raise _cifar10_missing(folder)
    return DataShape(3, 10, 32)


def cifar10(root: str | None, download: bool, image_size: int | None) -> RawDataset:
    """CIFAR-10 in its binary version (``cifar-10-batches-bin``) under ``root`` or ``$SIBLINGS_DATA``.

    The binary files are read with numpy: the Python version of CIFAR is pickled, and
    this project never unpickles anything.
    """
    folder, train_files, test_file = _cifar10_files(root)
    if download and not all(f.is_file() for f in [*train_files, test_file]):
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(CIFAR10_URL, str(folder))
        except (OSError, RuntimeError) as err:
            print(f"cifar10 download failed: {err}")
    if not all(f.is_file() for f in [*train_files, test_file]):
        raise _cifar10_missing(folder)
    x_train, y_train = _read_cifar_bin(train_files)
    x_test, y_test = _read_cifar_bin([test_file])
    return RawDataset(x_train, y_train, x_test, y_test, mean=(0.4914, 0.4822, 0.4465),
                      std=(0.2470, 0.2435, 0.2616), source=str(folder))


DATASETS.register("cifar10")(Dataset(
    cifar10, _cifar10_shape,
    doc="CIFAR-10 in its binary version, 32 px colour, 50,000 train and 10,000 test images"))


IMAGEFOLDER_PARTS = ("train", "val")


def _imagefolder_classes(root: str | None) -> list[str]:
    """The class folders of ``root/train`` (``root/val`` must have the same), decoding nothing."""
    parts = [Path(root or "<dataset.root unset>") / part for part in IMAGEFOLDER_PARTS]
    if not root or not all(p.is_dir() for p in parts):
        raise _missing("imagefolder", parts, "Set config key 'dataset.root' to a folder with "
                       "train/ and val/ class sub-folders (the ImageNet layout).")
    classes = [sorted(d.name for d in p.iterdir() if d.is_dir()) for p in parts]
    if not classes[0] or classes[0] != classes[1]:
        raise DatasetNotFoundError(f"config key 'dataset.root': {parts[0]} and {parts[1]} must "
                                   f"hold the same class folders (found {len(classes[0])} and "
                                   f"{len(classes[1])})")
    return classes[0]


IMAGEFOLDER_SIZE = 32  # the side image folders are resized to unless dataset.image_size says


def _image_count(folder: Path) -> int:
    """Images (by torchvision's extensions) in the class folders of ``folder``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sum(1 for d in folder.iterdir() if d.is_dir() for f in d.iterdir()
               if f.suffix.lower() in IMG_EXTENSIONS)


def _imagefolder_shape(root: str | None, download: bool, image_size: int | None) -> DataShape:
    classes = _imagefolder_classes(root)
    train, val = (_image_count(Path(root) / part) for part in IMAGEFOLDER_PARTS)
    return DataShape(3, len(classes), image_size or IMAGEFOLDER_SIZE, train, val)


class _DecodedOnIndex:
    """An image folder's images, decoded (resized, centre-cropped, RGB, uint8) only when
    indexed: the splits take their seeded subset first, so an ImageNet-size train folder
    never has to fit in memory."""

    def __init__(self, folder: Path, image_size: int) -> None:
        from torchvision import transforms
        from torchvision.datasets import ImageFolder

        tf = transforms.Compose([transforms.Resize(image_size),
                                 transforms.CenterCrop(image_size), transforms.PILToTensor()])
        self.images = ImageFolder(str(folder), transform=tf)
        self.image_size = image_size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.images), 3, self.image_size, self.image_size)

    def labels(self) -> torch.Tensor:
        return torch.tensor(self.images.targets)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        from tqdm import tqdm

        return torch.stack([self.images[i][0].expand(3, -1, -1)
                            for i in tqdm(index.tolist(), desc="decoding images",
                                          mininterval=30)])


def imagefolder(root: str | None, download: bool, image_size: int | None) -> RawDataset:
    """An ImageNet-style tree ``root/{train,val}/<class>/<image>``, resized to ``image_size``
    (32 px unless set), RGB; images are decoded once the splits have picked them."""
    _imagefolder_classes(root)
    side = image_size or IMAGEFOLDER_SIZE
    train, val = (_DecodedOnIndex(Path(root) / part, side) for part in IMAGEFOLDER_PARTS)
    return RawDataset(train, train.labels(), val, val.labels(), mean=(0.485, 0.456, 0.406),
                      std=(0.229, 0.224, 0.225), source=str(root))


DATASETS.register("imagefolder")(Dataset(
    imagefolder, _imagefolder_shape,
    {"image_size": Knob(integer(8, nullable=True), "the side images are resized and "
                        f"centre-cropped to (null: {IMAGEFOLDER_SIZE})", None)},
    "an ImageNet-style folder root/{train,val}/<class>/<image>, RGB, decoded only for the "
    "images the splits pick"))


class _LazyTensors(Mapping):
    """The tensors of a safetensors file, each read on first use: an attack job needs the
    test split only, and an ImageNet-scale train split would not fit every job's memory."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self._file = safe_open(str(path), framework="pt")
        self._cache: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._cache:
            self._cache[name] = self._file.get_tensor(name)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._file.keys())

    def __len__(self) -> int:
        return len(self._file.keys())


@dataclass(frozen=True)
class Splits:
    """The seeded splits (uint8 images) every stage reads from the ``data`` artifact,
    handed out on ``device``."""

    tensors: Mapping[str, torch.Tensor]
    meta: dict
    device: torch.device = torch.device("cpu")

    @classmethod
    def load(cls, path: str | Path, device: torch.device = torch.device("cpu")) -> "Splits":
        from siblings.artifacts import check_safetensors, verified_sidecar

        meta = verified_sidecar(path)
        check_safetensors(Path(path))
        return cls(_LazyTensors(Path(path)), meta, device)

    def images(self, split: str) -> torch.Tensor:
        """Images of ``split`` as float in [0, 1]: the pixel space attacks' eps refers to."""
        return self.tensors[f"x_{split}"].to(self.device).float().div_(255.0)

    def labels(self, split: str) -> torch.Tensor:
        return self.tensors[f"y_{split}"].to(self.device)


def prepare(raw: RawDataset, calib_size: int, seed: int, train_subset: int | None = None,
            test_subset: int | None = None) -> dict[str, torch.Tensor]:
    """Seeded calibration split off the train part; optional seeded subsets for smoke runs."""
    n_train = len(raw.y_train)
    if not 0 < calib_size < n_train:
        raise ValueError(f"dataset.calib_size must be in (0, {n_train}), got {calib_size}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_train, generator=g)
    calib, train = perm[:calib_size], perm[calib_size:]
    if train_subset is not None:
        train = train[:train_subset]
    test = torch.arange(len(raw.y_test))
    if test_subset is not None:
        test = torch.randperm(len(raw.y_test), generator=g)[:test_subset].sort().values
    return {
        "x_train": raw.x_train[train].contiguous(), "y_train": raw.y_train[train].contiguous(),
        "x_calib": raw.x_train[calib].contiguous(), "y_calib": raw.y_train[calib].contiguous(),
        "x_test": raw.x_test[test].contiguous(), "y_test": raw.y_test[test].contiguous(),
    }


MIN_INPUT_SIZE = 32  # every architecture is adapted to inputs of 32 px or more; smaller are padded


def model_input_size(shape: DataShape) -> int:
    return max(MIN_INPUT_SIZE, shape.side)
