"""What a running experiment sees: :class:`RunContext`.

``run(config, ctx)`` logs metrics, checkpoints and restores its state, shows
progress bars and saves figures through ``ctx``; every file lands in the run
directory and every write is atomic.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from qsem.circuits.errors import QsemValueError
from qsem.io import atomic_write_bytes, atomic_write_text, dumps_json, write_json, write_jsonl

from .checkpoint import save_checkpoint, set_rng_state

__all__ = ["CHECKPOINT_FILE", "METRICS_FILE", "MetricsLog", "RunContext"]

T = TypeVar("T")

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"


class MetricsLog:
    """``metrics.jsonl``, kept in memory and rewritten atomically on every flush.

    The file on disk is therefore always whole (no torn last line) and holds
    every record logged up to the last flush. Flushes happen at checkpoints, at
    the end of a run (also a failed one) and at most every ``flush_seconds``
    in between.
    """

    def __init__(
        self, path: Path, lines: list[str] | None = None, flush_seconds: float = 10.0
    ) -> None:
        self.path = path
        self.lines: list[str] = list(lines or [])
        self.flush_seconds = flush_seconds
        self._flushed = -1
        self._last = time.monotonic()

    def __len__(self) -> int:
        return len(self.lines)

    def append(self, record: Mapping[str, Any]) -> None:
        self.lines.append(dumps_json(dict(record), indent=None))
        if time.monotonic() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._flushed != len(self.lines):
            write_jsonl(self.path, self.lines)
            self._flushed = len(self.lines)
        self._last = time.monotonic()


class RunContext:
    """Services of the runner for one experiment run.

    Attributes:
        out_dir: the run directory.
        seed: the run's seed (already applied to Python, NumPy and torch).
        quiet: no progress bars or messages.
        checkpoint_every: ``checkpoint`` writes when ``step % checkpoint_every == 0``
            (0: only when forced).
        resumed: whether this run continues from a checkpoint; call :meth:`restore`.
    """

    def __init__(
        self,
        *,
        experiment: str,
        out_dir: Path,
        config: Mapping[str, Any],
        seed: int,
        metrics: MetricsLog,
        checkpoint_every: int = 0,
        quiet: bool = False,
        resume_payload: Mapping[str, Any] | None = None,
        on_checkpoint: Callable[[int, str], None] | None = None,
    ) -> None:
        self.experiment = experiment
        self.out_dir = out_dir
        self.seed = seed
        self.quiet = quiet
        self.checkpoint_every = checkpoint_every
        self.metrics = metrics
        self._config = dict(config)
        self._payload = resume_payload
        self._restored = resume_payload is None
        self.checkpoints_written = 0
        self._on_checkpoint = on_checkpoint

    # -- files -------------------------------------------------------------

    def path(self, name: str) -> Path:
        """Path of a file ``name`` inside the run directory."""
        p = Path(name)
        if p.is_absolute() or ".." in p.parts:
            raise QsemValueError(
                f"argument 'name': {name!r} must be a plain name inside the run directory"
            )
        return self.out_dir / p

    def write_json(self, name: str, value: Any) -> Path:
        """Atomically write an extra JSON artefact into the run directory."""
        target = self.path(name)
        write_json(target, value)
        return target

    def write_text(self, name: str, text: str) -> Path:
        """Atomically write an extra text artefact (a table, a report) into the run directory."""
        target = self.path(name)
        atomic_write_text(target, text)
        return target

    def save_figure(self, figure: Any, name: str, *, dpi: int = 120) -> Path:
        """Atomically save a matplotlib figure (PNG unless ``name`` says otherwise)."""
        target = self.path(name)
        buffer = io.BytesIO()
        figure.savefig(
            buffer, format=target.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight"
        )
        atomic_write_bytes(target, buffer.getvalue())
        return target

    # -- metrics and messages ----------------------------------------------

    def log(self, step: int, **values: Any) -> None:
        """Append one record ``{"step": step, **values}`` to ``metrics.jsonl``.

        Tensors and NumPy scalars become numbers; NaN / inf become ``null``.
        """
        if not self._restored:
            raise RuntimeError(
                "a resumed run must call ctx.restore() before logging, "
                "otherwise it would log steps the checkpoint already covers"
            )
        self.metrics.append({"step": int(step), **values})

    def records(self) -> list[dict[str, Any]]:
        """Every metric record of this run so far (earlier sessions of a resumed run included)."""
        return [json.loads(line) for line in self.metrics.lines]

    @property
    def label(self) -> str:
        """How messages name this run: the experiment (a part adds its tags:
        ``"story, stage heads"``)."""
        return self.experiment

    def echo(self, message: str) -> None:
        """Print a message to stderr unless quiet."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def progress(
        self,
        iterable: Iterable[T],
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str | None = None,
    ) -> Iterator[T]:
        """A tqdm progress bar on stderr; when stderr is not a terminal (a log file, a
        batch job) a plain line every :data:`PROGRESS_LOG_S` seconds instead
        (``QSEM_PROGRESS_SECONDS`` sets it); nothing when quiet.

        The returned object has ``set_postfix`` (shown in the bar or the line).
        """
        from tqdm.auto import tqdm

        terminal = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        name = desc or self.label
        if not self.quiet and not terminal:
            return _LogProgress(iterable, total, initial, name, progress_seconds())
        bar: Iterator[T] = tqdm(
            iterable,
            total=total,
            initial=initial,
            desc=name,
            disable=self.quiet,
            dynamic_ncols=True,
            leave=False,
            file=sys.stderr,
        )
        return bar

    # -- checkpoints ---------------------------------------------------------

    @property
    def resumed(self) -> bool:
        return self._payload is not None

    @property
    def resume_step(self) -> int | None:
        """Step of the checkpoint this run continues from (``None`` for a fresh run)."""
        return None if self._payload is None else int(self._payload["step"])

    def restore(self) -> dict[str, Any] | None:
        """The state saved by the last checkpoint, or ``None`` for a fresh run.

        Call it once the model and optimiser are built (building consumes random
        numbers) and right before the training loop: it also restores the global
        Python, NumPy and torch generators to their state at the checkpoint, so a
        resumed run continues exactly like an uninterrupted one.
        """
        self._restored = True
        if self._payload is None:
            return None
        set_rng_state(self._payload["rng"])
        state: dict[str, Any] = self._payload["state"]
        return state

    def checkpoint_due(self, step: int) -> bool:
        """Whether :meth:`checkpoint` at ``step`` would write."""
        return self.checkpoint_every > 0 and step % self.checkpoint_every == 0

    def checkpoint(
        self,
        step: int,
        state: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        *,
        force: bool = False,
        where: str | None = None,
    ) -> bool:
        """Checkpoint after ``step`` completed steps, if due (or ``force``).

        ``where`` says in the user's terms where the run is (default ``"step N"``;
        a part of a run adds its own name, e.g. ``"stage heads, step 10"``); it is
        recorded in ``run_info.json`` as ``last_checkpoint`` and shown on resume.

        ``state`` (or the zero-argument function returning it, called only when a
        checkpoint is written) holds tensors and plain data: model and optimiser
        ``state_dict()``s, counters, lists of numbers. The runner adds the step,
        the RNG states and the number of metric lines so far. Metrics are flushed
        first, so the checkpoint never points past what is on disk.
        """
        if not (force or self.checkpoint_due(step)):
            return False
        snapshot = state() if callable(state) else state
        self.metrics.flush()
        save_checkpoint(
            self.out_dir / CHECKPOINT_FILE,
            experiment=self.experiment,
            config=self._config,
            step=step,
            metrics_lines=len(self.metrics),
            state=snapshot,
        )
        self.checkpoints_written += 1
        if self._on_checkpoint is not None:
            self._on_checkpoint(step, where or f"step {step}")
        return True


#: Seconds between progress lines when stderr is not a terminal (``QSEM_PROGRESS_SECONDS``).
PROGRESS_LOG_S = 30.0


def progress_seconds() -> float:
    """:data:`PROGRESS_LOG_S`, or the environment's ``QSEM_PROGRESS_SECONDS`` (> 0)."""
    text = os.environ.get("QSEM_PROGRESS_SECONDS", "")
    try:
        value = float(text)
    except ValueError:
        return PROGRESS_LOG_S
    return value if value > 0 else PROGRESS_LOG_S


class _LogProgress(Generic[T]):
    """Iterate ``iterable``; every ``every`` seconds print ``desc: done/total (p %), t s``
    (and the postfix) to stderr: the progress of a run whose stderr is a log file."""

    def __init__(
        self, iterable: Iterable[T], total: int | None, initial: int, desc: str, every: float
    ) -> None:
        self._it, self.total, self.n = iter(iterable), total, initial
        self.desc, self.every, self.postfix = desc, every, ""
        self._start = self._last = time.monotonic()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        values = {**dict(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
        )

    def _line(self, elapsed: float) -> str:
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done}{share}, {elapsed:.0f} s{tail}"

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = next(self._it)  # the step before it is done once the next is asked for
        now = time.monotonic()
        if now - self._last >= self.every:
            print(self._line(now - self._start), file=sys.stderr, flush=True)
            self._last = now
        self.n += 1
        return item
