"""``python -m qsem`` runs the command line (same as the ``qsem`` script, whose entry point
is :func:`entry`).

:func:`entry` imports :mod:`qsem.cli` (torch and the rest, a few seconds) inside its own
``KeyboardInterrupt`` handler, so a Ctrl-C while the command starts ends it with
``qsem: interrupted`` and exit code 130, not a traceback of the imports.
"""

import sys


def entry() -> int:
    """The ``qsem`` console script: import the command line, run it, return the exit code."""
    try:
        from qsem.threads import redeliver_interrupts

        redeliver_interrupts()  # a Ctrl-C inside a finalizer still stops the command
        from qsem.cli import main
    except KeyboardInterrupt:
        print("\nqsem: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(entry())
