"""Seeding and the provenance recorded in ``run_info.json``."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import random
import sys
from importlib import metadata
from typing import Any

import numpy as np
import torch

from qsem.threads import torch_threads

__all__ = [
    "environment_info",
    "now_iso",
    "package_versions",
    "seed_everything",
    "torch_threads",
]

#: Distributions whose versions every run records (``None`` where not installed).
RECORDED_PACKAGES = (
    "qsem",
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "qiskit",
    "qiskit-aer",
    "qiskit-aer-gpu",
    "pennylane",
    "pennylane-lightning",
)


def seed_everything(seed: int) -> dict[str, int]:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Returns the seeds used, as recorded in ``run_info.json``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the global generator is the point
    torch.manual_seed(seed)  # seeds every CUDA device as well
    return {"python": seed, "numpy": seed % 2**32, "torch": seed}


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata; nothing is imported."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment_info() -> dict[str, Any]:
    """Platform, interpreter, CPU / GPU and thread facts of this process."""
    info: dict[str, Any] = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
        info["cuda_version"] = torch.version.cuda
    return info


def now_iso() -> str:
    """The current local time with its UTC offset, ISO 8601, to the second."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")
