"""The one place that picks the compute device, and the settings that keep results exact on it.

``device`` in config is ``auto`` (CUDA when a GPU is visible, else the CPU), ``cpu`` or
``cuda``. The planner checks it before any job starts (:func:`check_available`); each job
resolves it again on its own node (:func:`resolve`), since a cluster's login node may have
no GPU while its compute nodes do. Config values that only change speed, never results,
may be given per device (``{cpu: 100, cuda: 1000}``) and are read with :func:`for_device`.
"""

from __future__ import annotations

import os

import torch

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """The config asks for a device this machine does not have."""


def cuda_available() -> bool:
    return torch.cuda.is_available()


def check_available(choice: str) -> None:
    """Refuses ``cuda`` where no CUDA device is visible, naming the key and the way out."""
    if choice not in DEVICES:
        raise DeviceError(f"config key 'device': '{choice}' is not one of {', '.join(DEVICES)}")
    if choice == "cuda" and not cuda_available():
        raise DeviceError(
            "config key 'device': 'cuda' was asked for, but torch sees no CUDA device here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). Use "
            "'auto' (CUDA when visible, else the CPU) or 'cpu', or run where a GPU is visible.")


def resolve(choice: str) -> torch.device:
    """The device a job computes on: ``auto`` takes CUDA when visible."""
    check_available(choice)
    if choice == "auto":
        choice = "cuda" if cuda_available() else "cpu"
    return torch.device(choice)


def exact_math(device: torch.device) -> None:
    """On a GPU: no TF32 and deterministic kernels. P-RGF's finite differences (sigma 1e-4)
    drown in TF32's 10-bit mantissa, and reruns must reproduce tables to the last digit.
    Must run before the first CUDA call (cuBLAS reads its workspace setting then)."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def describe(device: torch.device) -> str:
    """The device in words, for logs and the ``device`` column: ``cpu`` or ``cuda:<GPU name>``."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def for_device(value: object, device: torch.device) -> object:
    """``value`` itself, or its entry for ``device``'s type when given per device."""
    if isinstance(value, dict):
        return value.get(device.type)
    return value
