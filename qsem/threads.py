"""Thread settings for torch, usable from any layer of the package.

>>> import torch
>>> from qsem.threads import torch_threads
>>> before = torch.get_num_threads()
>>> with torch_threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from qsem.errors import arg_error

__all__ = [
    "SMALL_STATE_BYTES",
    "clear_unhandled_interrupt_mark",
    "one_thread_backward",
    "redeliver_interrupts",
    "set_thread_policy",
    "small_state_threads",
    "thread_policy",
    "torch_threads",
]

#: Under the (opt-in) ``"auto"`` policy a simulation whose state (all batch elements together)
#: holds fewer bytes than this runs on one torch thread (see :func:`small_state_threads`).
SMALL_STATE_BYTES = 1 << 18

_POLICIES = ("auto", "torch")
#: ``None`` until first read: then ``QSEM_THREAD_POLICY`` (default ``"torch"``), checked
_policy: dict[str, str | None] = {"value": None}


def set_thread_policy(policy: str) -> None:
    """How qsem's engine uses torch's threads: ``"torch"`` (the default) or ``"auto"``.

    ``"auto"``: a simulation whose state is smaller than :data:`SMALL_STATE_BYTES`
    runs its forward pass, and the backward pass from its output on, with one torch
    thread; torch's setting is restored when the run returns and when that backward
    call ends. A step of such a simulation is hundreds of operations of a few
    microseconds each, and a second thread costs more to wake for each of them than it
    saves; but switching the thread count twice per training step costs about as much
    again (measured on a loaded 2-core machine: no net gain), so it is opt-in.
    ``"torch"`` (default): qsem never changes torch's thread setting. The environment
    variable ``QSEM_THREAD_POLICY`` sets the policy at import. For a small register the
    fastest setting is one thread for the whole training loop (``torch_threads(1)``).

    >>> set_thread_policy("auto"); thread_policy()
    'auto'
    >>> set_thread_policy("torch")
    """
    if policy not in _POLICIES:
        raise arg_error("policy", f"expected 'auto' or 'torch', got {policy!r}")
    _policy["value"] = policy


def thread_policy() -> str:
    """The current policy (:func:`set_thread_policy`; at first the environment's).

    An invalid ``QSEM_THREAD_POLICY`` is refused here, by one line naming the variable.
    """
    value = _policy["value"]
    if value is None:
        value = os.environ.get("QSEM_THREAD_POLICY", "torch")
        if value not in _POLICIES:
            raise arg_error("QSEM_THREAD_POLICY", f"expected 'auto' or 'torch', got {value!r}")
        _policy["value"] = value
    return value


def _one_thread(state_bytes: int) -> bool:
    return (
        thread_policy() == "auto"
        and state_bytes < SMALL_STATE_BYTES
        and torch.get_num_threads() > 1
    )


@contextmanager
def small_state_threads(state_bytes: int) -> Iterator[None]:
    """One torch thread inside the block for a small state (policy ``"auto"``), then
    the previous setting; otherwise nothing changes."""
    if not _one_thread(state_bytes):
        yield
        return
    with torch_threads(1):
        yield


def one_thread_backward(output: torch.Tensor, state_bytes: int) -> None:
    """Run the backward pass from ``output`` on one thread (policy ``"auto"``, small state).

    A hook on ``output`` sets one thread when its gradient arrives and queues the
    restore of the previous setting for the end of that backward call (so the rest of
    the call, the user's layers before the simulation included, runs on one thread
    too; nothing outlives the call).
    """
    if not output.requires_grad or not _one_thread(state_bytes):
        return

    def enter(grad: torch.Tensor) -> None:
        before = torch.get_num_threads()
        if before > 1:
            torch.set_num_threads(1)
            engine = torch.autograd.Variable._execution_engine
            engine.queue_callback(lambda: torch.set_num_threads(before))

    output.register_hook(enter)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch threads inside the block (0: unchanged), then restore the setting."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def redeliver_interrupts() -> None:
    """Make a Ctrl-C that lands inside a finalizer or weakref callback reach the program.

    Python runs signal handlers between bytecodes, so ``KeyboardInterrupt`` can be raised
    inside a ``__del__`` or weakref callback run by the garbage collector; there it is
    "unraisable": Python prints "Exception ignored in ..." with a traceback and drops
    it. This installs a ``sys.unraisablehook`` that instead delivers SIGINT again to the
    main thread (``_thread.interrupt_main``, from a helper thread so that it arrives after
    the hook has returned), at the next point where it can be raised (other unraisable
    errors go to the previous hook). Installing it twice is harmless.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_qsem_redeliver", False):
        return

    def hook(args: Any) -> None:
        if isinstance(args.exc_value, KeyboardInterrupt):
            timer = threading.Timer(0.05, _thread.interrupt_main)  # after the hook returns
            timer.daemon = True
            timer.start()
            return
        previous(args)

    hook._qsem_redeliver = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def clear_unhandled_interrupt_mark() -> None:
    """Let a caught Ctrl-C end the process with the exit code the program returns.

    CPython marks a ``KeyboardInterrupt`` as *unhandled* whenever one leaves code run by
    ``exec`` of a string (``dataclasses`` makes every ``__init__`` that way, so an
    import can do it), and never clears the mark when a caller catches the exception; at
    exit the interpreter then kills itself with SIGINT instead of exiting with the code
    it was given. The mark is reset at the start of every ``exec`` of a string, so this
    runs an empty one. Call it after the interrupt was handled, just before exiting.
    """
    exec("pass", {})
