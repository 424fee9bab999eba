"""Where trials run: one small interface, three engines.

:class:`TrialExecutor` — ``submit(spec, root)`` returns a future-like object
(``done()``, ``result()``), ``wait_any(futures)`` blocks until at least one is
done, ``close(wait)`` stops the engine; ``capacity`` is how many trials run at once.

* :class:`InProcessExecutor` — in the driver's process, one trial after another
  (``--workers 0``; for debugging);
* :class:`PoolExecutor` — a local process pool (``spawn``), ``workers`` processes
  with ``max(1, cores // workers)`` torch threads each;
* :class:`DaskExecutor` — Dask distributed: a scheduler at ``tcp://HOST:PORT``
  or a ``LocalCluster`` of ``N`` single-threaded worker processes (``local:N``).

Another engine is one more class with these four members.

>>> ex = make_executor(workers=0)
>>> ex.capacity, ex.describe()
(1, 'in this process')
>>> ex.close()
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol

from qsem.circuits.errors import MissingDependencyError, QsemError
from qsem.runner import ConfigError

from .trial import TrialOutcome, TrialSpec, run_trial

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DaskExecutor",
    "InProcessExecutor",
    "PoolExecutor",
    "TrialExecutor",
    "available_cores",
    "check_scheduler",
    "cluster_size",
    "make_executor",
    "require_distributed",
]


class FutureLike(Protocol):
    def done(self) -> bool: ...

    def result(self) -> Any: ...


class TrialExecutor(Protocol):
    """The interface every engine implements."""

    #: trials that run at the same time (the driver keeps this many submitted).
    capacity: int
    #: torch threads each trial gets (0: the worker's own setting).
    threads: int

    def submit(self, spec: TrialSpec, root: str) -> FutureLike: ...

    def wait_any(self, futures: Sequence[FutureLike]) -> list[FutureLike]: ...

    def describe(self) -> str: ...

    def close(self, wait: bool = True) -> None: ...


#: Default seconds to try to reach a Dask scheduler (``--connect-timeout``).
CONNECT_TIMEOUT_S = 5.0


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class InProcessExecutor:
    """Runs each trial at submission, in the driver's process."""

    capacity = 1
    threads = 0

    def submit(self, spec: TrialSpec, root: str) -> Future[TrialOutcome]:
        fut: Future[TrialOutcome] = Future()
        fut.set_result(run_trial(spec, root))
        return fut

    def wait_any(self, futures: Sequence[FutureLike]) -> list[FutureLike]:
        return list(futures)

    def describe(self) -> str:
        return "in this process"

    def close(self, wait: bool = True) -> None:
        pass


def _watch_parent(parent: int) -> None:  # pragma: no cover - runs in pool workers
    """Stop this worker when the driver dies: interrupt the trial (it stays resumable),
    then exit if it does not stop within 10 s."""
    import _thread

    while os.getppid() == parent:
        time.sleep(1.0)
    _thread.interrupt_main()
    time.sleep(10.0)
    os._exit(1)


#: whether this pool worker is running a trial now (SIGINT interrupts only a trial).
_IN_TRIAL = threading.Event()


def _worker_sigint(signum: int, frame: FrameType | None) -> None:  # pragma: no cover - workers
    """Ctrl-C in a pool worker: interrupt the trial it runs (it stays resumable); an idle
    worker ignores it, so the pool's own loop never prints a traceback."""
    if _IN_TRIAL.is_set():
        raise KeyboardInterrupt


def _init_pool_worker(threads: int, parent: int) -> None:  # pragma: no cover - in workers
    import torch

    from qsem.threads import redeliver_interrupts

    signal.signal(signal.SIGINT, _worker_sigint)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # spawned with it blocked
    redeliver_interrupts()  # a Ctrl-C raised inside a finalizer is not printed as ignored
    torch.set_num_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _pool_trial(spec: TrialSpec, root: str) -> TrialOutcome:  # pragma: no cover - in workers
    _IN_TRIAL.set()
    try:
        return run_trial(spec, root)
    finally:
        _IN_TRIAL.clear()


@contextmanager
def _sigint_held_for_children() -> Iterator[None]:
    """SIGINT blocked in this thread while pool workers are spawned.

    A process inherits its parent thread's signal mask, so a worker starts with SIGINT
    blocked: a Ctrl-C while it imports stays pending and prints nothing, until
    :func:`_init_pool_worker` installs the worker's handler and unblocks it. The pool's
    manager thread, started meanwhile, inherits the mask too. The driver loses nothing:
    a SIGINT that came meanwhile is delivered when the mask is restored, so the
    ``KeyboardInterrupt`` is raised right after the block. (Ignoring SIGINT instead, as
    before, dropped a Ctrl-C that came while workers were spawned: on a loaded machine
    the sweep then ran to its end.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a local Dask cluster starts its workers.

    A Dask worker runs in ``asyncio.run``, which turns a SIGINT into a
    ``KeyboardInterrupt`` with tracebacks unless SIGINT was already ignored when the
    interpreter started; a blocked signal does not do it (tried: the worker processes are
    spawned from the cluster's own threads). So the workers inherit SIG_IGN and keep it
    (the driver closes the cluster). A Ctrl-C during these seconds is lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class PoolExecutor:
    """A local pool of ``workers`` spawned processes. A pool broken by a worker's death
    is replaced at the next submission (the driver re-queues the trials it lost)."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self.threads = max(1, available_cores() // workers)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(self.threads, os.getpid()),
        )

    def submit(self, spec: TrialSpec, root: str) -> Future[TrialOutcome]:
        with _sigint_held_for_children():  # the pool spawns its processes at a submission
            try:
                return self._pool.submit(_pool_trial, spec, root)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                return self._pool.submit(_pool_trial, spec, root)

    def wait_any(self, futures: Sequence[FutureLike]) -> list[FutureLike]:
        done, _ = wait(futures, return_when=FIRST_COMPLETED)  # type: ignore[arg-type]
        return list(done)

    def describe(self) -> str:
        return f"local pool of {self.capacity} processes, {self.threads} torch thread(s) each"

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


def cluster_size(address: str) -> int | None:
    """``N`` for ``local:N``, None for a scheduler address (``SCHEME://HOST:PORT``);
    anything else raises ConfigError."""
    if address.startswith("local:"):
        text = address.removeprefix("local:")
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"--cluster {address!r}: write local:N with N >= 1 workers")
        return int(text)
    if "://" not in address:
        raise ConfigError(
            f"--cluster {address!r}: give a scheduler address (tcp://HOST:8786) or local:N"
        )
    return None


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """For ``tcp://HOST:PORT``: refuse at once (one line) when nothing accepts a connection
    there within ``timeout`` seconds, before the sweep makes any file."""
    if not address.startswith("tcp://"):
        return
    host, _, port = address.removeprefix("tcp://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--cluster {address!r}: write tcp://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise QsemError(
            f"--cluster {address}: no Dask scheduler answers there "
            f"({exc.strerror or type(exc).__name__}; waited at most {timeout:g} s, "
            "see --connect-timeout)"
        ) from None


def require_distributed() -> Any:
    """The ``distributed`` module, or an error naming the extra that installs it."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            "--cluster needs Dask distributed: pip install 'qsem[dask]'"
        ) from None
    return distributed


#: Each local worker process (and one its nanny restarts) is spawned with this variable,
#: read when it imports ``distributed``: its ``distributed`` loggers log only CRITICAL. A
#: worker whose heartbeat meets the scheduler's shutdown logs an ERROR with a traceback (a
#: CI run on a loaded machine printed one after a resumed sweep); trial failures reach the
#: driver through their futures.
_QUIET_WORKERS = {"distributed.nanny.pre-spawn-environ.DASK_LOGGING__DISTRIBUTED": "critical"}


class DaskExecutor:
    """Trials as Dask tasks, on a scheduler (``tcp://...``) or a ``LocalCluster`` (``local:N``).

    ``connect_timeout``: seconds to try to reach the scheduler before a one-line error.
    """

    def __init__(self, address: str, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        distributed = require_distributed()
        from dask import config as dask_config

        self._distributed = distributed
        self._cluster: Any = None
        self.address = address
        n = cluster_size(address)
        if n is not None:
            self.threads = max(1, available_cores() // n)
            # its worker processes inherit an ignored SIGINT (their event loops would print
            # tracebacks): a Ctrl-C stops the driver, which closes the cluster
            with _sigint_ignored(), dask_config.set(_QUIET_WORKERS):
                self._cluster = distributed.LocalCluster(
                    n_workers=n,
                    processes=True,
                    threads_per_worker=1,
                    dashboard_address=None,
                    silence_logs=40,  # logging.ERROR
                )
                self._client = distributed.Client(self._cluster)
            self.capacity = n
        else:
            try:
                self._client = distributed.Client(address, timeout=f"{connect_timeout}s")
            except (OSError, TimeoutError) as exc:
                raise QsemError(
                    f"--cluster {address}: no Dask scheduler answered within "
                    f"{connect_timeout:g} s (--connect-timeout); {type(exc).__name__}"
                ) from None
            except Exception as exc:  # something answers there, but not a Dask scheduler
                raise QsemError(
                    f"--cluster {address}: what answers there is not a Dask scheduler "
                    f"({type(exc).__name__})"
                ) from None
            self.threads = 0  # the workers' own setting (OMP_NUM_THREADS on the worker)
            nthreads = self._client.nthreads()
            self.capacity = max(1, sum(nthreads.values()))

    def submit(self, spec: TrialSpec, root: str) -> Any:
        # pure=False: a re-submitted trial (after a failure) really runs again
        return self._client.submit(run_trial, spec, root, pure=False)

    def wait_any(self, futures: Sequence[FutureLike]) -> list[FutureLike]:
        done, _ = self._distributed.wait(list(futures), return_when="FIRST_COMPLETED")
        return list(done)

    def describe(self) -> str:
        where = "local Dask cluster" if self._cluster is not None else f"Dask at {self.address}"
        return f"{where}, {self.capacity} worker thread(s)"

    def close(self, wait: bool = True) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(
    workers: int | None = None,
    cluster: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> TrialExecutor:
    """The engine for ``--workers`` / ``--cluster`` (default: a pool with one process per core)."""
    if cluster is not None:
        if workers is not None:
            raise ConfigError("--workers and --cluster exclude each other (local:N sets workers)")
        if not connect_timeout > 0:
            raise ConfigError(f"--connect-timeout must be > 0 seconds, got {connect_timeout}")
        return DaskExecutor(cluster, connect_timeout)
    if workers is None:
        workers = available_cores()
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    if workers == 0:
        return InProcessExecutor()
    return PoolExecutor(workers)
