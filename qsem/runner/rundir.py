"""The run directory's files: their names, the checks before a run starts or resumes,
the lock, and ``run_info.json`` of the session being run (see :mod:`qsem.runner.core`)."""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsem.circuits.errors import QsemError
from qsem.errors import RunDirError
from qsem.io import exclusive_lock, read_json, read_jsonl, write_json, write_jsonl

from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigError, config_schema, validate_config
from .context import CHECKPOINT_FILE, METRICS_FILE
from .experiment import Experiment
from .finish import stale_temp_files
from .info import environment_info, now_iso, package_versions, seed_everything
from .safety import ARCHIVE_DIR, archive_run

__all__ = [
    "CONFIG_FILE", "LOCK_FILE", "RESULTS_FILE", "RUN_INFO_FILE", "RunInfo", "Start",
    "check_fresh_dir", "check_resumable", "default_run_dir", "locked", "open_run_dir",
    "read_run_info", "read_stored_config",
]  # fmt: skip

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
RUN_INFO_FILE = "run_info.json"
LOCK_FILE = ".lock"


def default_run_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``root/NAME-YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``, ... if taken)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    candidate, n = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def locked(out_dir: Path) -> AbstractContextManager[None]:
    """Hold an exclusive lock on the run directory (its ``.lock`` file, removed on release)."""
    return exclusive_lock(
        out_dir / LOCK_FILE,
        f"run directory {out_dir} is in use by another qsem process",
        error=RunDirError,
        remove=True,
    )


def _contents(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir() if p.name not in (LOCK_FILE, ARCHIVE_DIR))


def check_fresh_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir():
        names = _contents(out_dir)
        if names:
            what = "a run" if CONFIG_FILE in names else "files"
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise RunDirError(
                f"run directory {out_dir} already contains {what} ({shown}); nothing is "
                "overwritten: continue it with --resume or choose a new --out"
            )


def read_stored_config(out_dir: Path, defaults: Any, holds: str) -> dict[str, Any]:
    path = out_dir / CONFIG_FILE
    stored = read_json(path)
    try:
        return validate_config(stored, config_schema(defaults), str(path))
    except ConfigError as exc:
        raise RunDirError(f"cannot resume {out_dir}{holds}: {exc}") from None


def read_run_info(out_dir: Path) -> dict[str, Any]:
    """The stored ``run_info.json``; missing or corrupt is refused, never replaced."""
    path = out_dir / RUN_INFO_FILE
    fix = (
        f"it holds the run's session history, so it is not replaced: restore it, or start "
        f"over with --restart (the old files are kept in {out_dir / ARCHIVE_DIR})"
    )
    if not path.exists():
        raise RunDirError(f"cannot resume {out_dir}: it has no {RUN_INFO_FILE}; {fix}")
    try:
        info = read_json(path)
    except QsemError as exc:
        raise RunDirError(f"cannot resume {out_dir}: {exc}; {fix}") from None
    if not isinstance(info, dict) or not isinstance(info.get("sessions", []), list):
        raise RunDirError(f"cannot resume {out_dir}: {path} is not a run_info object; {fix}")
    return info


def check_resumable(out_dir: Path, experiment: Experiment) -> dict[str, Any]:
    """The stored run_info of a run of ``experiment`` in ``out_dir``, or a clear refusal."""
    if not out_dir.is_dir():
        raise RunDirError(f"nothing to resume: {out_dir} does not exist")
    if not (out_dir / CONFIG_FILE).exists():
        raise RunDirError(f"nothing to resume in {out_dir}: it has no {CONFIG_FILE}")
    info = read_run_info(out_dir)
    holds = info.get("experiment")
    if holds != experiment.name:
        what = f"experiment {holds!r}" if isinstance(holds, str) else "an unnamed experiment"
        raise RunDirError(
            f"cannot resume {out_dir}: it holds a run of {what}, not {experiment.name!r}"
            + (f"; continue it with: qsem run {holds} --out {out_dir} --resume" if holds else "")
        )
    return info


def _read_metric_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    read_jsonl(path)  # validates every line, naming the file on error
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Start:
    """Where a run starts: its directory, config (plain and typed) and stored run_info."""

    out_dir: Path
    config: dict[str, Any]
    typed: Any
    info: dict[str, Any]


class RunInfo:
    """``run_info.json`` of the session being run: written at the start, at each
    checkpoint and at the end (``finish``)."""

    def __init__(
        self, experiment: Experiment, start: Start, cmd: list[str], every: int,
        payload: Mapping[str, Any] | None, archived: Path | None,
    ) -> None:  # fmt: skip
        config, old = start.config, start.info
        self.path = start.out_dir / RUN_INFO_FILE
        seeds = seed_everything(int(config["seed"]))
        self.start = time.time()
        self.session: dict[str, Any] = {
            "start_time": now_iso(),
            "end_time": None,
            "wall_time_s": None,
            "status": "running",
            "resumed_from_step": None if payload is None else int(payload["step"]),
            "resumed_from": None if payload is None else _where(old, payload),
            "command": cmd,
        }
        sessions = [s for s in old.get("sessions", []) if isinstance(s, dict)]
        sessions.append(self.session)
        self.previous_wall = sum(float(s.get("wall_time_s") or 0.0) for s in sessions[:-1])
        self.info: dict[str, Any] = {
            "experiment": experiment.name,
            "description": experiment.description,
            "status": "running",
            "command": cmd,
            "cwd": os.getcwd(),
            "out_dir": str(start.out_dir.resolve()),
            "seed": int(config["seed"]),
            "seeds": seeds,
            "versions": package_versions(),
            "platform": environment_info(),
            "start_time": old.get("start_time") or self.session["start_time"],
            "end_time": None,
            "wall_time_s": None,
            "checkpoint_every": every,
            "last_checkpoint_step": old.get("last_checkpoint_step"),
            "last_checkpoint": old.get("last_checkpoint"),
            "sessions": sessions,
            "error": None,
        }
        if archived is not None:
            self.info["archived_run"] = str(archived.relative_to(start.out_dir))
        write_json(self.path, self.info)

    def checkpointed(self, step: int, where: str) -> None:
        self.info["last_checkpoint_step"] = step  # the runner's own step count
        self.info["last_checkpoint"] = where  # in the user's terms (a stage, an epoch)
        write_json(self.path, self.info)

    def finish(self, status: str, error: str | None = None) -> None:
        wall = time.time() - self.start
        self.session.update(end_time=now_iso(), wall_time_s=round(wall, 3), status=status)
        self.info.update(
            status=status,
            end_time=self.session["end_time"],
            wall_time_s=round(self.previous_wall + wall, 3),
            error=error,
        )
        write_json(self.path, self.info)


def open_run_dir(
    start: Start, experiment: Experiment, resume: bool, restart: bool
) -> tuple[dict[str, Any] | None, list[str], Path | None]:
    """Under the lock: (checkpoint payload, metric lines kept, archive folder)."""
    out_dir = start.out_dir
    if resume:
        payload, lines = _resume_point(out_dir, experiment, start.config, start.info)
        for tmp in stale_temp_files(out_dir):  # of writes a kill interrupted
            tmp.unlink(missing_ok=True)
        write_jsonl(out_dir / METRICS_FILE, lines)
        return payload, lines, None
    archived = archive_run(out_dir, keep=(LOCK_FILE,)) if restart else None
    check_fresh_dir(out_dir)  # again under the lock: another process may have started
    write_json(out_dir / CONFIG_FILE, start.config)
    return None, [], archived


def _where(info: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    """The checkpoint a run resumes from, as ``run_info.json`` describes it."""
    where = info.get("last_checkpoint")
    recorded = info.get("last_checkpoint_step")
    if isinstance(where, str) and recorded == payload["step"]:
        return where
    return f"step {int(payload['step'])}"


def _resume_point(
    out_dir: Path, experiment: Experiment, config: dict[str, Any], info: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The checkpoint to continue from and the metric lines it covers; no checkpoint is refused."""
    ckpt = out_dir / CHECKPOINT_FILE
    metrics_path = out_dir / METRICS_FILE
    if not ckpt.exists():
        recorded = info.get("last_checkpoint_step")
        where = info.get("last_checkpoint") or f"step {recorded}"
        why = (
            f"{CHECKPOINT_FILE} is missing though {RUN_INFO_FILE} records one at {where}; "
            "restore the file, or start over"
            if recorded is not None
            else "the run stopped before its first checkpoint, so there is nothing to continue "
            "from; start it over"
        )
        raise RunDirError(
            f"cannot resume {out_dir}: {why} with --restart and the same config options "
            f"(its files move to {out_dir / ARCHIVE_DIR})"
        )
    lines = _read_metric_lines(metrics_path)
    payload = load_checkpoint(ckpt, experiment=experiment.name, config=config)
    keep = int(payload["metrics_lines"])
    if keep > len(lines):
        raise CheckpointError(
            f"checkpoint {ckpt} records {keep} metric lines but {metrics_path} has "
            f"only {len(lines)}; the run directory was modified"
        )
    return payload, lines[:keep]
