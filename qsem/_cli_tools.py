"""The small ``qsem`` subcommands: ``list``, ``show``, ``report``, ``compare``, ``completion``.

Each ``add_*_parser(sub)`` registers one subcommand and sets its ``func``; see
:data:`qsem.cli.SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = [
    "add_compare_parser",
    "add_completion_parser",
    "add_list_parser",
    "add_report_parser",
    "add_show_parser",
    "run_compare",
    "run_completion",
    "run_list",
    "run_report",
    "run_show",
]


def run_list(args: argparse.Namespace) -> int:
    from qsem.experiments import visible_experiments

    experiments = visible_experiments()
    width = max((len(e.name) for e in experiments), default=0)
    for e in experiments:
        print(f"{e.name:<{width}}  {e.description}")
    return 0


def add_list_parser(sub: argparse._SubParsersAction) -> None:
    """``qsem list``: the experiments with a one-line description."""
    sub.add_parser("list", help="list the experiments with a one-line description")


def run_show(args: argparse.Namespace) -> int:
    from qsem.experiments import get_experiment
    from qsem.io import dumps_json
    from qsem.runner import experiment_config_dict

    print(dumps_json(experiment_config_dict(get_experiment(args.name))))
    return 0


def add_show_parser(sub: argparse._SubParsersAction) -> None:
    """``qsem show NAME``: an experiment's default config as JSON."""
    show = sub.add_parser("show", help="print an experiment's default config as JSON")
    show.add_argument("name", metavar="NAME")


def run_report(args: argparse.Namespace) -> int:
    from qsem.report import write_report
    from qsem.runner.config import ConfigError

    if args.out is not None and len(args.dirs) != 1:
        raise ConfigError("--out FILE takes one run directory (give one DIR)")
    for run_dir in args.dirs:
        print(write_report(run_dir, args.out))
    return 0


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    """``qsem report DIR...``: rebuild each run's ``report.html``."""
    report = sub.add_parser(
        "report",
        help="rebuild a run directory's report.html",
        description="Rebuild DIR/report.html (self-contained: inline CSS, embedded images) "
        "from the files of the run directory; works on unfinished runs too.",
    )
    report.add_argument("dirs", nargs="+", metavar="DIR", help="run directory")
    report.add_argument(
        "--out",
        metavar="FILE",
        help="write the report there instead of DIR/report.html (e.g. for a read-only DIR)",
    )


def run_compare(args: argparse.Namespace) -> int:
    from qsem.report import write_comparison
    from qsem.runner.config import ConfigError

    if len(args.dirs) < 2:
        raise ConfigError(f"compare needs two or more run directories, got {len(args.dirs)}")
    out = Path(args.out) if args.out else Path("comparison.html")
    print(write_comparison(args.dirs, out))
    return 0


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    """``qsem compare DIR DIR... [--out FILE]``: one HTML page with the runs side by side."""
    compare = sub.add_parser(
        "compare",
        help="put several runs side by side in one HTML file",
        description="Write one self-contained HTML file comparing the runs: config "
        "differences, scalar results side by side, the figures side by side.",
    )
    compare.add_argument("dirs", nargs="+", metavar="DIR", help="run directories (two or more)")
    compare.add_argument(
        "--out", metavar="FILE", help="the HTML file to write (default comparison.html)"
    )


def run_completion(args: argparse.Namespace) -> int:
    import shtab

    from qsem.cli import build_parser

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return 0


def add_completion_parser(sub: argparse._SubParsersAction) -> None:
    """``qsem completion {bash,zsh}``: a completion script for the shell on stdout."""
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script. bash: "
        "'qsem completion bash > ~/.local/share/bash-completion/completions/qsem'; "
        "zsh: 'qsem completion zsh > ~/.zfunc/_qsem' (with ~/.zfunc on fpath).",
    )
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell")
