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

import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsem.errors import RunDirError
from qsem.io import read_json, write_json

from .config import ConfigError, build_config, config_diff, layer_config
from .context import METRICS_FILE, MetricsLog, RunContext
from .experiment import Experiment
from .finish import complete_finish
from .rundir import (
    CONFIG_FILE,
    LOCK_FILE,
    RESULTS_FILE,
    RUN_INFO_FILE,
    RunInfo,
    Start,
    check_fresh_dir,
    check_resumable,
    default_run_dir,
    locked,
    open_run_dir,
    read_run_info,
    read_stored_config,
)
from .safety import check_devices, check_seed, sigterm_as_interrupt

__all__ = [
    "CONFIG_FILE", "LOCK_FILE", "RESULTS_FILE", "RUN_INFO_FILE", "Experiment", "RunDirError",
    "RunResult", "default_run_dir", "experiment_config_dict", "run_experiment",
]  # fmt: skip


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


def _resume_start(
    experiment: Experiment, out: Any, requested: dict[str, Any], explicit: bool, report: bool
) -> Start | RunResult:
    """The stored run to continue (or, when it has finished, its result; one killed
    while finishing gets the rest of its finish first)."""
    if out is None:
        raise RunDirError("--resume needs --out DIR: the directory of the run to continue")
    out_dir = Path(out)
    info = check_resumable(out_dir, experiment)
    stored = read_stored_config(out_dir, experiment.defaults, "")
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
        with locked(out_dir):
            info = read_run_info(out_dir)  # again under the lock
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
    return Start(out_dir, stored, typed, info)


def _fresh_start(
    experiment: Experiment, out: Any, requested: dict[str, Any], restart: bool, runs_root: Any
) -> Start:
    """A new run directory (or, with ``restart``, one whose files will be archived)."""
    if restart and out is None:
        raise RunDirError("--restart needs --out DIR: the directory of the run to start over")
    typed = build_config(experiment.defaults, requested)  # its checks run before any file is made
    out_dir = Path(out) if out is not None else default_run_dir(experiment.name, runs_root)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir} exists and is not a directory")
    if not restart:
        check_fresh_dir(out_dir)
    return Start(out_dir, requested, typed, {})


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
    experiment: Experiment, typed: Any, ctx: RunContext, run_info: RunInfo, report: bool
) -> None:
    """Run the experiment; results.json, run_info.json's status and report.html."""
    out_dir = ctx.out_dir
    try:
        results = experiment(typed, ctx)  # under its thread setting
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

    with locked(out_dir), sigterm_as_interrupt():
        payload, lines, archived = open_run_dir(start, experiment, resume, restart)
        run_info = RunInfo(experiment, start, cmd, every, payload, archived)
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
