"""qsem sweep: parsing, trial identity, executors agreeing with serial runs, the ledger
surviving a killed driver, failed trials recorded.

The reference is plain serial runs: ``run_experiment`` called directly for every
(lr, seed), laid out like a sweep directory.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from conftest import SWEEP_ATOL

from qsem.cli import main
from qsem.experiments import get_experiment
from qsem.io import read_json
from qsem.runner import ConfigError, run_experiment
from qsem.stats import paired_tests, seed_statistics
from qsem.sweep import (
    LEDGER_FILE,
    MAX_ATTEMPTS,
    InProcessExecutor,
    SweepResult,
    config_hash,
    format_table,
    make_executor,
    make_trials,
    parse_grid,
    parse_seeds,
    run_sweep,
    summarise,
)

#: epochs per trial: enough checkpoints (every CHECKPOINT_EVERY) for a trial to be stopped
#: between two of them; a trial takes about a second on a loaded 2-core machine
EPOCHS = 20
CHECKPOINT_EVERY = 2
LR = "0.05"
SEEDS = (0, 1)
#: the results compared between executors (train_seconds is a timing)
METRICS = ["test_accuracy", "test_nll", "train_accuracy", "train_nll"]
#: run_sweep arguments of the sweep every executor runs
SPEC: dict[str, Any] = {
    "seeds": list(SEEDS),
    "grid": {"lr": [LR]},
    "fixed": [f"epochs={EPOCHS}"],
    "metrics": METRICS,
}


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trials run one by one with run_experiment, in sweep layout (DIR/lr=.../seed-N)."""
    root = tmp_path_factory.mktemp("serial")
    demo = get_experiment("demo")
    for seed in SEEDS:
        run_experiment(demo, overrides=[f"epochs={EPOCHS}", f"lr={LR}"], seed=seed,
                       out=root / f"lr={LR}" / f"seed-{seed}", quiet=True)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    """The sweep on a local pool of two processes."""
    out = tmp_path_factory.mktemp("pool") / "sw"
    res = run_sweep("demo", out=out, workers=2, echo=_quiet, **SPEC)
    assert res.summary["trials"]["done"] == len(SEEDS) and not res.interrupted
    return res


def _sessions(run_dir: Path) -> list[dict[str, Any]]:
    sessions: list[dict[str, Any]] = read_json(run_dir / "run_info.json")["sessions"]
    return sessions


def _reference_summary(root: Path, seeds: tuple[int, ...]) -> dict[str, Any]:
    trials = make_trials(get_experiment("demo"), seeds, {"lr": [LR]}, [f"epochs={EPOCHS}"])
    return summarise("demo", trials, {t.key: ("done", None) for t in trials}, root, METRICS)


def _assert_same_results(sweep_dir: Path, serial_dir: Path, seeds: tuple[int, ...]) -> None:
    for seed in seeds:
        got = read_json(sweep_dir / f"lr={LR}" / f"seed-{seed}" / "results.json")
        want = read_json(serial_dir / f"lr={LR}" / f"seed-{seed}" / "results.json")
        for key in METRICS:
            assert got[key] == pytest.approx(want[key], abs=SWEEP_ATOL), (seed, key)
        assert got["test_confusion_matrix"] == want["test_confusion_matrix"]


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("metrics", "table", "paired", "values", "trials")}


# --------------------------------------------------------------------------
# parsing and identity
# --------------------------------------------------------------------------


def test_parse_seeds_and_grid() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5,0,3") == [0, 3, 5]
    assert parse_seeds("0-1,7") == [0, 1, 7]
    assert parse_grid(["lr=0.01,0.02", "layers=1"]) == {"lr": ["0.01", "0.02"], "layers": ["1"]}
    assert parse_grid(["kbs=[1,2],[3]"]) == {"kbs": ["[1,2]", "[3]"]}
    for bad, word in [
        ("3-1", "empty"),
        ("a", "not a seed"),
        ("1,1", "twice"),
        ("-2", "integers >= 0"),
    ]:
        with pytest.raises(ConfigError, match=word):
            parse_seeds(bad)
    for items, word in [(["lr"], "key=v1"), (["seed=1,2"], "--seeds"), (["lr=1,,2"], "empty"),
                        (["lr=1", "lr=2"], "twice")]:  # fmt: skip
        with pytest.raises(ConfigError, match=word):
            parse_grid(items)


def test_trials_identity_naming_and_validation() -> None:
    demo = get_experiment("demo")
    trials = make_trials(demo, [0, 2], {"lr": ["0.1", "0.2"], "layers": ["1"]}, ["epochs=3"])
    assert [t.run_dir for t in trials] == [
        "lr=0.1,layers=1/seed-0", "lr=0.1,layers=1/seed-2",
        "lr=0.2,layers=1/seed-0", "lr=0.2,layers=1/seed-2",
    ]  # fmt: skip
    assert trials[0].config["lr"] == 0.1 and trials[0].config["epochs"] == 3
    assert trials[0].config_hash == trials[1].config_hash != trials[2].config_hash
    assert trials[0].key == (config_hash(trials[0].config), 0)
    assert make_trials(demo, [4], {})[0].run_dir == "seed-4"
    with pytest.raises(ConfigError, match=r"^--grid lr=-1: config key 'lr': must be a positive"):
        make_trials(demo, [0], {"lr": ["0.1", "-1"]})
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        make_trials(demo, [0], {"nope": ["1"]})
    with pytest.raises(ConfigError, match="same config"):
        make_trials(demo, [0], {"lr": ["0.1", "0.10"]})


def test_bad_grid_is_one_line_and_creates_nothing(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "sw"
    code = main(["sweep", "demo", "--seeds", "0-1", "--grid", "layers=1,x", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "layers=x" in err and "expected an integer" in err
    assert not out.exists()
    code = main(["sweep", "demo", "--seeds", "0", "--checkpoint-every", "-1", "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err == "qsem: error: --checkpoint-every must be >= 0, got -1\n"
    assert not out.exists()


# --------------------------------------------------------------------------
# executors agree with serial runs
# --------------------------------------------------------------------------


def test_summary_statistics_and_paired_tests(tmp_path: Path) -> None:
    """summarise() against qsem.stats called by hand on the same per-seed values."""
    demo = get_experiment("demo")
    trials = make_trials(demo, [0, 1, 2], {"lr": ["0.1", "0.2"]})
    acc = {"lr=0.1": [0.5, 0.6, 0.8], "lr=0.2": [0.7, 0.65, 0.9]}
    for t in trials:
        (tmp_path / t.run_dir).mkdir(parents=True)
        res = {"acc": acc[t.label][t.seed], "epochs": 5, "ok": True, "note": "x",
               "nested": {"a": {"b": 10 * acc[t.label][t.seed]}}}  # fmt: skip
        (tmp_path / t.run_dir / "results.json").write_text(json.dumps(res))
    states = {t.key: ("done", None) for t in trials}
    states[trials[2].key] = ("failed", "RuntimeError: boom")  # lr=0.1, seed 2
    s = summarise("demo", trials, states, tmp_path)
    assert s["metrics"] == ["acc"] and s["constant"] == {"epochs": 5.0}
    rows = {r["point"]: r for r in s["table"]}
    assert {k: v for k, v in rows["lr=0.1"].items() if k not in ("point", "metric")} == \
        seed_statistics([0.5, 0.6], seed=0)  # fmt: skip
    assert rows["lr=0.2"]["n"] == 3 and rows["lr=0.2"]["mean"] == pytest.approx(0.75)
    (pair,) = s["paired"]  # over the seeds both points finished: 0 and 1
    assert (pair["a"], pair["b"], pair["n"]) == ("lr=0.1", "lr=0.2", 2)
    assert {k: pair[k] for k in ("mean_diff", "wilcoxon_p", "ttest_p")} == \
        paired_tests([0.5, 0.6], [0.7, 0.65])  # fmt: skip
    assert s["failures"] == [{"run_dir": "lr=0.1/seed-2", "seed": 2, "error": "RuntimeError: boom"}]
    assert s["trials"] == {"total": 6, "done": 5, "failed": 1, "pending": 0, "running": 0}
    assert "lr=0.1/seed-2: RuntimeError: boom" in format_table(s)
    deep = summarise("demo", trials, states, tmp_path, ["nested.a.b", "acc"])
    assert deep["metrics"] == ["nested.a.b", "acc"]
    assert deep["table"][0]["mean"] == pytest.approx(10 * rows["lr=0.1"]["mean"])
    with pytest.raises(ConfigError, match="--metric 'nope'"):
        summarise("demo", trials, states, tmp_path, ["nope"])


def test_dask_local_cluster_pool_and_serial_agree(
    tmp_path: Path, serial: Path, pool: SweepResult
) -> None:
    """The same sweep on a two-worker LocalCluster (--cluster local:2), on a local pool of
    two processes and as serial runs: the same per-seed results and the same summary."""
    want = _comparable(_reference_summary(serial, SEEDS))
    _assert_same_results(pool.out_dir, serial, SEEDS)
    assert _comparable(pool.summary) == want
    pytest.importorskip("distributed")  # the pool is checked against serial runs without Dask
    res = run_sweep("demo", out=tmp_path / "dask", cluster="local:2", echo=_quiet, **SPEC)
    assert res.summary["trials"]["done"] == len(SEEDS) and not res.interrupted
    _assert_same_results(res.out_dir, serial, SEEDS)
    for swept in (res, pool):
        assert _comparable(swept.summary) == want
        assert _comparable(read_json(swept.out_dir / "summary.json")) == want
        assert (swept.out_dir / "plots" / "test_accuracy.png").stat().st_size > 0
    _assert_same_results(res.out_dir, pool.out_dir, SEEDS)
    # the same sweep again (in this process) runs nothing and gives the same summary
    again = run_sweep("demo", out=tmp_path / "dask", workers=0, echo=_quiet, **SPEC)
    assert _comparable(again.summary) == want
    assert all(len(_sessions(res.out_dir / f"lr={LR}" / f"seed-{s}")) == 1 for s in SEEDS)


def _worker_log_level() -> int:
    import logging

    return logging.getLogger("distributed.worker").getEffectiveLevel()


def test_local_cluster_workers_log_only_critical() -> None:
    """A worker whose heartbeat meets the scheduler's shutdown logs an ERROR with a traceback
    (a CI run on a loaded machine printed one after a resumed sweep): the local cluster's
    workers log only CRITICAL; trial failures reach the driver through their futures."""
    pytest.importorskip("distributed")
    import logging

    ex = make_executor(cluster="local:1")
    try:
        levels = ex._client.run(_worker_log_level)  # the worker processes' own setting
    finally:
        ex.close()
    assert list(levels.values()) == [logging.CRITICAL]


def test_dask_scheduler_address(tmp_path: Path, serial: Path, capsys: Any) -> None:
    """--cluster tcp://HOST:PORT: a sweep submitted to the scheduler of a LocalCluster started
    here (its one worker runs in this process; client and scheduler talk over TCP)."""
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "sw"
    local = {"n_workers": 1, "threads_per_worker": 1, "processes": False}
    with distributed.LocalCluster(**local, protocol="tcp://", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        code = main(["sweep", "demo", "--seeds", "0", "--cluster", address, f"epochs={EPOCHS}",
                     "--grid", f"lr={LR}", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"1 to run on Dask at {address}, 1 worker thread(s)" in printed
    _assert_same_results(out, serial, (0,))


def test_missing_dask_is_one_line(tmp_path: Path) -> None:
    """Without Dask installed, --cluster is refused in one line naming the extra, before
    anything is made. The import is blocked in a child interpreter only (a meta-path finder
    that raises for the dask packages), so this process keeps its Dask."""
    block = (
        "import sys\n"
        "class NoDask:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('dask', 'distributed'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoDask())\n"
        "from qsem.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "sw"
    done = subprocess.run(
        [sys.executable, "-c", block, "sweep", "demo", "--seeds", "0", "--cluster", "local:2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    want = "qsem: error: --cluster needs Dask distributed: pip install 'qsem[dask]'\n"
    assert done.stderr == want
    assert not out.exists()


# --------------------------------------------------------------------------
# the ledger survives a killed driver; failures are recorded
# --------------------------------------------------------------------------


def _states(db: Path) -> dict[str, str]:
    try:
        with sqlite3.connect(db) as con:
            return dict(con.execute("SELECT run_dir, state FROM trials").fetchall())
    except sqlite3.OperationalError:  # the driver is still creating the tables
        return {}


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_killed_worker_and_driver_resume_to_the_same_summary(tmp_path: Path, serial: Path) -> None:
    """A sweep driver (a local pool of one process, checkpoints every 2 epochs) loses its
    worker half-way through seed 0: the driver re-queues the trial, which RESUMES from its
    checkpoint in a new worker. Then the driver itself is killed after seed 0 is done; its
    orphaned worker stops by itself, and the same sweep run again finishes seed 1. Every
    result and the summary equal the serial runs'; no trial completed twice."""
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "sw"
    seed0 = out / f"lr={LR}" / "seed-0"
    # options and key=value overrides intermixed, as `qsem run` takes them
    cmd = [sys.executable, "-m", "qsem", "sweep", "demo", "--seeds", "0-1", f"epochs={EPOCHS}",
           "--grid", f"lr={LR}", "--workers", "1", "--checkpoint-every", str(CHECKPOINT_EVERY),
           "--out", str(out)]  # fmt: skip
    for m in METRICS:
        cmd += ["--metric", m]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: set[int] = set()

    def wait_for(what: str, ready: Any) -> None:
        deadline = time.monotonic() + 120
        while not ready():
            workers.update(c.pid for c in psutil.Process(driver.pid).children(recursive=True))
            assert driver.poll() is None, driver.stderr.read().decode() if driver.stderr else ""
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within 120 s")
            time.sleep(0.02)

    killed_at = 0
    try:
        # 1. kill the pool worker while seed 0 has a checkpoint and >= 8 epochs to go
        def seed0_midway() -> bool:
            n = _lines(seed0 / "metrics.jsonl")
            return (seed0 / "checkpoint.pt").exists() and CHECKPOINT_EVERY <= n <= EPOCHS - 8

        wait_for("seed 0 half-way", seed0_midway)
        (worker,) = [c for c in psutil.Process(driver.pid).children()
                     if "spawn_main" in " ".join(c.cmdline())]  # fmt: skip
        worker.kill()
        killed_at = _lines(seed0 / "metrics.jsonl")
        worker.wait(10)
        assert not (seed0 / "results.json").exists()
        # 2. kill the driver once seed 0 is done (again, in the new worker)
        db = out / LEDGER_FILE
        wait_for("seed 0 done", lambda: _states(db).get(f"lr={LR}/seed-0") == "done")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    states = _states(out / LEDGER_FILE)
    assert states[f"lr={LR}/seed-0"] == "done" and states[f"lr={LR}/seed-1"] != "done", states
    with sqlite3.connect(out / LEDGER_FILE) as con:
        (attempts,) = con.execute(
            "SELECT attempts FROM trials WHERE run_dir = ?", (f"lr={LR}/seed-0",)
        ).fetchone()
    assert attempts == 2  # the killed worker's attempt and the resumed one
    # the orphaned pool workers stop by themselves (their trials stay resumable)
    _, alive = psutil.wait_procs([psutil.Process(p) for p in workers if psutil.pid_exists(p)],
                                    timeout=30)  # fmt: skip
    assert not alive, f"pool workers outlived their driver: {alive}"

    resumed = run_sweep("demo", out=out, resume=True, workers=0, echo=_quiet)
    assert set(_states(out / LEDGER_FILE).values()) == {"done"}
    _assert_same_results(out, serial, SEEDS)
    assert _comparable(resumed.summary) == _comparable(_reference_summary(serial, SEEDS))
    # seed 0 resumed from a checkpoint taken before the kill, not from the start
    first, *_, last = _sessions(seed0)
    assert first["status"] == "running" and first["end_time"] is None  # killed with its worker
    assert last["status"] == "completed"
    step = last["resumed_from_step"]
    assert step is not None and step % CHECKPOINT_EVERY == 0
    assert CHECKPOINT_EVERY <= step <= killed_at
    lines = (seed0 / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == list(range(1, EPOCHS + 1))  # cut back to the checkpoint, no epoch twice
    for seed in SEEDS:  # every run finished once: one completed session
        sessions = _sessions(out / f"lr={LR}" / f"seed-{seed}")
        assert sum(s["status"] == "completed" for s in sessions) == 1, sessions


def test_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "sw"
    code = main(["sweep", "--out", str(out), "demo", "--seeds", "0", "epochs=2", "--workers", "0",
                 "--grid", "device=bogus,cpu"])  # options and overrides in any order  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1
    assert _states(out / LEDGER_FILE) == {"device=bogus/seed-0": "failed",
                                          "device=cpu/seed-0": "done"}  # fmt: skip
    with sqlite3.connect(out / LEDGER_FILE) as con:
        (error,) = con.execute("SELECT error FROM trials WHERE state = 'failed'").fetchone()
    assert "bogus" in error
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == [{"run_dir": "device=bogus/seed-0", "seed": 0, "error": error}]
    assert "1 failed trial(s):" in printed and error in printed
    # a re-run skips the failed trial unless asked to retry it
    assert main(["sweep", "demo", "--out", str(out), "--resume", "--workers", "0"]) == 1
    assert "nothing to run" in capsys.readouterr().out


class _DyingWorkers:
    """An engine of the TrialExecutor interface whose worker process "dies"
    (BrokenProcessPool, as a local pool reports it) on given trials a given number of times."""

    capacity = 1
    threads = 0

    def __init__(self, deaths: dict[str, int]) -> None:
        self.deaths = dict(deaths)
        self.inner = InProcessExecutor()

    def submit(self, spec: Any, root: str) -> Future[Any]:
        if self.deaths.get(spec.run_dir, 0) > 0:
            self.deaths[spec.run_dir] -= 1
            fut: Future[Any] = Future()
            fut.set_exception(BrokenProcessPool("a process in the pool was terminated abruptly"))
            return fut
        return self.inner.submit(spec, root)

    def wait_any(self, futures: Any) -> list[Any]:
        return list(futures)

    def describe(self) -> str:
        return "test engine"

    def close(self, wait: bool = True) -> None:
        pass


def test_dead_worker_requeues_its_trial_then_gives_up(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    engine = _DyingWorkers({"seed-0": 1, "seed-1": 99})
    res = run_sweep("demo", out=out, seeds=[0, 1], fixed=["epochs=2"], executor=engine,
                    echo=_quiet)  # fmt: skip
    assert _states(out / LEDGER_FILE) == {"seed-0": "done", "seed-1": "failed"}
    with sqlite3.connect(out / LEDGER_FILE) as con:
        rows = dict(con.execute("SELECT run_dir, attempts FROM trials").fetchall())
        (error,) = con.execute("SELECT error FROM trials WHERE state = 'failed'").fetchone()
    assert rows == {"seed-0": 2, "seed-1": MAX_ATTEMPTS}
    assert error == f"its worker process died {MAX_ATTEMPTS} times"
    assert res.failed == 1 and (out / "seed-0" / "results.json").exists()
