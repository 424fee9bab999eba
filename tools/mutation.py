"""Mutation testing of selected modules with mutmut (``make mutation``).

mutmut names a mutant after the file's path (``src/qsem/simulators/kernels.py`` ->
``qsem.simulators.kernels``) and activates it only inside the module of that name.
In this repository ``simulators/`` and ``circuits/`` are installed as
``qsem.simulators`` / ``qsem.circuits`` (``[tool.setuptools] package-dir``), so a
mutmut run at the repository root would name the mutants ``simulators.kernels``
and no test, which imports ``qsem.simulators.kernels``, would ever see them.

This driver therefore builds, per module, a scratch project under
``build/mutation/<name>/`` that mirrors the *installed* layout::

    src/qsem/...                  (copy of qsem/)
    src/qsem/circuits/...         (copy of circuits/)
    src/qsem/simulators/...       (copy of simulators/)
    tests/...                     (copy of tests/)
    docs/...                      (copy of docs/: tests run its examples)
    pyproject.toml                ([tool.mutmut] + a minimal [tool.pytest.ini_options])

and runs ``mutmut run`` there with only that module mutated and only the test
files the module needs selected. mutmut puts ``mutants/src`` first on
``sys.path``, so ``import qsem`` finds the mutated copy before the editable
install's finder (which setuptools appends to ``sys.meta_path``).

Usage::

    .venv/bin/python tools/mutation.py                 # all modules
    .venv/bin/python tools/mutation.py kernels store   # some of them
    .venv/bin/python tools/mutation.py --list          # modules and their tests
    .venv/bin/python tools/mutation.py --recheck store_schema tests/test_x.py
    .venv/bin/python tools/mutation.py --recheck store_open tests/test_x.py --mutants '*_place__*'

``--recheck`` runs the given test files (the ones as they are now) once per survivor
of the module's last run, in that run's scratch project with the one mutant switched
on (``MUTANT_UNDER_TEST``, the mutated ``src/`` first on the path), after a control
run with no mutant that must pass; it writes ``build/mutation/<name>.recheck.json``
(the survivors the tests now kill, and those they do not); ``--mutants PATTERN...``
rechecks only the survivors whose names match (``fnmatch``).

Per module it writes ``build/mutation/<name>.log`` (mutmut's output),
``build/mutation/<name>.survivors.txt`` (the diff of every mutant not killed)
and ``build/mutation/<name>.json`` (counts, score, time, survivor names).
Exit status 1 when a module's score is below ``--min-score`` (default 90).

This file is a developer tool: the package never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mutation"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Target:
    """One module to mutate and the test files that exercise it."""

    source: str  # path in the repository
    installed: str  # path under src/ in the scratch project (the import name)
    tests: tuple[str, ...]


#: The engine's internal paths against gate-by-gate references, and the steps called
#: one by one on each representation of the state (local permutations on a density
#: matrix, which the simulator compiles only above 2^22 levels, included).
PLAN_TESTS = (
    "tests/test_fused_kernels.py",
    "tests/test_plan_mutation.py",
    "tests/test_engine_internals.py",
    "tests/test_plan_state.py",
    "tests/test_plan_context.py",
    # the plan-wide rotation table (plan_exec.rotation_table, Plan.rotation_groups): the
    # counter of rotation_matrix calls, and against per-group evaluation
    "tests/test_rotation_table.py",
)

#: the superoperator blocks' own tests, the Kraus-sum reference of the channels, and the
#: steps called one by one on each representation of the state
SUPER_TESTS = (
    "tests/test_plan_super.py",
    "tests/test_plan_superops.py",
    "tests/test_plan_mutation.py",
    "tests/test_plan_state.py",
    "tests/test_plan_context.py",
)

#: the tests of the history store (qsem/edge/store*.py)
STORE_TESTS = (
    "tests/test_edge_store.py",
    "tests/test_edge_store_logs.py",
    "tests/test_store_mutation.py",
    "tests/test_store_modules_mutation.py",
    "tests/test_store_schema_mutation.py",
    "tests/test_store_open_mutation.py",
    "tests/test_store_open_processes.py",
    "tests/test_store_records_mutation.py",
    # the deterministic crash state (the other crash tests run writers in
    # subprocesses, which import the installed, unmutated package)
    "tests/test_edge_crash.py::test_a_checkpoint_killed_after_page_one_recovers_from_the_wal",
    # a forked child holds the write lock: the message names it (db_error, lock_holders)
    "tests/test_edge_crash.py::test_a_lock_held_past_busy_timeout_says_who_and_how_long",
)

#: tests never run under mutmut: this one runs the store in an ``unshare`` subprocess,
#: which imports the unmutated package (it only costs time: 7 s per mutant it covers)
DESELECT = ("tests/test_edge_store_logs.py::test_a_store_on_a_read_only_mount_is_read_immutable",)

TARGETS: dict[str, Target] = {
    "kernels": Target(
        "simulators/kernels.py",
        "src/qsem/simulators/kernels.py",
        (
            "tests/test_fused_kernels.py",
            "tests/test_kernels_mutation.py",
            # index_rows / _select: long rows gathered one at a time (values and an ATen spy)
            "tests/test_sv_speed.py::test_index_rows_matches_fancy_indexing",
            "tests/test_sv_speed.py::test_long_row_permutations_match_pennylane",
        ),
    ),
    # the engine's plans: compiling (circuit -> steps), running (the steps) and the
    # state a step takes and returns (simulators/plan.py only re-exports their names)
    **{
        name: Target(f"simulators/{name}.py", f"src/qsem/simulators/{name}.py", PLAN_TESTS)
        for name in ("plan_compile", "plan_exec", "plan_state")
    },
    # a density matrix's noisy region as superoperator blocks (simulators/plan.py re-exports
    # plan_super's names too; plan_superops builds the blocks' operators)
    **{
        name: Target(f"simulators/{name}.py", f"src/qsem/simulators/{name}.py", SUPER_TESTS)
        for name in ("plan_super", "plan_superops")
    },
    "detectors": Target(
        "qsem/emergence/detectors.py",
        "src/qsem/emergence/detectors.py",
        ("tests/test_emergence_detectors.py", "tests/test_detectors_mutation.py"),
    ),
    # the history store, split into four modules; each runs the store tests
    **{
        name: Target(f"qsem/edge/{name}.py", f"src/qsem/edge/{name}.py", STORE_TESTS)
        for name in ("store", "store_schema", "store_open")
    },
    # the byte-level readers: their own tests (the unit tests, the stray-log tests) and
    # the message and header tests, not every store test (each of which opens a store,
    # so calls every reader: a survivor would run ~100 tests on this loaded machine)
    "store_files": Target(
        "qsem/edge/store_files.py",
        "src/qsem/edge/store_files.py",
        tuple(t for t in STORE_TESTS if t != "tests/test_edge_store.py"),
    ),
}

PYPROJECT = """\
[tool.mutmut]
source_paths = ["src/qsem"]
only_mutate = [{only}]
also_copy = ["docs", "conftest.py"]
pytest_add_cli_args = [
    "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:nbmake", "-q", {deselect}
]
pytest_add_cli_args_test_selection = [{tests}]
use_git_change_detection = false

[tool.pytest.ini_options]
markers = [
    "slow: long studies, excluded from the default suite",
    "gpu: needs CUDA; skipped where there is none",
]
addopts = "-m 'not slow' --strict-markers"
filterwarnings = ["ignore::DeprecationWarning:pennylane.*", "ignore::DeprecationWarning:qiskit.*"]
"""

#: the scratch project's root conftest: under mutmut, run a mutant's tests fastest first
#: (by the durations mutmut recorded in its clean run), so that ``-x`` stops a killed
#: mutant at the quickest test that fails it; the clean and stats runs keep file order.
ORDER_CONFTEST = """\
import json
from pathlib import Path

_STATS = Path(__file__).parent / "mutmut-stats.json"


def pytest_collection_modifyitems(session, config, items):
    if not _STATS.exists():  # mutmut's own clean and stats runs
        return
    durations = json.loads(_STATS.read_text()).get("duration_by_test", {})
    items.sort(key=lambda item: durations.get(item.nodeid, float("inf")))
"""

IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")


def _quoted(items: list[str]) -> str:
    return ", ".join(json.dumps(i) for i in items)


def prepare(name: str, target: Target) -> tuple[Path, list[str]]:
    """Build the scratch project of one module; returns its folder and the selected tests."""
    work = BUILD / name
    if work.exists():
        shutil.rmtree(work)
    (work / "src").mkdir(parents=True)
    shutil.copytree(ROOT / "qsem", work / "src" / "qsem", ignore=IGNORE)
    shutil.copytree(ROOT / "circuits", work / "src" / "qsem" / "circuits", ignore=IGNORE)
    shutil.copytree(ROOT / "simulators", work / "src" / "qsem" / "simulators", ignore=IGNORE)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=IGNORE)
    shutil.copytree(ROOT / "docs", work / "docs", ignore=IGNORE)  # examples some tests run
    (work / "conftest.py").write_text(ORDER_CONFTEST)
    tests = [t for t in target.tests if (ROOT / t.split("::")[0]).exists()]
    (work / "pyproject.toml").write_text(
        PYPROJECT.format(
            only=_quoted([target.installed]),
            tests=_quoted(tests),
            deselect=_quoted([a for t in DESELECT for a in ("--deselect", t)]),
        )
    )
    return work, tests


SHOW = """
import sys
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant
for name in sys.argv[1:]:
    print(f"# {name}")
    print(get_diff_for_mutant(name, path=find_mutant(name).path))
"""

SPINNER = re.compile(r"^.*[\u2800-\u28ff] ?")


def _survivor_diffs(work: Path, env: dict[str, str]) -> tuple[list[str], str]:
    """Names of the mutants not killed, and a report with each one's diff."""
    mutmut = str(BIN / "mutmut")
    out = subprocess.run([mutmut, "results"], cwd=work, env=env, capture_output=True, text=True)
    # every mutant checked and not killed (a timeout counts as killed: the tests hung on
    # it; a run stopped early leaves some "not checked")
    names = [
        m.group(1)
        for m in re.finditer(r"^\s*(\S+__mutmut_\d+): (\S+)", out.stdout, re.M)
        if m.group(2) in ("survived", "no")  # "no tests"; not "timeout", "not checked"
    ]
    show = subprocess.run(
        [sys.executable, "-c", SHOW, *names], cwd=work, env=env, capture_output=True, text=True
    )
    return names, out.stdout + "\n" + show.stdout + show.stderr


def _clean_log(raw: Path, log: Path) -> None:
    """mutmut's log without its spinner frames (the last frame of each line is kept)."""
    lines = raw.read_text(errors="replace").splitlines()
    log.write_text("\n".join(SPINNER.sub("", line) for line in lines) + "\n")


def run_one(name: str, target: Target, max_children: int) -> dict[str, object]:
    """Mutate one module and return its counts and score."""
    work, tests = prepare(name, target)
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    measured = commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    env = dict(os.environ)
    # the modules under mutation are the torch path: the native kernel (on by default for
    # small states) would bypass the code being mutated, so it is switched off here
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", QSEM_NATIVE="0")
    env.pop("MUTANT_UNDER_TEST", None)
    raw = work / "mutmut.log"
    start, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with raw.open("w") as fh:
        cmd = [str(BIN / "mutmut"), "run", "--max-children", str(max_children)]
        rc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - start
    # CPU time of mutmut and every worker it forked (each is waited for, so counted)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    _clean_log(raw, BUILD / f"{name}.log")
    subprocess.run(
        [str(BIN / "mutmut"), "export-cicd-stats"], cwd=work, env=env, capture_output=True
    )
    stats_file = work / "mutants" / "mutmut-cicd-stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    survivors, report = _survivor_diffs(work, env)
    (BUILD / f"{name}.survivors.txt").write_text(report)
    killed = int(stats.get("killed", 0))
    total = int(stats.get("total", 0))
    # Timeouts count as killed (the mutant made the tests hang); "no tests" count as survived.
    caught = killed + int(stats.get("timeout", 0))
    score = 100.0 * caught / total if total else 0.0
    return {
        "module": target.source,
        "tests": tests,
        "mutmut_rc": rc,
        "seconds": round(seconds, 1),
        "cpu_user": round(user, 1),
        "cpu_sys": round(system, 1),
        "max_children": max_children,
        # on a quiet machine with max_children cores the run would take about this long
        "quiet_estimate_seconds": round((user + system) / max_children, 1),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": measured,  # the tree the scratch project was copied from
        "score": round(score, 1),
        "survivors": survivors,
        **stats,
    }


RECHECK = """
import json, os, signal, sys
import pytest
import torch, numpy, sqlite3  # imported once here; each mutant runs in a forked child
import qsem.edge, qsem.simulators  # the mutated copies (src/ is first on the path)
tests, mutants = json.loads(sys.argv[1]), json.loads(sys.argv[2])
args = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:nbmake", *tests]

def passes(mutant):
    pid = os.fork()
    if pid == 0:
        signal.alarm(300)  # a mutant that makes the tests hang counts as killed
        if mutant:
            os.environ["MUTANT_UNDER_TEST"] = mutant
        sys.stdout = sys.stderr = open(os.devnull, "w")
        os._exit(int(pytest.main(args)))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

if not passes(None):
    sys.exit("the tests fail with no mutant switched on")
killed = [m for m in mutants if not passes(m)]
print(json.dumps(killed))
"""


def recheck(
    name: str, tests: list[str], only: list[str] | None = None
) -> dict[str, list[str] | str]:
    """Run ``tests`` against each survivor of ``name``'s last run, one mutant at a time
    (``only``: the survivors whose names match one of these ``fnmatch`` patterns)."""
    result = json.loads((BUILD / f"{name}.json").read_text())
    project = BUILD / name / "mutants"
    for t in {t.split("::")[0] for t in tests} | {"tests/conftest.py"}:  # as they are now
        target = project / t
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / t, target)
    env = dict(os.environ)
    # the modules under mutation are the torch path: the native kernel (on by default for
    # small states) would bypass the code being mutated, so it is switched off here
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", QSEM_NATIVE="0")
    env.pop("MUTANT_UNDER_TEST", None)
    env["PYTHONPATH"] = os.pathsep.join([str(project / "src"), str(project / "tests")])
    survivors = [m for m in result["survivors"] if not only or any(fnmatch(m, p) for p in only)]
    cmd = [sys.executable, "-c", RECHECK, json.dumps(tests), json.dumps(survivors)]
    out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"recheck {name}: {out.stderr.strip() or out.stdout.strip()}")
    killed = json.loads(out.stdout.strip().splitlines()[-1])
    alive = [m for m in survivors if m not in killed]
    report: dict[str, list[str] | str] = {
        "module": result["module"],
        "tests": tests,
        "killed": killed,
        "alive": alive,
    }
    if only:
        report["only"] = " ".join(only)
    (BUILD / f"{name}.recheck.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(TARGETS))
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument(
        "--recheck", nargs="+", metavar=("MODULE", "TEST"), help="survivors against tests"
    )
    parser.add_argument(
        "--mutants", nargs="+", metavar="PATTERN", help="recheck only survivors matching these"
    )
    parser.add_argument("--max-children", type=int, default=2, help="mutmut workers (default 2)")
    parser.add_argument("--min-score", type=float, default=90.0, help="fail below this score")
    args = parser.parse_args(argv)
    if args.list:
        for name, t in TARGETS.items():
            print(f"{name:12s} {t.source}: {' '.join(t.tests)}")
        return 0
    if args.recheck:
        report = recheck(args.recheck[0], args.recheck[1:], args.mutants)
        print(f"{args.recheck[0]}: {len(report['killed'])} killed, {len(report['alive'])} alive")
        return 0
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    BUILD.mkdir(parents=True, exist_ok=True)
    ok, wall, cpu = True, 0.0, 0.0
    for name in args.modules or list(TARGETS):
        result = run_one(name, TARGETS[name], args.max_children)
        (BUILD / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        cpu_s = float(result["cpu_user"]) + float(result["cpu_sys"])  # type: ignore[arg-type]
        wall, cpu = wall + float(result["seconds"]), cpu + cpu_s  # type: ignore[arg-type]
        print(
            f"{name}: {result['score']} % ({result.get('killed')} killed, "
            f"{result.get('survived')} survived, {result.get('no_tests')} untested, "
            f"{result.get('timeout')} timeout of {result.get('total')}) "
            f"in {result['seconds']} s wall, {cpu_s:.0f} s CPU; "
            f"survivors: {BUILD / (name + '.survivors.txt')}"
        )
        ok = ok and result["mutmut_rc"] == 0 and float(result["score"]) >= args.min_score  # type: ignore[arg-type]
    print(
        f"all: {wall:.0f} s wall, {cpu:.0f} s CPU (user+sys); on a quiet machine about "
        f"{cpu / args.max_children:.0f} s with {args.max_children} workers (an estimate)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
