"""Running one trial where a worker runs it: :func:`run_trial`.

The trial becomes an ordinary run directory through
:func:`qsem.runner.run_experiment`. How it starts is decided from what the
directory holds, never from the ledger:

* ``results.json`` present -> finished already: nothing runs;
* ``checkpoint.pt`` present -> resume from it (``resume=True``);
* the directory absent or empty -> a fresh run;
* a directory with a config but no checkpoint (killed or failed before its first
  checkpoint) -> start over (``restart=True``: the runner moves the old files
  into the run's ``archive/``).

Before starting, the worker waits for the run directory's ``.lock`` (held by a
worker of a driver that was killed and is still finishing), so a trial never
runs twice at the same time.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsem.io import is_locked
from qsem.runner import CHECKPOINT_FILE, CONFIG_FILE, RESULTS_FILE, run_experiment
from qsem.runner.core import LOCK_FILE
from qsem.runner.info import now_iso

from .summary import numeric_scalars

__all__ = ["TrialOutcome", "TrialSpec", "run_trial", "start_mode"]


@dataclass(frozen=True)
class TrialSpec:
    """What a worker needs to run one trial (plain data: it travels by pickle).

    ``threads``: torch intra-op threads for the run (0: leave the worker's setting);
    ``checkpoint_every``: the run's checkpoint period in steps (None: the experiment's).
    """

    experiment: str
    run_dir: str
    overrides: tuple[str, ...]
    seed: int
    key: tuple[str, int]
    threads: int = 0
    checkpoint_every: int | None = None


@dataclass
class TrialOutcome:
    """What a worker reports back: ``status`` is ``"done"`` or ``"failed"``."""

    key: tuple[str, int]
    status: str
    mode: str
    start_time: str
    end_time: str
    wall_s: float
    worker: str
    error: str | None = None
    #: the numeric top-level scalars of ``results.json`` (for the progress line).
    results: dict[str, float] = field(default_factory=dict)


def start_mode(run_dir: Path) -> str:
    """``"complete"``, ``"resume"``, ``"fresh"`` or ``"restart"`` (see the module docstring)."""
    if (run_dir / RESULTS_FILE).exists():
        return "complete"
    if (run_dir / CHECKPOINT_FILE).exists():
        return "resume"
    if not run_dir.is_dir() or not (run_dir / CONFIG_FILE).exists():
        return "fresh"
    return "restart"


def _wait_for_lock(run_dir: Path, poll_s: float = 0.5) -> None:
    """Block while another process holds the run directory's lock."""
    while is_locked(run_dir / LOCK_FILE):
        time.sleep(poll_s)


def run_trial(spec: TrialSpec, root: str) -> TrialOutcome:
    """Run ``spec`` into ``root/spec.run_dir``; errors become a ``"failed"`` outcome.

    ``KeyboardInterrupt`` (the driver stopping) is not caught: the run is left
    interrupted and resumable.
    """
    from qsem.experiments import get_experiment
    from qsem.threads import torch_threads

    run_dir = Path(root) / spec.run_dir
    worker = f"{platform.node()}:{os.getpid()}"
    start, tick = now_iso(), time.perf_counter()
    mode = "?"
    try:
        if run_dir.is_dir():
            _wait_for_lock(run_dir)
        mode = start_mode(run_dir)
        kwargs: dict[str, Any] = {
            "overrides": list(spec.overrides),
            "seed": spec.seed,
            "out": run_dir,
            "quiet": True,
            "checkpoint_every": spec.checkpoint_every,
            "command": ["qsem", "sweep", spec.experiment, *spec.overrides, f"--seed={spec.seed}"],
        }
        if mode in ("complete", "resume"):
            kwargs["resume"] = True
        elif mode == "restart":
            kwargs["restart"] = True
        else:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
        with torch_threads(spec.threads):
            result = run_experiment(get_experiment(spec.experiment), **kwargs)
        status, error, results = "done", None, numeric_scalars(result.results)
    except Exception as exc:
        status, error, results = "failed", f"{type(exc).__name__}: {exc}".strip(), {}
    return TrialOutcome(
        key=spec.key,
        status=status,
        mode=mode,
        start_time=start,
        end_time=now_iso(),
        wall_s=round(time.perf_counter() - tick, 3),
        worker=worker,
        error=error,
        results=results,
    )
