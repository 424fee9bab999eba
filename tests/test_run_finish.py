"""A run SIGKILLed at any moment of its finish ends up complete after ``--resume``.

Each case runs ``qsem run demo`` in a subprocess whose audit hook (``sys.addaudithook``,
no patching of qsem) sends the process SIGKILL just before a chosen file operation of
the finish: the rename that creates ``results.json``, the first write of
``run_info.json`` after it (its temporary file is left behind), the rename of
``report.html``, the removal of ``.lock``. Then ``qsem run demo --resume`` must leave a
finished run: status ``completed``, a report newer than ``run_info.json``, no lock, no
temporary file, and the results of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
}
ARGS = ["run", "demo", "epochs=2"]

#: SIGKILL this process just before the first audit event ``EVENT`` whose path argument
#: ends with ``NAME`` once ``results.json`` exists (``NAME`` = results.json: before it exists).
KILLER = """
import os, signal, sys
from pathlib import Path
out, event, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def hook(ev, args):
    if ev != event or not args or not str(args[-3 if ev == "os.rename" else 0]).endswith(name):
        return
    if name == "results.json" or (out / "results.json").exists():
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
from qsem.cli import main
sys.exit(main(sys.argv[4:]))
"""

#: (audit event, path suffix): the moments of the finish a kill is sent at.
KILL_POINTS = [
    ("os.rename", "results.json"),  # results about to appear: an unfinished run
    ("open", ".tmp"),  # the first temporary file after results.json: run_info's
    ("os.rename", "run_info.json"),  # run_info 'completed' written but not renamed
    ("os.rename", "report.html"),  # status completed, report not yet there
    ("os.remove", ".lock"),  # all written, the lock file still there
]


def _qsem(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qsem.cli", *args], env=ENV, capture_output=True, text=True,
        check=False, timeout=300,
    )  # fmt: skip


def _results(out: Path) -> dict:
    """``results.json`` without its timings (they differ between any two runs)."""
    results = json.loads((out / "results.json").read_text())
    return {k: v for k, v in results.items() if not k.endswith("_seconds")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "run"
    done = _qsem(*ARGS, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return _results(out)


@pytest.mark.parametrize(("event", "name"), KILL_POINTS, ids=[f"{e}-{n}" for e, n in KILL_POINTS])
def test_kill_during_finish_then_resume_completes(
    tmp_path: Path, reference: dict, event: str, name: str
) -> None:
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(out), event, name, *ARGS, "--out", str(out)],
        env=ENV, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # the kill happened there
    leftovers = sorted(p.name for p in out.iterdir())
    assert ".lock" in leftovers  # the state of the issue: the lock is left behind

    done = _qsem(*ARGS, "--out", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "completed"
    assert info["sessions"][-1]["status"] == "completed"
    report = out / "report.html"
    assert report.exists()
    assert report.stat().st_mtime_ns >= (out / "run_info.json").stat().st_mtime_ns
    assert "completed" in report.read_text()
    assert not (out / ".lock").exists()
    assert not [p.name for p in out.rglob("*.tmp")]
    assert _results(out) == reference

    again = _qsem(*ARGS, "--out", str(out), "--resume")  # now finished: nothing to repair
    assert again.returncode == 0 and "already complete" in again.stdout, again.stdout
