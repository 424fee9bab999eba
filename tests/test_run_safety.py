"""The CLI never loses work and never shows a user a traceback (each case reproduced first).

Faults covered: a read-only ``--out``, a full disk (a write failing with an
OSError), ``device=cuda`` without CUDA, SIGTERM, ``--resume`` without
``checkpoint.pt``, a corrupt ``run_info.json``, ``--restart``, a negative seed,
resuming a directory of another experiment; plus ``qsem run NAME --help`` and
shell completion. Runs use the iris demo with a few epochs (well under a second
of training each).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from qsem.cli import main
from qsem.experiments import demo
from qsem.runner.config import describe_keys

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
}


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("qsem: error: ")
    return lines[0]


def _demo(out: Path, *extra: str) -> int:
    return main(["run", "demo", "epochs=3", "--out", str(out), "-q", *extra])


def _info(out: Path) -> dict:
    return json.loads((out / "run_info.json").read_text())


def _recorded_step(out: Path) -> int | None:
    """The checkpoint step run_info.json records (None: none yet, or not readable yet)."""
    try:
        return _info(out).get("last_checkpoint_step")
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------
# a read-only --out, a full disk, a missing CUDA
# --------------------------------------------------------------------------


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable: chmod for a user; root ignores modes, so ``chattr +i``."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i failed here (file system?): {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_out_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    with read_only(ro):
        assert _demo(ro / "run") == 1  # mkdir inside a read-only directory
        line = _error_line(capsys)
        assert str(ro / "run") in line and "choose another --out" in line
        assert _demo(ro) == 1  # the empty read-only directory itself: config.json cannot be made
        line = _error_line(capsys)  # the first file it tries to make (.lock) is named
        assert line.startswith(f"qsem: error: {ro}{os.sep}") and "choose another --out" in line
        assert _demo(ro, "--debug") == 1
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "qsem: error: " in err
    assert list(ro.iterdir()) == []


def test_full_disk_is_one_line_and_the_run_is_marked_failed(tmp_path: Path) -> None:
    """A write that fails with an OSError, for real: the child process may not write files
    over 12 KiB (RLIMIT_FSIZE) and ignores SIGXFSZ, so the kernel fails the first checkpoint
    write (19 KB) with EFBIG — the same path as ENOSPC on a full disk (both are OSErrors from
    ``write``), without monkeypatching and without a tiny file system."""
    out = tmp_path / "run"
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (12 * 1024, 12 * 1024))\n"
        "from qsem.cli import main\n"
        "sys.exit(main(['run', 'demo', 'epochs=3', '--checkpoint-every', '1', '-q',\n"
        f"               '--out', {str(out)!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=False,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"qsem: error: {out / 'checkpoint.pt'}: File too large (the file size limit was "
        "reached: see 'ulimit -f')"
    ]
    info = _info(out)
    assert info["status"] == "failed" and "File too large" in info["error"]
    assert not (out / ".lock").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary left


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _demo(tmp_path / "run", "device=cuda") == 2
    line = _error_line(capsys)
    assert "config key 'device'" in line and "CUDA is not available" in line
    assert not (tmp_path / "run").exists()  # refused before any file is made
    assert _demo(tmp_path / "run", "device=cuda", "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_bad_device_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _demo(tmp_path / "run", "device=gpu0") == 2
    assert "config key 'device': 'gpu0' is not a torch device" in _error_line(capsys)


# --------------------------------------------------------------------------
# SIGTERM
# --------------------------------------------------------------------------


def test_sigterm_is_an_interruption_that_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qsem.cli", "run", "demo", "epochs=100", "--checkpoint-every",
         "1", "--out", str(out), "-q"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        # a checkpoint is complete once run_info.json records it (the file comes first: a
        # signal between the two would leave a checkpoint that run_info does not name yet)
        while not (out / "checkpoint.pt").exists() or _recorded_step(out) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert f"stopped by SIGTERM; continue with: qsem run demo --out {out} --resume" in err
    info = _info(out)
    assert info["status"] == "interrupted" and info["sessions"][-1]["status"] == "interrupted"
    assert not (out / ".lock").exists()
    assert not (out / "results.json").exists()
    step = info["last_checkpoint_step"]
    assert step is not None and 1 <= step < 100
    assert main(["run", "demo", "--out", str(out), "--resume"]) == 0
    assert f"resumed after epoch {step}" in capsys.readouterr().out
    info = _info(out)
    assert [s["status"] for s in info["sessions"]] == ["interrupted", "completed"]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 101))  # every epoch exactly once


# --------------------------------------------------------------------------
# resume refusals and --restart
# --------------------------------------------------------------------------


@pytest.fixture
def stopped(tmp_path: Path) -> Path:
    """A demo run directory as if stopped after its last checkpoint (epoch 3; results removed)."""
    out = tmp_path / "run"
    assert _demo(out, "--checkpoint-every", "2") == 0
    (out / "results.json").unlink()
    info = _info(out)
    info["status"] = info["sessions"][-1]["status"] = "interrupted"
    (out / "run_info.json").write_text(json.dumps(info))
    return out


def test_resume_without_checkpoint_is_refused(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    (stopped / "checkpoint.pt").unlink()
    before = sorted(p.name for p in stopped.iterdir())
    assert main(["run", "demo", "--out", str(stopped), "--resume"]) == 1
    line = _error_line(capsys)
    assert "checkpoint.pt is missing though run_info.json records one at epoch 3" in line
    assert "--restart" in line
    assert sorted(p.name for p in stopped.iterdir()) == before  # nothing touched


def test_corrupt_run_info_is_refused_and_kept(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    (stopped / "run_info.json").write_text('{"experiment": "demo", "sessi')
    assert main(["run", "demo", "--out", str(stopped), "--resume"]) == 1
    line = _error_line(capsys)
    assert "run_info.json: not valid JSON" in line and "not replaced" in line
    assert (stopped / "run_info.json").read_text() == '{"experiment": "demo", "sessi'


def test_restart_archives_the_old_run(stopped: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_info = (stopped / "run_info.json").read_text()
    (stopped / "run_info.json").write_text("garbage")
    assert main(["run", "demo", "--out", str(stopped), "--restart", "-q"]) == 0
    (archived,) = (stopped / "archive").iterdir()
    assert (archived / "run_info.json").read_text() == "garbage"  # kept as it was
    assert (archived / "checkpoint.pt").exists() and (archived / "config.json").exists()
    info = _info(stopped)
    assert info["status"] == "completed" and len(info["sessions"]) == 1
    assert info["archived_run"] == f"archive/{archived.name}"
    assert json.loads(old_info)["experiment"] == "demo"
    assert main(["run", "demo", "--out", str(stopped), "--restart", "--resume"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_resume_of_another_experiment_names_it(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["run", "kleene", "--out", str(stopped), "--resume"]) == 1
    line = _error_line(capsys)
    assert "it holds a run of experiment 'demo', not 'kleene'" in line
    assert f"qsem run demo --out {stopped} --resume" in line
    assert "unknown config key" not in line


@pytest.mark.parametrize(
    "args",
    [["--seed", "-1"], ["seed=-1"], ["--seed", str(2**32)], ["seed=4294967296"]],
)
def test_seed_out_of_range_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert _demo(tmp_path / "run", *args) == 2
    line = _error_line(capsys)
    assert "must be an integer with 0 <= seed < 2**32" in line
    assert ("'--seed'" in line) == (args[0] == "--seed")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------
# help and completion
# --------------------------------------------------------------------------


def test_run_name_help_lists_the_config_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "config keys of 'demo'" in out
    docs = describe_keys(demo.DemoConfig())
    assert any(doc.help for doc in docs)
    for doc in docs:
        assert f"  {doc.key} ({doc.type}, default " in out
        if doc.help:  # wrapped over lines: compare words
            assert " ".join(doc.help.split()) in " ".join(out.split())
    assert main(["run", "--help"]) == 0  # without NAME: the generic help
    assert "config keys of" not in capsys.readouterr().out


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shell_completion(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("run", "report", "compare", "--resume", "--restart", "--checkpoint-every"):
        assert word in script
    if shell == "zsh":
        assert script.startswith("#compdef qsem")
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} not installed: syntax not checked")
    check = subprocess.run([exe, "-n"], input=script, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    if shell == "bash":  # the completion really completes: `qsem re<TAB>`
        probe = script + '\nCOMP_WORDS=(qsem re); COMP_CWORD=1; _shtab_qsem; echo "${COMPREPLY[@]}"'
        done = subprocess.run([exe, "-c", probe], capture_output=True, text=True, check=False)
        assert done.stdout.split() == ["report"], done.stdout + done.stderr


# --------------------------------------------------------------------------
# progress bars
# --------------------------------------------------------------------------


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal (a 100-column pseudo-terminal here) ``qsem run`` shows a tqdm bar."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    args = [sys.executable, "-m", "qsem.cli", "run", "demo", "epochs=30", "--out",
            str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=300) == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "demo: " in shown and "/30 [" in shown and "it/s" in shown, shown


def test_quiet_disables_the_bar(tmp_path: Path) -> None:
    from qsem.runner.context import MetricsLog, RunContext

    for quiet in (False, True):
        ctx = RunContext(experiment="x", out_dir=tmp_path, config={"seed": 0}, seed=0,
                         metrics=MetricsLog(tmp_path / "m.jsonl"), quiet=quiet)  # fmt: skip
        bar = ctx.progress(range(3))
        assert list(bar) == [0, 1, 2]
        if quiet or sys.stderr.isatty():
            assert bar.disable is quiet  # type: ignore[attr-defined]
        else:  # a log file: a plain line every QSEM_PROGRESS_SECONDS instead of a bar
            assert not hasattr(bar, "disable") and hasattr(bar, "set_postfix")


def test_report_on_a_read_only_run_suggests_an_option_that_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qsem.cli import build_parser

    run = tmp_path / "run"
    assert _demo(run) == 0
    capsys.readouterr()
    (run / "report.html").unlink()
    with read_only(run):
        assert main(["report", str(run)]) == 1
        line = _error_line(capsys)
        suggested = [w.rstrip(")") for w in line.split() if w.startswith("--")]
        report_parser = next(
            a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
        ).choices["report"]
        assert suggested and all(s in report_parser._option_string_actions for s in suggested)
        assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert "<html" in (tmp_path / "r.html").read_text()


def test_interrupted_before_the_first_checkpoint_says_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interrupt_log
) -> None:
    """The hint printed after Ctrl-C is a command that works: ``--restart`` (with the same
    config options) when no checkpoint exists yet; ``--resume`` says why it cannot."""
    import shlex

    out = tmp_path / "run"
    with interrupt_log(lambda step, values: step == 2):  # the demo checkpoints every 20
        assert main(["run", "demo", "epochs=30", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists() and "Traceback" not in err
    hint = err.strip().splitlines()[-1]
    assert "--resume" not in hint and hint.endswith("--restart"), hint
    assert main(["run", "demo", "--out", str(out), "--resume"]) == 1
    line = _error_line(capsys)
    assert "stopped before its first checkpoint" in line and "--restart" in line, line
    command = shlex.split(hint.split("start it over with: ", 1)[1])
    assert command[:2] == ["qsem", "run"] and "epochs=30" in command
    assert main(command[1:]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 30
    assert _info(out)["status"] == "completed"
