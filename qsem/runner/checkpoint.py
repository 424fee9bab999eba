"""Checkpoints: atomic, plain-data only, loaded with ``torch.load(weights_only=True)``.

A checkpoint file holds a dict::

    {"format": "qsem-checkpoint", "version": 1, "experiment": name,
     "config_sha256": ..., "step": int, "metrics_lines": int,
     "rng": {"python": ..., "numpy": ..., "torch": ..., "cuda": [...]},
     "state": <the experiment's state: tensors, numbers, strings, lists, dicts>}

Only tensors and plain data are allowed in it, so that loading never runs code
from the file. A state that would not load back that way is
refused when saving, not discovered at resume time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qsem.circuits.errors import QsemTypeError
from qsem.errors import CheckpointError
from qsem.io import atomic_write_bytes

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "config_sha256",
    "get_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "qsem-checkpoint"
VERSION = 1


def config_sha256(config: Mapping[str, Any]) -> str:
    """Hash of a config's canonical JSON (sorted keys): ties a checkpoint to its run."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def get_rng_state() -> dict[str, Any]:
    """The global Python, NumPy and torch (CPU and CUDA) generator states, as plain data."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 - the global generator
    assert isinstance(np_state, dict)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - the global generator
        {
            "bit_generator": str(n["bit_generator"]),
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _load_bytes(data: bytes) -> Any:
    with warnings.catch_warnings():  # a foreign file is reported by the error, not a warning
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    experiment: str,
    config: Mapping[str, Any],
    step: int,
    metrics_lines: int,
    state: Mapping[str, Any],
) -> None:
    """Atomically write a checkpoint; refuses a state that ``weights_only`` could not load."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "experiment": experiment,
        "config_sha256": config_sha256(config),
        "step": int(step),
        "metrics_lines": int(metrics_lines),
        "rng": get_rng_state(),
        "state": dict(state),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    try:
        _load_bytes(data)
    except Exception as exc:
        raise QsemTypeError(
            "argument 'state': a checkpoint may hold only tensors, numbers, strings, None, "
            f"lists, tuples and dicts (it is loaded with weights_only=True); {exc}".splitlines()[0]
        ) from None
    atomic_write_bytes(path, data)


def load_checkpoint(
    path: str | os.PathLike[str], *, experiment: str, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Load and check a checkpoint of ``experiment`` run with ``config``.

    Never unpickles arbitrary objects (``weights_only=True``). A corrupt file, a
    file that is not a qsem checkpoint, or one from another experiment or config
    raises :class:`CheckpointError` naming the file.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {p}: cannot be read ({exc.strerror or exc})") from None
    try:
        payload = _load_bytes(data)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {p} is corrupt or not a plain-data torch file "
            f"(refusing to unpickle anything else): {reason}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {p} is not a qsem checkpoint (no format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {p} has format version {payload.get('version')!r}; "
            f"this qsem reads version {VERSION}"
        )
    if payload.get("experiment") != experiment:
        raise CheckpointError(
            f"checkpoint {p} belongs to experiment {payload.get('experiment')!r}, "
            f"not {experiment!r}"
        )
    if payload.get("config_sha256") != config_sha256(config):
        raise CheckpointError(
            f"checkpoint {p} was written by a run with a different config "
            "(config.json does not match it)"
        )
    required = {"step": int, "metrics_lines": int, "rng": dict, "state": dict}
    for key, kind in required.items():
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"checkpoint {p}: field {key!r} is missing or malformed")
    if payload["step"] < 0 or payload["metrics_lines"] < 0:
        raise CheckpointError(f"checkpoint {p}: negative step or metrics offset")
    return payload
