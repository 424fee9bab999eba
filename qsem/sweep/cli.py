"""``qsem sweep``: the subcommand (registered by :mod:`qsem.cli`).

::

    qsem sweep NAME --seeds 0-9 [--grid key=v1,v2 ...] [key=value ...]
               [--workers N | --cluster tcp://HOST:8786 [--connect-timeout S] | --cluster local:N]
               [--checkpoint-every K] [--resume] [--retry-failed] [--metric NAME ...]
               --out DIR

Options and ``key=value`` overrides may come in any order, except that ``--grid``
takes every ``key=v1,v2`` that follows it up to the next option.
"""

from __future__ import annotations

import argparse
import sys

from .executors import CONNECT_TIMEOUT_S
from .spec import parse_grid, parse_seeds

__all__ = ["add_parser", "run"]

_DOC = (
    "Run an experiment for every seed and every point of a config grid, one run directory "
    "per (point, seed) under --out DIR (DIR/key=value,.../seed-N), with trial states in "
    "DIR/sweep.db and statistics across seeds in DIR/summary.json and DIR/plots/. Running the "
    "same command again (or --resume) skips finished trials and resumes interrupted ones."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the ``qsem`` subcommands."""
    p = sub.add_parser(
        "sweep", help="run an experiment over seeds and a config grid", description=_DOC
    )
    p.add_argument("name", metavar="NAME", help="experiment name (see 'qsem list')")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="fixed config overrides for every trial"
    )
    p.add_argument("--seeds", metavar="SEEDS", help="seeds: 0-9, 0,3,5 or 0-4,10")
    p.add_argument(
        "--grid",
        nargs="+",
        metavar="key=v1,v2",
        help="config values to sweep; one argument per key, the product of all is run",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="the sweep directory")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local pool processes (default: one per core; 0: in this process, one by one)",
    )
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="Dask: a scheduler (tcp://HOST:8786) or local:N for a local cluster of N workers",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to try to reach the --cluster scheduler before giving up "
        f"(default {CONNECT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="each trial checkpoints every K steps (default: the experiment's; 0: only at the "
        "end), so an interrupted trial resumes from its last checkpoint",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the sweep in --out (its stored settings)"
    )
    p.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    p.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help="summarise only this result (repeatable; default: every numeric result)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``qsem sweep``; exit code 0 (all trials done), 1 (some failed), 130 (interrupted),
    143 (stopped by SIGTERM)."""
    from qsem.runner.safety import sigterm_as_interrupt

    from .driver import run_sweep

    hint = f"qsem sweep: continue with: qsem sweep {args.name} --out {args.out} --resume"
    try:
        with sigterm_as_interrupt():
            # with none of --seeds, --grid, key=value: the sweep stored in --out (for --resume)
            explicit = args.seeds is not None or args.grid is not None or bool(args.overrides)
            result = run_sweep(
                args.name,
                out=args.out,
                seeds=parse_seeds(args.seeds) if args.seeds is not None else None,
                grid=parse_grid(args.grid or []) if explicit else None,
                fixed=list(args.overrides) if explicit else None,
                workers=args.workers,
                cluster=args.cluster,
                resume=args.resume,
                retry_failed=args.retry_failed,
                metrics=args.metric,
                checkpoint_every=args.checkpoint_every,
                connect_timeout=args.connect_timeout,
            )
    except KeyboardInterrupt as exc:  # outside the trial loop (which reports it itself)
        print(f"\n{hint}", file=sys.stderr)
        signum = getattr(exc, "signum", None)
        return 128 + signum if isinstance(signum, int) else 130
    if result.interrupted:
        print(hint, file=sys.stderr)
        return result.interrupted
    return 1 if result.failed else 0
