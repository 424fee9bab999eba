"""The ``qsem`` command line.

::

    qsem list
    qsem show NAME                 (the default config of an experiment, as JSON)
    qsem run NAME [--config FILE] [--out DIR] [--seed N] [--resume | --restart]
                  [--quiet] [--checkpoint-every K] [key=value ...]
    qsem run NAME --help           (also lists NAME's config keys: type, default, meaning)
    qsem report DIR                (rebuild DIR/report.html)
    qsem compare DIR DIR... [--out FILE]
    qsem completion {bash,zsh}     (a shell completion script on stdout)

Every command takes ``--debug`` (a traceback instead of the one-line error).
Exit codes: 0 success, 1 failure (also an unwritable file or a full disk), 2
usage error (bad arguments, unknown experiment, bad config key or value), 130
interrupted (Ctrl-C), 143 stopped by SIGTERM. Errors that users cause print one
line, no traceback; a traceback means a bug.

Subcommands live in a table (:data:`SUBCOMMANDS`): a module adds one with two
functions, ``add_parser(sub)`` and ``run(args) -> int``, and one line
``(module.add_parser, module.run)`` in the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from importlib import metadata
from typing import NoReturn

from qsem.circuits.errors import QsemError
from qsem.edge import cli as edge_cli
from qsem.runner.config import ConfigError

from . import _cli_run, _cli_tools
from .sweep import cli as sweep_cli

__all__ = ["INTERMIXED", "SUBCOMMANDS", "build_parser", "build_run_parser", "main"]

_AddParser = Callable[[argparse._SubParsersAction], None]
_Run = Callable[[argparse.Namespace], int]

PROG = "qsem"

#: ``(add_parser, run)`` of every subcommand, in ``qsem --help`` order: ``add_parser(sub)``
#: registers it on the subparsers action, ``run(args) -> int`` runs it (the exit code).
SUBCOMMANDS: tuple[tuple[_AddParser, _Run], ...] = (
    (_cli_tools.add_list_parser, _cli_tools.run_list),
    (_cli_tools.add_show_parser, _cli_tools.run_show),
    (_cli_run.add_parser, _cli_run.run),
    (sweep_cli.add_parser, sweep_cli.run),
    (_cli_tools.add_report_parser, _cli_tools.run_report),
    (_cli_tools.add_compare_parser, _cli_tools.run_compare),
    (_cli_tools.add_completion_parser, _cli_tools.run_completion),
    (edge_cli.add_parser, edge_cli.run),
)

#: subcommands whose options and positional ``key=value`` overrides may come in any order
#: (``qsem run demo epochs=5 --seed 3 lr=0.1``); they must have no subcommands of their own.
INTERMIXED = frozenset({"run", "sweep"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version() -> str:
    try:
        return metadata.version("qsem")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``qsem`` parser (also what ``qsem completion`` describes)."""
    parser = _Parser(prog=PROG, description="qsem: quantum-hybrid semantic tensor experiments")
    _add_debug(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add, run in SUBCOMMANDS:
        before = set(sub.choices)
        add(sub)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(func=run)
    for subparser in sub.choices.values():  # every subcommand takes --debug too
        if "--debug" not in subparser._option_string_actions:
            _add_debug(subparser)
    return parser


def build_run_parser(name: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``qsem run`` on its own (options and ``key=value`` may be intermixed);
    with ``name`` its ``--help`` lists that experiment's config keys."""
    run = _Parser(
        prog=f"{PROG} run",
        description=textwrap.fill(_cli_run.RUN_DOC, 79),
        epilog=_cli_run.keys_epilog(name) if name else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cli_run.add_arguments(run)
    _add_debug(run)
    run.set_defaults(func=_cli_run.run)
    return run


def _subcommand_parser(command: str, rest: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of one subcommand on its own (``qsem run``'s lists NAME's config keys)."""
    if command == "run":
        return build_run_parser(_cli_run.name_in(list(rest)))
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[command]
    return parser


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _os_error(exc: OSError) -> str:
    """``cannot write PATH: reason`` (with a hint for a full disk or a read-only place)."""
    import errno

    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: " (the disk is full: free space or choose another --out)",
        errno.EFBIG: " (the file size limit was reached: see 'ulimit -f')",
        errno.EROFS: " (a read-only file system: choose another --out)",
        errno.EACCES: " (no permission: choose another --out)",
        errno.EPERM: " (no permission: choose another --out)",
    }.get(exc.errno or 0, "")
    return f"{exc.filename}: {reason}{hint}" if exc.filename is not None else f"{reason}{hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (a Ctrl-C anywhere: 130, no traceback)."""
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # outside a run (which says how to continue it)
        signum = getattr(exc, "signum", None)
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 128 + signum if isinstance(signum, int) else 130


def _glue_values(args: list[str]) -> list[str]:
    """``--seeds -1-2`` -> ``--seeds=-1-2``: argparse would take the value for an option."""
    out: list[str] = []
    for arg in args:
        if out and out[-1] == "--seeds" and arg.startswith("-") and arg[1:2].isdigit():
            out[-1] = f"--seeds={arg}"
        else:
            out.append(arg)
    return out


def _main(argv: Sequence[str] | None = None) -> int:
    args_list = _glue_values(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args_list
    head = [a for a in args_list if a != "--debug"]
    try:
        if head[:1] and head[0] in INTERMIXED:
            # argparse cannot intermix options and key=value positionals below a subcommand,
            # so these subcommands' own parsers read the arguments after their name
            command = head[0]
            rest = args_list[args_list.index(command) + 1 :]
            args = _subcommand_parser(command, rest).parse_intermixed_args(rest)
            args.command = command
        else:
            args = build_parser().parse_args(args_list)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = args_list
    try:
        code: int = args.func(args)
        return code
    except BrokenPipeError:  # `qsem show demo | head`: the reader left; stop quietly
        with suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ConfigError, QsemError, OSError) as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, ConfigError):  # a usage error: the arguments are wrong
            return _fail(str(exc), 2)
        if isinstance(exc, OSError):  # unwritable, full, missing: name the path
            return _fail(_os_error(exc), 1)
        return _fail(str(exc), 1)  # the run cannot go on: one clear line, no traceback


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
