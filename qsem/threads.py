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
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["clear_unhandled_interrupt_mark", "redeliver_interrupts", "torch_threads"]


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
