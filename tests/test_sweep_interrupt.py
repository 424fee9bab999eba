"""Sweeps bound what they make, and Ctrl-C never prints a traceback (issue 21, item 9).

The Ctrl-C cases send SIGINT to the whole process group of a ``qsem`` subprocess (what a
terminal does: the driver and its pool workers get it) at a chosen moment: while the
command imports, right after the driver started its pool (the workers are importing),
and after the first trial finished (workers busy with trials or idle).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qsem.cli import main
from qsem.runner import ConfigError
from qsem.sweep.spec import MAX_TRIALS, parse_seeds

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
}


def test_too_many_seeds_refused_before_a_list_is_made() -> None:
    with pytest.raises(ConfigError, match=rf"--seeds '0-{MAX_TRIALS}'.*at most {MAX_TRIALS}"):
        parse_seeds(f"0-{MAX_TRIALS}")  # one seed over the limit
    assert len(parse_seeds(f"0-{MAX_TRIALS - 1}")) == MAX_TRIALS


def test_absurd_sweep_is_one_line_and_makes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sw"
    assert main(["sweep", "demo", "--seeds", "0-99999999", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seeds" in err[0] and f"at most {MAX_TRIALS}" in err[0], err
    assert not out.exists()
    # a grid multiplies: 2 points x 5001 seeds is over the limit, refused as well
    args = ["--seeds", f"0-{MAX_TRIALS // 2}", "--grid", "lr=0.1,0.2", "--out", str(out)]
    assert main(["sweep", "demo", *args]) == 2
    assert "--seeds × --grid" in capsys.readouterr().err
    assert not out.exists()


def _interrupt(tmp_path: Path, args: list[str], wait_for: str | None) -> tuple[int, str]:
    """Start ``python -m qsem ARGS``, SIGINT its process group once stdout shows ``wait_for``
    (None: after 1.5 s, while it imports torch); return the exit code and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "qsem", *args], env=ENV, cwd=tmp_path, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if wait_for is None:
        time.sleep(1.5)  # the interpreter is up (its SIGINT handler installed), qsem importing
    else:
        for line in proc.stdout:
            if wait_for in line:
                break
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


SWEEP = ["sweep", "demo", "--seeds", "0-3", "--workers", "2", "epochs=200", "--out", "sw"]


@pytest.mark.parametrize(
    "wait_for",
    [None, "to run on local pool", "[1/4] done"],
    ids=["while-importing", "workers-starting", "after-a-trial"],
)
def test_ctrl_c_in_a_sweep_prints_no_traceback(tmp_path: Path, wait_for: str | None) -> None:
    code, err = _interrupt(tmp_path, SWEEP, wait_for)
    assert code == 130, err
    assert "Traceback" not in err, err
    if wait_for is not None:  # the driver says how to go on, and it does
        assert "--resume" in err
        again = subprocess.run(
            [sys.executable, "-m", "qsem", *SWEEP], env=ENV, cwd=tmp_path, text=True,
            capture_output=True, check=False, timeout=300,
        )  # fmt: skip
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
        assert "4 of 4 trials done" in again.stdout


def test_ctrl_c_while_qsem_run_starts_prints_no_traceback(tmp_path: Path) -> None:
    code, err = _interrupt(tmp_path, ["run", "demo", "--out", "r"], None)
    assert code == 130, err
    assert "Traceback" not in err and "interrupted" in err, err


DASK_SWEEP = [
    "sweep",
    "demo",
    "--seeds",
    "0-3",
    "--cluster",
    "local:2",
    "epochs=200",
    "--out",
    "sw",
]


@pytest.mark.parametrize(
    "wait_for", ["to run on local Dask cluster", "[1/4] done"], ids=["cluster-up", "after-a-trial"]
)
def test_ctrl_c_in_a_local_dask_sweep_prints_no_traceback(tmp_path: Path, wait_for: str) -> None:
    """The Dask workers' event loops printed two tracebacks each before their SIGINT was
    ignored (the driver closes the cluster); the sweep resumes to the end."""
    pytest.importorskip("distributed")
    code, err = _interrupt(tmp_path, DASK_SWEEP, wait_for)
    assert code == 130, err
    assert "Traceback" not in err and "--resume" in err, err
    again = subprocess.run(
        [sys.executable, "-m", "qsem", *DASK_SWEEP], env=ENV, cwd=tmp_path, text=True,
        capture_output=True, check=False, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "4 of 4 trials done" in again.stdout


_FINALIZER_INTERRUPT = """
import time
from qsem.threads import redeliver_interrupts
if {install}:
    redeliver_interrupts()
    redeliver_interrupts()  # twice is harmless


class Dropped:
    def __del__(self):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while the collector ran this


try:
    Dropped()
    deadline = time.monotonic() + {wait}  # the redelivery's timer thread may start late
    while time.monotonic() < deadline:
        time.sleep(0.005)
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("install", [True, False])
def test_a_ctrl_c_inside_a_finalizer_reaches_the_program(install: bool) -> None:
    """Python drops a KeyboardInterrupt raised in a finalizer, printing "Exception
    ignored" and a traceback (seen in a pool worker); with the hook it is delivered
    again to the main thread. Without the hook (the control) the old behaviour shows."""
    # with the hook the interrupt ends the wait early (a loaded machine may take seconds to
    # start the timer thread); the control waits 1 s for nothing
    script = _FINALIZER_INTERRUPT.format(install=install, wait=60 if install else 1)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if install:
        assert done.stdout.strip() == "interrupted", done.stderr
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    else:
        assert done.stdout.strip() == "not interrupted"
        assert "Exception ignored" in done.stderr


@pytest.mark.parametrize("clear", [False, True], ids=["control", "cleared"])
def test_a_caught_ctrl_c_exits_with_the_returned_code(tmp_path: Path, clear: bool) -> None:
    """Under ``python -m``, CPython marks a KeyboardInterrupt that left ``exec`` of a string
    as unhandled even when it is caught, and then exits by SIGINT, not with the code given
    (the control shows the mark in this interpreter); ``clear_unhandled_interrupt_mark``,
    which ``qsem``'s entry point calls before returning, restores the code."""
    (tmp_path / "caught.py").write_text(
        "import sys\n"
        "from qsem.threads import clear_unhandled_interrupt_mark\n"
        "try:\n"
        "    exec('raise KeyboardInterrupt')\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        f"if {clear}:\n"
        "    clear_unhandled_interrupt_mark()\n"
        "sys.exit(130)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "caught"], env=ENV, cwd=tmp_path, capture_output=True, check=False
    )
    assert proc.returncode == (130 if clear else -signal.SIGINT), proc.stderr
