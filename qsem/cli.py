"""The ``qsem`` command line.

::

    qsem list
    qsem run NAME [--config FILE] [--out DIR] [--seed N] [--resume] [--quiet]
                  [--checkpoint-every K] [key=value ...]
    qsem show NAME            (the default config of an experiment, as JSON)

Exit codes: 0 success, 1 failure, 2 usage error (bad arguments, unknown
experiment, bad config key or value), 130 interrupted. Errors that users cause
print one line, no traceback; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from qsem.circuits.errors import QsemError
from qsem.edge import cli as edge_cli
from qsem.io import dumps_json
from qsem.runner.config import ConfigError

__all__ = ["build_parser", "build_run_parser", "main"]

PROG = "qsem"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version() -> str:
    try:
        return metadata.version("qsem")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="qsem: quantum-hybrid semantic tensor experiments")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sub.add_parser("list", help="list the experiments with a one-line description")

    show = sub.add_parser("show", help="print an experiment's default config as JSON")
    show.add_argument("name", metavar="NAME")

    run = sub.add_parser("run", help="run an experiment into a run directory", description=_RUN_DOC)
    _add_run_arguments(run)
    edge_cli.add_parser(sub)
    return parser


_RUN_DOC = (
    "Run an experiment. Config layers: defaults < --config FILE < key=value < --seed. "
    "Files: config.json, run_info.json, metrics.jsonl, results.json, checkpoint.pt and "
    "plots, in --out DIR (default runs/NAME-<timestamp>)."
)


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("name", metavar="NAME", help="experiment name (see 'qsem list')")
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides; dots reach nested keys (optim.lr=0.01)",
    )
    run.add_argument("--config", metavar="FILE", help="config file (.json or .toml)")
    run.add_argument("--out", metavar="DIR", help="run directory (default runs/NAME-<timestamp>)")
    run.add_argument("--seed", type=int, metavar="N", help="seed for Python, NumPy and torch")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its last checkpoint",
    )
    run.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="checkpoint every K steps (default: the experiment's; 0: only at the end)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")


def build_run_parser() -> argparse.ArgumentParser:
    """The parser of ``qsem run`` on its own: options and ``key=value`` may be intermixed."""
    run = _Parser(prog=f"{PROG} run", description=_RUN_DOC)
    _add_run_arguments(run)
    return run


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _cmd_list() -> int:
    from qsem.experiments import visible_experiments

    experiments = visible_experiments()
    width = max((len(e.name) for e in experiments), default=0)
    for e in experiments:
        print(f"{e.name:<{width}}  {e.description}")
    return 0


def _cmd_show(name: str) -> int:
    from qsem.experiments import get_experiment
    from qsem.runner import experiment_config_dict

    print(dumps_json(experiment_config_dict(get_experiment(name))))
    return 0


def _summary(results: dict[str, object]) -> str:
    parts = []
    for key, value in results.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
    return ", ".join(parts[:8])


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from qsem.experiments import get_experiment
    from qsem.runner import run_experiment

    experiment = get_experiment(args.name)
    if args.checkpoint_every is not None and args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    try:
        result = run_experiment(
            experiment,
            config_file=args.config,
            overrides=args.overrides,
            seed=args.seed,
            out=args.out,
            resume=args.resume,
            quiet=args.quiet,
            checkpoint_every=args.checkpoint_every,
            command=[PROG, *argv],
        )
    except KeyboardInterrupt:
        where = f" --out {args.out}" if args.out else " --out DIR"
        print(
            f"\n{PROG}: interrupted; continue with: {PROG} run {args.name}{where} --resume",
            file=sys.stderr,
        )
        return 130
    if result.already_complete:
        print(f"{PROG}: the run in {result.out_dir} is already complete; nothing to resume")
    else:
        resumed = (
            f" (resumed after step {result.resumed_from_step})"
            if result.resumed_from_step is not None
            else ""
        )
        print(f"{args.name}: finished{resumed}; files in {result.out_dir}")
    summary = _summary(result.results)
    if summary:
        print(f"{args.name}: {summary}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qsem`` script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["run"]:
            # argparse cannot intermix options and key=value positionals below a subcommand
            args = build_run_parser().parse_intermixed_args(args_list[1:])
            args.command = "run"
        else:
            args = build_parser().parse_args(args_list)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "show":
            return _cmd_show(args.name)
        if args.command == "history":
            return edge_cli.run(args)
        return _cmd_run(args, args_list)
    except ConfigError as exc:  # a usage error: the arguments are wrong
        return _fail(str(exc), 2)
    except QsemError as exc:  # the run cannot go on: one clear line, no traceback
        return _fail(str(exc), 1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
