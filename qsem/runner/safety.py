"""Run safety: checks made before a run starts, SIGTERM as an interruption, ``--restart``.

These are the runner's guards against losing work or showing a traceback for a
user's mistake:

* :func:`check_seed` — seeds are ``0 <= seed < 2**32`` (NumPy's range; a negative
  seed would be silently wrapped);
* :func:`check_devices` — every ``device`` key of a config names a torch device
  that exists on this machine (``device=cuda`` without CUDA is a config error,
  not a traceback from deep inside torch);
* :func:`sigterm_as_interrupt` — ``kill PID`` (SIGTERM) ends a run like Ctrl-C:
  marked interrupted, lock released, resumable;
* :func:`archive_run` — ``--restart`` moves the earlier run's files into
  ``archive/<UTC time>/`` inside the run directory; nothing is deleted.

>>> check_seed(7)
>>> check_seed(-1)
Traceback (most recent call last):
...
qsem.errors.ConfigError: config key 'seed': must be an integer with 0 <= seed < 2**32, got -1
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from qsem.checks import SEED_LIMIT, seed_problem
from qsem.errors import ConfigError

__all__ = [
    "ARCHIVE_DIR",
    "SEED_LIMIT",
    "Terminated",
    "archive_run",
    "check_devices",
    "check_seed",
    "sigterm_as_interrupt",
]

#: Folder of a run directory where ``--restart`` keeps the earlier run's files.
ARCHIVE_DIR = "archive"


class Terminated(KeyboardInterrupt):
    """A run stopped by a signal (SIGTERM): handled exactly like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")
        self.signum = signum


def check_seed(seed: Any, what: str = "config key 'seed'") -> None:
    """Refuse a seed outside ``0 <= seed < 2**32`` (or not an integer), naming ``what``."""
    problem = seed_problem(seed)
    if problem is not None:
        raise ConfigError(f"{what}: {problem}")


def _device_keys(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        if isinstance(value, Mapping):
            yield from _device_keys(value, f"{prefix}{key}.")
        elif key == "device":
            yield f"{prefix}{key}", value


def check_devices(config: Mapping[str, Any]) -> None:
    """Check every ``device`` key (at any depth) names a torch device present here.

    ``cuda`` / ``cuda:N`` need ``torch.cuda.is_available()`` and ``N`` below the
    device count; ``mps`` needs the MPS backend. The error names the key and
    says what this machine has.
    """
    import torch

    for key, value in _device_keys(config):
        if value is None:
            continue
        try:
            device = torch.device(value)
        except (RuntimeError, TypeError, ValueError):
            raise ConfigError(
                f"config key '{key}': {value!r} is not a torch device (use 'cpu' or 'cuda')"
            ) from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(
                    f"config key '{key}': {value!r} requested but CUDA is not available on this "
                    f"machine (torch {torch.__version__}); use {key}=cpu"
                )
            count = torch.cuda.device_count()
            if device.index is not None and device.index >= count:
                raise ConfigError(
                    f"config key '{key}': {value!r} requested but this machine has {count} "
                    f"CUDA device(s) (cuda:0 .. cuda:{count - 1})"
                )
        elif device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(
                f"config key '{key}': {value!r} requested but MPS is not available; use {key}=cpu"
            )
        elif device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"config key '{key}': device type {device.type!r} is not supported")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``).

    Only the main thread can install signal handlers; elsewhere this is a
    no-op. The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def archive_run(out_dir: Path, keep: tuple[str, ...] = ()) -> Path | None:
    """Move everything in ``out_dir`` (but ``archive/`` and ``keep``) to ``archive/<UTC time>/``.

    Returns the archive folder, or ``None`` when there was nothing to move. The
    moves are renames inside one directory tree: nothing is copied or deleted.
    """
    names = [p for p in sorted(out_dir.iterdir()) if p.name not in (ARCHIVE_DIR, *keep)]
    if not names:
        return None
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = out_dir / ARCHIVE_DIR / stamp
    n = 2
    while target.exists():
        target = out_dir / ARCHIVE_DIR / f"{stamp}-{n}"
        n += 1
    target.mkdir(parents=True)
    for path in names:
        os.replace(path, target / path.name)
    return target
