"""The sweep driver: :func:`run_sweep`.

The driver validates every trial, holds the sweep lock (``OUT/.sweep.lock``,
one driver per directory), records trial states in the ledger
(``OUT/sweep.db``), keeps ``capacity`` trials submitted to the executor, and
writes the statistics when the trials are over. Running it again on the same
``OUT`` (with or without ``resume=True``) skips finished trials and re-runs
interrupted ones from their checkpoints.

>>> from qsem.sweep import run_sweep  # doctest: +SKIP
>>> res = run_sweep("demo", seeds=[0, 1], grid={"lr": ["0.05", "0.1"]},
...                 fixed=["epochs=5"], out="sweeps/lr", workers=2)  # doctest: +SKIP
>>> res.summary["table"][0]["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsem.circuits.errors import QsemError
from qsem.io import exclusive_lock, read_json
from qsem.runner import RESULTS_FILE, ConfigError

from .executors import (
    CONNECT_TIMEOUT_S,
    TrialExecutor,
    available_cores,
    check_scheduler,
    cluster_size,
    make_executor,
    require_distributed,
)
from .ledger import Ledger, LedgerError
from .spec import Trial, make_trials
from .summary import format_table, summarise, write_summary
from .trial import TrialOutcome, TrialSpec

__all__ = ["LEDGER_FILE", "MAX_ATTEMPTS", "SweepResult", "run_sweep"]

LEDGER_FILE = "sweep.db"
LOCK_FILE = ".sweep.lock"
#: a trial whose worker process dies this many times is recorded as failed.
MAX_ATTEMPTS = 3


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns."""

    out_dir: Path
    summary: dict[str, Any]
    #: 0, or the exit code of the interruption: 130 (Ctrl-C), 128 + N (signal N, e.g. SIGTERM)
    interrupted: int = 0

    @property
    def failed(self) -> int:
        return int(self.summary["trials"].get("failed", 0))


def _sweep_lock(out_dir: Path) -> AbstractContextManager[None]:
    """One driver per sweep directory (``flock`` on ``DIR/.sweep.lock``)."""
    return exclusive_lock(
        out_dir / LOCK_FILE, f"sweep directory {out_dir} is in use by another 'qsem sweep' driver"
    )


def _stored_spec(out_dir: Path, experiment: str) -> dict[str, Any] | None:
    """The spec of the sweep already in ``out_dir``, or None for a new directory."""
    path = out_dir / LEDGER_FILE
    if not path.exists():
        if out_dir.is_dir() and any(p.name != LOCK_FILE for p in out_dir.iterdir()):
            raise QsemError(
                f"--out {out_dir} already contains files but no sweep ledger ({LEDGER_FILE}); "
                "choose a new --out"
            )
        return None
    ledger = Ledger(path)
    try:
        held = ledger.meta("experiment")
        spec = ledger.meta("spec")
    finally:
        ledger.close()
    if held is None or spec is None:
        raise LedgerError(f"{path} is not a qsem sweep ledger (no experiment recorded)")
    if held != experiment:
        raise LedgerError(
            f"{out_dir} holds a sweep of experiment {held!r}, not {experiment!r}; "
            f"continue it with: qsem sweep {held} --out {out_dir} --resume"
        )
    loaded = json.loads(spec)
    return loaded if isinstance(loaded, dict) else None


def _print(line: str) -> None:
    print(line, flush=True)


def _headline(outcome: TrialOutcome, metrics: Sequence[str] | None) -> str:
    names = list(metrics) if metrics else list(outcome.results)[:3]
    return ", ".join(f"{m}={outcome.results[m]:.4g}" for m in names if m in outcome.results)


def _resolve_spec(
    out_dir: Path,
    experiment: str,
    resume: bool,
    seeds: Sequence[int] | None,
    grid: Mapping[str, Sequence[str]] | None,
    fixed: Sequence[str] | None,
    metrics: Sequence[str] | None,
    checkpoint_every: int | None,
) -> dict[str, Any]:
    """The sweep's spec: each argument left ``None`` comes from the sweep already in ``out_dir``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise QsemError(f"--out {out_dir} exists and is not a directory")
    if resume and not (out_dir / LEDGER_FILE).is_file():
        raise QsemError(
            f"nothing to resume: --out {out_dir} holds no sweep (no {LEDGER_FILE}); start "
            f"one with: qsem sweep {experiment} --seeds ... --out DIR"
        )
    stored = _stored_spec(out_dir, experiment) if out_dir.is_dir() else None
    if resume and stored is None:
        raise QsemError(f"nothing to resume: {out_dir} holds no sweep ({LEDGER_FILE})")
    stored = stored or {}
    seeds = list(seeds) if seeds is not None else stored.get("seeds")
    if seeds is None:
        raise ConfigError("--seeds is required for a new sweep (e.g. --seeds 0-9)")
    if checkpoint_every is None:
        checkpoint_every = stored.get("checkpoint_every")
    if checkpoint_every is not None and checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {checkpoint_every}")
    return {
        "seeds": seeds,
        "grid": dict(grid) if grid is not None else dict(stored.get("grid", {})),
        "fixed": list(fixed) if fixed is not None else list(stored.get("fixed", [])),
        "metrics": list(metrics) if metrics else (stored.get("metrics") or None),
        "checkpoint_every": checkpoint_every,
    }


def _check_options(
    exp: Any,
    experiment: str,
    metrics: Sequence[str] | None,
    workers: int | None,
    cluster: str | None,
    connect_timeout: float,
) -> None:
    """Refuse unknown metrics and bad worker / cluster settings before anything runs."""
    if metrics and exp.results:
        unknown = [m for m in metrics if m.split(".")[0] not in exp.results]
        if unknown:
            raise ConfigError(
                f"--metric {unknown[0]!r}: {experiment} has no such result; its results: "
                + ", ".join(exp.results)
            )
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    if cluster is not None:
        if workers is not None:
            raise ConfigError("--workers and --cluster exclude each other (local:N sets workers)")
        cluster_size(cluster)  # the address and Dask are checked before anything runs
        if not connect_timeout > 0:
            raise ConfigError(f"--connect-timeout must be > 0 seconds, got {connect_timeout}")
        check_scheduler(cluster, connect_timeout)
        require_distributed()


def _starter(
    executor: TrialExecutor | None, cluster: str | None, workers: int | None, connect_timeout: float
) -> Callable[[int], TrialExecutor]:
    """The function that opens the executor once the number of queued trials is known."""

    def start(queued: int) -> TrialExecutor:
        if executor is not None:
            return executor
        if cluster is not None:
            return make_executor(cluster=cluster, connect_timeout=connect_timeout)
        n = available_cores() if workers is None else workers
        return make_executor(min(n, queued))

    return start


def run_sweep(
    experiment: str,
    *,
    out: str | os.PathLike[str],
    seeds: Sequence[int] | None = None,
    grid: Mapping[str, Sequence[str]] | None = None,
    fixed: Sequence[str] | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    metrics: Sequence[str] | None = None,
    checkpoint_every: int | None = None,
    executor: TrialExecutor | None = None,
    echo: Callable[[str], None] | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> SweepResult:
    """Run every (grid point, seed) of ``experiment`` into ``out`` and summarise them.

    ``seeds`` / ``grid`` / ``fixed`` / ``metrics`` left ``None`` come from the
    sweep already in ``out`` (``resume=True`` requires one). ``workers``: local
    pool size (default: the cores; 0: in this process); ``cluster``: a Dask
    scheduler address or ``local:N`` (``connect_timeout``: seconds to reach the
    scheduler); ``checkpoint_every``: each trial's
    checkpoint period in steps (None: the stored sweep's, else the experiment's
    own), so an interrupted trial resumes close to where it stopped;
    ``executor``: an engine of your own (see
    :class:`~qsem.sweep.executors.TrialExecutor`; the driver closes it). Failed
    trials are skipped on a re-run unless ``retry_failed``.
    """
    from qsem.experiments import get_experiment

    echo = echo or _print
    exp = get_experiment(experiment)
    out_dir = Path(out)
    spec = _resolve_spec(out_dir, experiment, resume, seeds, grid, fixed, metrics, checkpoint_every)
    metrics = spec["metrics"]
    # every config is checked before anything runs
    trials = make_trials(exp, spec["seeds"], spec["grid"], spec["fixed"])
    _check_options(exp, experiment, metrics, workers, cluster, connect_timeout)
    start = _starter(executor, cluster, workers, connect_timeout)

    out_dir.mkdir(parents=True, exist_ok=True)
    with _sweep_lock(out_dir):
        ledger = Ledger(out_dir / LEDGER_FILE)
        try:
            if ledger.meta("experiment", experiment) != experiment:
                raise LedgerError(f"{out_dir} holds a sweep of another experiment")
            ledger.set_meta("spec", json.dumps(spec))
            ledger.add(trials)
            interrupted = _execute(
                ledger, trials, out_dir, experiment, retry_failed, metrics, echo,
                start, spec["checkpoint_every"],
            )  # fmt: skip
            states = {(r.config_hash, r.seed): (r.state, r.error) for r in ledger.rows()}
        finally:
            ledger.close()
        summary = summarise(experiment, trials, states, out_dir, metrics)
        write_summary(summary, out_dir)
    echo(format_table(summary))
    counts = summary["trials"]
    echo(
        f"sweep {experiment}: {counts['done']} of {counts['total']} trials done, "
        f"{counts['failed']} failed; summary in {out_dir / 'summary.json'}"
    )
    return SweepResult(out_dir=out_dir, summary=summary, interrupted=interrupted)


def _unfinished(
    ledger: Ledger, trials: Sequence[Trial], out_dir: Path, retry_failed: bool
) -> list[Trial]:
    """The trials to run, in the listed order (a trial whose results exist is marked done)."""
    rows = {(r.config_hash, r.seed): r for r in ledger.rows()}
    queue: list[Trial] = []
    for t in trials:
        row = rows[t.key]
        wanted = row.state == "pending" or (row.state == "failed" and retry_failed)
        if wanted and (out_dir / t.run_dir / RESULTS_FILE).exists():
            ledger.mark_done(t.key)  # finished by a worker whose driver had died
        elif wanted:
            queue.append(t)
    return queue


@dataclass
class _Progress:
    """The driver's running count of finished trials, and how it reports one."""

    ledger: Ledger
    experiment: str
    out_dir: Path
    total: int
    finished: int
    metrics: Sequence[str] | None
    echo: Callable[[str], None]
    checked: bool = False

    def collect(self, fut: Any, t: Trial, queue: list[Trial]) -> None:
        """Record the trial ``t`` of the finished future ``fut`` in the ledger."""
        try:
            outcome: TrialOutcome = fut.result()
        except BrokenProcessPool:  # its worker died: every trial of that pool comes here
            _worker_died(self.ledger, t, queue, self.echo)
            return
        except Exception as exc:  # the engine lost the task (e.g. Dask KilledWorker)
            self.ledger.mark_failed(t.key, f"{type(exc).__name__}: {exc}")
            self.finished += 1
            self.echo(f"[{self.finished}/{self.total}] failed {t.run_dir}: {exc}")
            return
        self.finished += 1
        times: dict[str, Any] = {
            "start_time": outcome.start_time,
            "end_time": outcome.end_time,
            "wall_s": outcome.wall_s,
            "worker": outcome.worker,
        }
        if outcome.status != "done":
            self.ledger.mark_failed(t.key, outcome.error or "unknown error", **times)
            self.echo(f"[{self.finished}/{self.total}] failed {t.run_dir}: {outcome.error}")
            return
        self.ledger.mark_done(t.key, **times)
        if self.metrics and not self.checked:  # the first results show the metric names
            self.checked = True
            results = self.out_dir / t.run_dir / RESULTS_FILE
            _check_metrics(self.metrics, results, self.experiment)
        how = {"resume": " (resumed)", "complete": " (already complete)"}
        self.echo(
            f"[{self.finished}/{self.total}] done {t.run_dir} in {outcome.wall_s:.1f} s"
            f"{how.get(outcome.mode, '')}: {_headline(outcome, self.metrics)}"
        )


def _execute(
    ledger: Ledger,
    trials: Sequence[Trial],
    out_dir: Path,
    experiment: str,
    retry_failed: bool,
    metrics: Sequence[str] | None,
    echo: Callable[[str], None],
    start: Callable[[int], TrialExecutor],
    checkpoint_every: int | None = None,
) -> int:
    """Run the trials that are not finished; returns 0, or 130 / 128 + signal when stopped."""
    reset = ledger.reset_interrupted()
    if reset:
        echo(f"sweep {experiment}: {reset} interrupted trial(s) will run again")
    queue = _unfinished(ledger, trials, out_dir, retry_failed)
    done_before = len(trials) - len(queue)
    if not queue:
        echo(f"sweep {experiment}: all {len(trials)} trials are finished or failed; nothing to run")
        return 0
    executor = start(len(queue))
    echo(
        f"sweep {experiment}: {len(trials)} trials, {done_before} finished before, "
        f"{len(queue)} to run on {executor.describe()}"
    )
    queue.reverse()  # pop() from the end keeps the listed order
    inflight: dict[Any, Trial] = {}
    progress = _Progress(ledger, experiment, out_dir, len(trials), done_before, metrics, echo)
    interrupted = 0
    stopped = False
    try:
        while queue or inflight:
            while queue and len(inflight) < executor.capacity:
                t = queue.pop()
                ledger.mark_running(t.key)
                spec = TrialSpec(
                    experiment, t.run_dir, t.overrides, t.seed, t.key, executor.threads,
                    checkpoint_every,
                )  # fmt: skip
                inflight[executor.submit(spec, str(out_dir))] = t
            for fut in executor.wait_any(list(inflight)):
                progress.collect(fut, inflight.pop(fut), queue)
    except ConfigError:  # a --metric that the results do not have: stop, keep what ran
        stopped = True
        for t in inflight.values():
            ledger.mark_pending(t.key)
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI
        for t in inflight.values():
            ledger.mark_pending(t.key)
        echo(f"\nsweep {experiment}: stopped; run the same command again to continue")
        signum = getattr(exc, "signum", None)
        interrupted = 128 + signum if isinstance(signum, int) else 130
    finally:
        executor.close(wait=not (interrupted or stopped))
    return interrupted


def _check_metrics(metrics: Sequence[str], results_path: Path, experiment: str) -> None:
    """Refuse a ``--metric`` that is no number in the first finished trial's results."""
    from .summary import lookup, numeric_scalars

    results = read_json(results_path)
    for m in metrics:
        if lookup(results, m) is None:
            have = ", ".join(numeric_scalars(results)) or "no numeric results"
            raise ConfigError(
                f"--metric {m!r} is not a numeric result of {experiment} (its results: {have}); "
                "the sweep stopped after its first trial"
            )


def _worker_died(ledger: Ledger, t: Trial, queue: list[Trial], echo: Callable[[str], None]) -> None:
    row = ledger.get(t.key)
    if row.attempts >= MAX_ATTEMPTS:
        ledger.mark_failed(t.key, f"its worker process died {row.attempts} times")
        echo(f"failed {t.run_dir}: its worker process died {row.attempts} times")
    else:
        ledger.mark_pending(t.key)
        queue.append(t)
        echo(f"{t.run_dir}: its worker process died; it will run again")
