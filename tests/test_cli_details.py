"""Command-line details a first hour of use turned up (issue 21, item 15), each reproduced.

``-q`` is checked in ``tests/test_runner.py`` (the ``counter`` CLI test) and ``qsem
report`` on a read-only run directory in ``tests/test_run_safety.py``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qsem.cli import main
from qsem.experiments import EXPERIMENTS, demo
from qsem.runner import run_experiment
from qsem.stats import MIN_INTERVAL_N, seed_statistics
from qsem.sweep.executors import CONNECT_TIMEOUT_S
from qsem.sweep.summary import format_table, plot_metric

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- sweep --metric ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_unknown_metric_refused_before_any_trial(tmp_path: Path, capsys, name: str) -> None:
    """Every experiment declares its results (the runner fails a run whose results differ,
    so each experiment's own tests check its declaration)."""
    exp = EXPERIMENTS[name]
    assert exp.results, f"{name} declares no Experiment.results"
    out = tmp_path / "sw"
    assert main(["sweep", name, "--seeds", "0-1", "--metric", "nope", "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "--metric 'nope'" in line and ", ".join(exp.results) in line
    # a nested name ("a.b") is checked up front by its top-level part
    assert main(["sweep", name, "--seeds", "0-1", "--metric", "nope.x", "--out", str(out)]) == 2
    assert "--metric 'nope.x'" in _one_error_line(capsys)
    assert not out.exists()  # nothing ran, nothing was made


def test_declared_results_of_demo_are_its_results(tmp_path: Path) -> None:
    """The declaration that makes the check above possible cannot drift from the code."""
    result = run_experiment(demo.EXPERIMENT, overrides=["epochs=2"], out=tmp_path / "r", quiet=True)
    assert set(result.results) == set(demo.EXPERIMENT.results)


def test_unknown_metric_of_an_undeclared_experiment_stops_after_the_first_trial(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    undeclared = dataclasses.replace(demo.EXPERIMENT, name="undeclared", results=())
    monkeypatch.setitem(EXPERIMENTS, "undeclared", undeclared)
    out = tmp_path / "sw"
    args = ["--seeds", "0-3", "--workers", "0", "epochs=2", "--metric", "nope"]
    assert main(["sweep", "undeclared", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--metric 'nope'" in err and "after its first trial" in err and "Traceback" not in err
    assert len(list(out.glob("seed-*/results.json"))) == 1  # not every trial ran


# --- no "95 % bootstrap CI" from two seeds ----------------------------------------------


def test_no_bootstrap_interval_below_three_seeds() -> None:
    assert MIN_INTERVAL_N == 3
    two = seed_statistics([0.8, 0.9])
    assert two["ci_low"] is None and two["ci_high"] is None and two["std"] is not None
    three = seed_statistics([0.8, 0.9, 1.0])
    assert three["ci_low"] is not None and three["ci_low"] < 0.9 < three["ci_high"]
    row = {"point": "(fixed config)", "metric": "acc", "n": 2, "mean": 0.85, "std": 0.07}
    summary = {
        "table": [{**row, "ci_low": None, "ci_high": None}],
        "paired": [],
        "failures": [],
        "values": {"(fixed config)": {0: {"acc": 0.8}, 1: {"acc": 0.9}}},
    }
    text = format_table(summary)
    assert "n < 3" in text  # says why there is no interval
    title = plot_metric(summary, "acc").axes[0].get_title()
    assert "n < 3" in title


# --- --cluster to nothing fails fast ----------------------------------------------------


def test_cluster_without_scheduler_fails_fast(tmp_path: Path, capsys) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "sw"
    tick = time.monotonic()
    code = main(["sweep", "demo", "--seeds", "0", "--cluster", "tcp://127.0.0.1:1",
                 "--out", str(out)])  # fmt: skip
    took = time.monotonic() - tick
    assert code == 1 and took < CONNECT_TIMEOUT_S, took
    line = _one_error_line(capsys)
    assert "no Dask scheduler answers" in line and "--connect-timeout" in line
    assert not out.exists()
    assert main(["sweep", "demo", "--seeds", "0", "--cluster", "tcp://127.0.0.1:1",
                 "--connect-timeout", "0", "--out", str(out)]) == 2  # fmt: skip
    assert "--connect-timeout" in _one_error_line(capsys)


# --- absurd sizes, progress without a terminal ------------------------------------------


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("epochs=99999999999999999999", ["'epochs'", "2**63"]),
        ("layers=1000000", ["'layers'", "[1, 100]"]),
    ],
)
def test_absurd_sizes_refused_in_one_line(
    tmp_path: Path, capsys, override: str, words: list[str]
) -> None:
    out = tmp_path / "r"
    assert main(["run", "demo", override, "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert all(w in line for w in words), line
    assert not out.exists()


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "QSEM_PROGRESS_SECONDS": "0.2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "qsem", "run", "demo", "epochs=300", "--out", str(tmp_path / "r")],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("demo: ")]
    assert lines and all("/300 (" in line and " s" in line for line in lines), done.stderr
    quiet = subprocess.run(
        [sys.executable, "-m", "qsem", "run", "demo", "epochs=300", "-q", "--out",
         str(tmp_path / "q")],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


# --- small usage errors -----------------------------------------------------------------


def test_compare_with_one_directory_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path)]) == 2
    assert "two or more" in _one_error_line(capsys)


def test_negative_seeds_are_one_clear_line(tmp_path: Path, capsys) -> None:
    assert main(["sweep", "demo", "--seeds", "-1-2", "--out", str(tmp_path / "s")]) == 2
    line = _one_error_line(capsys)
    assert "--seeds '-1-2'" in line and ">= 0" in line


@pytest.mark.parametrize("make", [False, True], ids=["missing", "not-a-sweep"])
def test_resume_of_no_sweep_says_nothing_to_resume(tmp_path: Path, capsys, make: bool) -> None:
    out = tmp_path / "notarun"
    if make:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert main(["sweep", "demo", "--resume", "--out", str(out)]) == 1
    line = _one_error_line(capsys)
    assert "nothing to resume" in line and "choose a new --out" not in line, line


#: words a one-line description cannot end with: it would stop mid-sentence
_DANGLING = {"scored", "of", "vs", "on", "and", "with", "the", "to", "for", "by", "a", "in"}


def test_list_lines_are_complete(capsys) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("emergence-cmsp ") for line in lines)
    for line in lines:
        last = line.rstrip().rstrip(".").split()[-1].lower()
        assert last not in _DANGLING and not line.rstrip().endswith((",", ":")), line
