"""``qsem run``: its options, its ``--help`` listing of config keys, and running.

The config keys listed by ``qsem run NAME --help`` come from
:func:`qsem.runner.config.describe_keys` (the ``#:`` comments above the config
dataclass fields), so the help cannot drift from the code.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from qsem.runner.config import ConfigError

__all__ = ["RUN_DOC", "add_arguments", "add_parser", "keys_epilog", "name_in", "run"]

PROG = "qsem"

RUN_DOC = (
    "Run an experiment. Config layers: defaults < --config FILE < key=value < --seed. "
    "Files: config.json, run_info.json, metrics.jsonl, results.json, checkpoint.pt, "
    "plots and report.html, in --out DIR (default runs/NAME-<timestamp>). "
    "Ctrl-C or SIGTERM stops a run so that --resume continues it."
)

#: Options of ``qsem run`` that take a value (to find NAME among the arguments).
_VALUED = {"--config", "--out", "--seed", "--checkpoint-every"}


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The arguments of ``qsem run`` (shared by the subcommand and :func:`build_run_parser`)."""
    run.add_argument("name", metavar="NAME", help="experiment name (see 'qsem list')")
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides; dots reach nested keys (optim.lr=0.01); "
        "'qsem run NAME --help' lists the keys",
    )
    run.add_argument("--config", metavar="FILE", help="config file (.json or .toml)")
    run.add_argument("--out", metavar="DIR", help="run directory (default runs/NAME-<timestamp>)")
    run.add_argument(
        "--seed", type=int, metavar="N", help="seed for Python, NumPy and torch (0 <= N < 2**32)"
    )
    again = run.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its last checkpoint",
    )
    again.add_argument(
        "--restart",
        action="store_true",
        help="start the run in --out DIR over; its earlier files move to DIR/archive/<time>/",
    )
    run.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="checkpoint every K steps (default: the experiment's; 0: only at the end)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``qsem run`` (its ``--help`` here is the generic one; see :func:`keys_epilog`)."""
    run_parser = sub.add_parser(
        "run", help="run an experiment into a run directory", description=RUN_DOC
    )
    add_arguments(run_parser)


def name_in(args: Sequence[str]) -> str | None:
    """The NAME among ``qsem run`` arguments (the first positional that is no ``key=value``)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-") and "=" not in arg:
            return arg
    return None


def keys_epilog(name: str) -> str | None:
    """The config keys of experiment ``name`` as help text (``None`` for an unknown name)."""
    from qsem.experiments import EXPERIMENTS
    from qsem.io import dumps_json
    from qsem.runner.config import describe_keys

    experiment = EXPERIMENTS.get(name)
    if experiment is None:
        return None
    docs = describe_keys(experiment.defaults)
    lines = [f"config keys of {name!r} (set with key=value or --config FILE):", ""]
    for doc in docs:
        default = dumps_json(doc.default, indent=None)
        if len(default) > 40:
            default = default[:37] + "..."
        lines.append(f"  {doc.key} ({doc.type}, default {default})")
        meaning = doc.help or "(no description)"
        lines.extend(
            textwrap.wrap(meaning, width=76, initial_indent="      ", subsequent_indent="      ")
        )
    return "\n".join(lines)


def _summary(results: dict[str, object]) -> str:
    parts = []
    for key, value in results.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
    return ", ".join(parts[:8])


def _go_on(args: argparse.Namespace, argv: Sequence[str], out: str | None) -> str:
    """How to go on after an interruption: ``--resume`` from the checkpoint, or, stopped
    before the first checkpoint, ``--restart`` with the same config options."""
    from qsem.runner import CHECKPOINT_FILE

    where = f" --out {out}" if out else " --out DIR"
    if out is None or (Path(out) / CHECKPOINT_FILE).exists():
        return f"continue with: {PROG} run {args.name}{where} --resume"
    words = [a for a in argv if a not in ("--resume", "--restart")]
    if not any(a == "--out" or a.startswith("--out=") for a in words):
        words += ["--out", out]
    command = shlex.join([PROG, *words, "--restart"])
    return f"it stopped before its first checkpoint, so start it over with: {command}"


def run(args: argparse.Namespace) -> int:
    """``qsem run``: 0 done, 130 interrupted (Ctrl-C), 143 stopped by SIGTERM."""
    from qsem.experiments import get_experiment
    from qsem.report import REPORT_FILE
    from qsem.runner import default_run_dir, run_experiment
    from qsem.runner.safety import Terminated

    experiment = get_experiment(args.name)
    if args.checkpoint_every is not None and args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    argv = getattr(args, "argv", None) or ["run", args.name]
    out = args.out
    if out is None and not (args.resume or args.restart):  # known now, for the resume hint
        out = str(default_run_dir(experiment.name))
    try:
        result = run_experiment(
            experiment,
            config_file=args.config,
            overrides=args.overrides,
            seed=args.seed,
            out=out,
            resume=args.resume,
            restart=args.restart,
            quiet=args.quiet,
            checkpoint_every=args.checkpoint_every,
            command=[PROG, *argv],
        )
    except KeyboardInterrupt as exc:
        why = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{PROG}: {why}; {_go_on(args, argv, out)}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, Terminated) else 130
    if args.quiet:  # -q: no result lines either (the exit code says it finished)
        return 0
    if result.finish_completed:
        what = ", ".join(result.finish_completed)
        print(f"{args.name}: finished; the run had stopped while finishing ({what}), now "
              f"complete; files in {result.out_dir}")  # fmt: skip
    elif result.already_complete:
        print(f"{PROG}: the run in {result.out_dir} is already complete; nothing to resume")
    else:
        resumed = f" (resumed after {result.resumed_from})" if result.resumed_from else ""
        print(f"{args.name}: finished{resumed}; files in {result.out_dir}")
    lines = result.results.get("summary")
    if isinstance(lines, list) and lines and all(isinstance(line, str) for line in lines):
        print("\n".join(lines))  # the experiment's own headline lines
    else:
        summary = _summary(result.results)
        if summary:
            print(f"{args.name}: {summary}")
    report = result.out_dir / REPORT_FILE
    if report.exists():
        print(f"{args.name}: report {report}")
    return 0
