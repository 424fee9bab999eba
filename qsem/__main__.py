"""``python -m qsem`` runs the command line (same as the ``qsem`` script, whose entry point
is :func:`entry`).

:func:`entry` imports :mod:`qsem.cli` (torch, numpy and the rest: a few seconds) with a
Ctrl-C *held back*: a ``KeyboardInterrupt`` raised inside third-party import code can
leave a half-imported module behind (numpy then recurses in its ``__getattr__``), abort
the process from a C++ callback, or mark the interpreter's exit as an unhandled
interrupt. A SIGINT during the imports is only recorded; once they are done the command
ends with ``qsem: interrupted`` and exit code 130 instead of starting.

A Ctrl-C caught later (the command prints how to continue and returns 130) can still make
CPython exit by SIGINT instead of with 130: when the ``KeyboardInterrupt`` was raised
inside code run by ``exec`` of a string (``dataclasses`` builds every ``__init__`` that
way, e.g. while torch lazily imports its compiler at the first optimiser step), the
interpreter marks it unhandled and never clears the mark. :func:`entry` clears it
(:func:`qsem.threads.clear_unhandled_interrupt_mark`) before it returns.
"""

import signal
import sys
from collections.abc import Callable
from types import FrameType


def _import_cli_holding_sigint() -> tuple[Callable[[], int], bool]:
    """Import :func:`qsem.cli.main` with SIGINT recorded instead of raised; return it and
    whether a SIGINT came meanwhile. Outside the main thread (no handlers) it just imports."""
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main thread
        previous = None
    try:
        from qsem.cli import main
        from qsem.threads import redeliver_interrupts

        redeliver_interrupts()  # a Ctrl-C inside a finalizer still stops the command
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return main, bool(received)


def entry() -> int:
    """The ``qsem`` console script: import the command line, run it, return the exit code."""
    main, interrupted = _import_cli_holding_sigint()
    if interrupted:
        print("\nqsem: interrupted", file=sys.stderr)
        return 130
    code = main()
    from qsem.threads import clear_unhandled_interrupt_mark  # imported above: no delay

    clear_unhandled_interrupt_mark()  # a caught Ctrl-C exits with `code` (see above)
    return code


if __name__ == "__main__":
    sys.exit(entry())
