"""Running an experiment into a run directory, fresh or resumed.

Files of a run directory:

* ``config.json``  — the config as run (seed included),
* ``run_info.json`` — versions, platform, seeds, times, command line, status,
* ``metrics.jsonl`` — one JSON object per logged step,
* ``results.json`` — the experiment's final results (present = the run finished),
* ``checkpoint.pt`` — the last checkpoint (plain data, ``weights_only`` loadable),
* PNG plots and other artefacts written by the experiment.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsem.circuits.errors import QsemError
from qsem.errors import RunDirError
from qsem.io import exclusive_lock, read_json, read_jsonl, write_json, write_jsonl

from .checkpoint import CheckpointError, load_checkpoint
from .config import (
    ConfigError,
    Leaf,
    build_config,
    config_diff,
    config_schema,
    layer_config,
    validate_config,
)
from .context import CHECKPOINT_FILE, METRICS_FILE, MetricsLog, RunContext
from .finish import complete_finish, stale_temp_files
from .info import environment_info, now_iso, package_versions, seed_everything
from .safety import ARCHIVE_DIR, archive_run, check_devices, check_seed, sigterm_as_interrupt

__all__ = ["Experiment", "RunDirError", "RunResult", "run_experiment"]

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
RUN_INFO_FILE = "run_info.json"
LOCK_FILE = ".lock"

_NAME = re.compile(r"^_?[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Experiment:
    """A runnable experiment.

    Attributes:
        name: what ``qsem run NAME`` takes (lower case; a leading ``_`` hides it
            from ``qsem list``).
        description: one line for ``qsem list``.
        defaults: the default config, a dataclass instance or a nested dict; it
            must have an integer ``seed`` key.
        run: ``run(config, ctx) -> results``; ``config`` is built like
            ``defaults`` (a dataclass or a dict), ``ctx`` a
            :class:`~qsem.runner.context.RunContext`; ``results`` a dict of
            JSON-able values written to ``results.json``.
        checkpoint_every: default checkpoint period in steps (0: only forced ones).
        results: the top-level names of ``results.json``, where declared (empty: not
            declared), so that ``qsem sweep --metric`` is checked before any trial runs;
            a run whose results have other names fails (the declaration cannot drift).
    """

    name: str
    description: str
    defaults: Any
    run: Callable[[Any, RunContext], Mapping[str, Any]]
    checkpoint_every: int = 0
    results: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"experiment name {self.name!r} must match {_NAME.pattern}")
        schema = config_schema(self.defaults)
        seed = schema.get("seed")
        if not (isinstance(seed, Leaf) and seed.kind is int and not seed.optional):
            raise ValueError(f"experiment {self.name!r}: its config needs an integer 'seed' key")
        if self.checkpoint_every < 0:
            raise ValueError("checkpoint_every must be >= 0")

    @property
    def hidden(self) -> bool:
        return self.name.startswith("_")


@dataclass
class RunResult:
    """What :func:`run_experiment` returns."""

    out_dir: Path
    results: dict[str, Any]
    config: dict[str, Any]
    resumed_from_step: int | None = None
    already_complete: bool = False
    #: where the resumed run continued from, in the user's terms (``"stage heads, step 10"``)
    resumed_from: str | None = None
    #: what ``--resume`` repaired of a run killed while finishing (status, report, temp files)
    finish_completed: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def default_run_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``root/NAME-YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``, ... if taken)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    candidate, n = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def _locked(out_dir: Path) -> AbstractContextManager[None]:
    """Hold an exclusive lock on the run directory (its ``.lock`` file, removed on release)."""
    return exclusive_lock(
        out_dir / LOCK_FILE,
        f"run directory {out_dir} is in use by another qsem process",
        error=RunDirError,
        remove=True,
    )


def _contents(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir() if p.name not in (LOCK_FILE, ARCHIVE_DIR))


def _check_fresh_dir(out_dir: Path) -> None:
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


def _read_stored_config(out_dir: Path, defaults: Any, holds: str) -> dict[str, Any]:
    path = out_dir / CONFIG_FILE
    stored = read_json(path)
    try:
        return validate_config(stored, config_schema(defaults), str(path))
    except ConfigError as exc:
        raise RunDirError(f"cannot resume {out_dir}{holds}: {exc}") from None


def _read_run_info(out_dir: Path) -> dict[str, Any]:
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


def _check_resumable(out_dir: Path, experiment: Experiment) -> dict[str, Any]:
    """The stored run_info of a run of ``experiment`` in ``out_dir``, or a clear refusal."""
    if not out_dir.is_dir():
        raise RunDirError(f"nothing to resume: {out_dir} does not exist")
    if not (out_dir / CONFIG_FILE).exists():
        raise RunDirError(f"nothing to resume in {out_dir}: it has no {CONFIG_FILE}")
    info = _read_run_info(out_dir)
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
class _Start:
    """Where a run starts: its directory, config (plain and typed) and stored run_info."""

    out_dir: Path
    config: dict[str, Any]
    typed: Any
    info: dict[str, Any]


def _resume_start(
    experiment: Experiment, out: Any, requested: dict[str, Any], explicit: bool, report: bool
) -> _Start | RunResult:
    """The stored run to continue (or, when it has finished, its result; one killed
    while finishing gets the rest of its finish first)."""
    if out is None:
        raise RunDirError("--resume needs --out DIR: the directory of the run to continue")
    out_dir = Path(out)
    info = _check_resumable(out_dir, experiment)
    stored = _read_stored_config(out_dir, experiment.defaults, "")
    if explicit:
        diff = config_diff(stored, requested)
        if diff:
            raise RunDirError(
                f"cannot resume {out_dir}: the requested config differs from its "
                f"{CONFIG_FILE} ({'; '.join(diff)}); resume without config options to "
                "continue with the stored config, or start a new run with another --out"
            )
    typed = build_config(experiment.defaults, stored)
    if (out_dir / RESULTS_FILE).exists():  # finished, or killed while finishing
        with _locked(out_dir):
            info = _read_run_info(out_dir)  # again under the lock
            repaired = complete_finish(out_dir, info, report=report, write_report=_write_report)
        results = read_json(out_dir / RESULTS_FILE)
        return RunResult(
            out_dir,
            results,
            stored,
            already_complete=not repaired,
            finish_completed=repaired,
            info=info,
        )
    return _Start(out_dir, stored, typed, info)


def _fresh_start(
    experiment: Experiment, out: Any, requested: dict[str, Any], restart: bool, runs_root: Any
) -> _Start:
    """A new run directory (or, with ``restart``, one whose files will be archived)."""
    if restart and out is None:
        raise RunDirError("--restart needs --out DIR: the directory of the run to start over")
    typed = build_config(experiment.defaults, requested)  # its checks run before any file is made
    out_dir = Path(out) if out is not None else default_run_dir(experiment.name, runs_root)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir} exists and is not a directory")
    if not restart:
        _check_fresh_dir(out_dir)
    return _Start(out_dir, requested, typed, {})


class _RunInfo:
    """``run_info.json`` of the session being run: written at the start, at each
    checkpoint and at the end (``finish``)."""

    def __init__(
        self, experiment: Experiment, start: _Start, cmd: list[str], every: int,
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


def _open_run_dir(
    start: _Start, experiment: Experiment, resume: bool, restart: bool
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
    _check_fresh_dir(out_dir)  # again under the lock: another process may have started
    write_json(out_dir / CONFIG_FILE, start.config)
    return None, [], archived


def _check_declared_results(experiment: Experiment, results: Mapping[str, Any]) -> None:
    """Refuse results whose top-level names differ from ``experiment.results`` (if declared).

    The declaration is what ``qsem sweep --metric`` checks before any trial runs, so a
    drifted one is a bug in the experiment: this makes every run of it a test of it.
    """
    if not experiment.results:
        return
    missing = sorted(set(experiment.results) - set(results))
    extra = sorted(set(results) - set(experiment.results))
    if missing or extra:
        raise RuntimeError(
            f"experiment {experiment.name!r} returned results that differ from its declared "
            f"Experiment.results: missing {missing}, undeclared {extra} (a bug in the experiment)"
        )


def _execute(
    experiment: Experiment, typed: Any, ctx: RunContext, run_info: _RunInfo, report: bool
) -> None:
    """Run the experiment; results.json, run_info.json's status and report.html."""
    out_dir = ctx.out_dir
    try:
        results = experiment.run(typed, ctx)
        if not isinstance(results, Mapping):
            raise TypeError(
                f"experiment {experiment.name!r} returned {type(results).__name__}, "
                "expected a dict of results"
            )
        _check_declared_results(experiment, results)
        ctx.metrics.flush()
        write_json(out_dir / RESULTS_FILE, dict(results))
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        with suppress(Exception):  # keep what was logged; the original error wins
            ctx.metrics.flush()
        with suppress(Exception):
            run_info.finish(status, f"{type(exc).__name__}: {exc}")
        if report:
            with suppress(Exception):  # a partial report of what exists; never masks exc
                _write_report(out_dir)
        raise
    run_info.finish("completed")
    if report:
        _write_report(out_dir)


def run_experiment(
    experiment: Experiment,
    *,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    restart: bool = False,
    quiet: bool = False,
    checkpoint_every: int | None = None,
    command: Sequence[str] | None = None,
    runs_root: str | os.PathLike[str] = "runs",
    report: bool = True,
) -> RunResult:
    """Run ``experiment`` into a run directory and return its results.

    Config layers: the experiment's defaults, ``config_file``, ``overrides``
    (``"key=value"``), ``seed``. Without ``resume`` the directory ``out``
    (default ``runs_root/NAME-<timestamp>``) must be new or empty. With
    ``resume`` it must hold a run of the same experiment with its
    ``run_info.json`` and ``checkpoint.pt`` (else :class:`RunDirError`; nothing
    is restarted behind the user's back): its stored config is used (if config
    inputs are given too, they must produce the same config), metrics are cut
    back to the checkpoint and the experiment continues from it via
    ``ctx.restore()``. A finished run is left as it is; one killed after writing
    ``results.json`` gets the rest of its finish (status, report; see
    :mod:`qsem.runner.finish`). ``restart`` starts a
    fresh run in ``out`` after moving whatever it held into
    ``out/archive/<UTC time>/``. SIGTERM stops the run like Ctrl-C
    (``KeyboardInterrupt``, status ``interrupted``, resumable). With ``report``
    the run directory gets ``report.html`` at the end (finished, failed or
    interrupted).
    """
    if resume and restart:
        raise ConfigError("--resume and --restart exclude each other")
    explicit = config_file is not None or bool(overrides) or seed is not None
    if seed is not None:
        check_seed(seed, "argument '--seed'")
    requested = layer_config(experiment.defaults, file=config_file, overrides=overrides, seed=seed)
    every = experiment.checkpoint_every if checkpoint_every is None else int(checkpoint_every)
    if every < 0:
        raise ConfigError(f"argument 'checkpoint_every': must be >= 0, got {every}")
    cmd = list(command) if command is not None else [sys.executable, *sys.argv]
    if resume:
        start = _resume_start(experiment, out, requested, explicit, report)
        if isinstance(start, RunResult):
            return start
    else:
        start = _fresh_start(experiment, out, requested, restart, runs_root)
    config, out_dir = start.config, start.out_dir
    check_seed(config["seed"])
    check_devices(config)
    out_dir.mkdir(parents=True, exist_ok=True)

    with _locked(out_dir), sigterm_as_interrupt():
        payload, lines, archived = _open_run_dir(start, experiment, resume, restart)
        run_info = _RunInfo(experiment, start, cmd, every, payload, archived)
        ctx = RunContext(
            experiment=experiment.name,
            out_dir=out_dir,
            config=config,
            seed=int(config["seed"]),
            metrics=MetricsLog(out_dir / METRICS_FILE, lines),
            checkpoint_every=every,
            quiet=quiet,
            resume_payload=payload,
            on_checkpoint=run_info.checkpointed,
        )
        _execute(experiment, start.typed, ctx, run_info, report)
    return RunResult(
        out_dir=out_dir,
        results=read_json(out_dir / RESULTS_FILE),
        config=config,
        resumed_from_step=None if payload is None else int(payload["step"]),
        resumed_from=run_info.session["resumed_from"],
        info=run_info.info,
    )


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


def _write_report(out_dir: Path) -> None:
    """``report.html`` of the run; a failure to render is a warning, the run's files stay."""
    from qsem.report import write_report

    try:
        write_report(out_dir)
    except OSError:
        raise  # a full disk or a read-only directory: the CLI names the path
    except Exception as exc:  # a rendering bug must not turn a finished run into a failure
        print(
            f"qsem: warning: report.html not written: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )


def experiment_config_dict(experiment: Experiment) -> dict[str, Any]:
    """The experiment's default config as a plain nested dict."""
    return layer_config(experiment.defaults)
