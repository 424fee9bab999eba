"""The history store under a killed writer and concurrent readers (as SQLite tests itself).

The writer is a child process (``os.fork``: no interpreter start-up, so the loop is
short) that appends transactions of 1..5 step records and, after each ``COMMIT``
returned, acknowledges it on a pipe (``os.write``, unbuffered). The parent kills it
with SIGKILL at a random moment (seeded), then checks the file: ``PRAGMA
integrity_check`` is ok, every acknowledged commit is present, and the records
form whole transactions only (each record names its transaction and its size).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qsem.edge import HistoryStore, HistoryStoreError, StepRecord

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

#: kill/check rounds of the crash loop.
KILLS = 24
USER = "crash"


def _record(step: int, txn: int, size: int) -> StepRecord:
    """Step ``step``, in transaction ``txn`` of ``size`` records; φ derived from the step."""
    phi = np.random.default_rng(step).normal(size=(16, 3)).astype(np.float32)
    return StepRecord(step, phi, dphi=float(step) / 7, label=step % 3, query=f"{txn}/{size}")


def _writer(path: Path, fd: int, seed: int, pause: float) -> None:
    """Child body: append transactions forever, acknowledging each after its commit."""
    rng = random.Random(seed)
    with HistoryStore(path, writable=True, check=False) as store:
        done = store.steps(USER) if USER in store.users() else []
        step = len(done)
        txn = int(done[-1].query.split("/")[0]) + 1 if done else 0
        while True:
            size = rng.randint(1, 5)
            store.append_steps(USER, [_record(step + i, txn, size) for i in range(size)])
            os.write(fd, f"{txn} {step + size}\n".encode())  # after COMMIT returned
            step += size
            txn += 1
            if pause:
                time.sleep(pause)


def _spawn(path: Path, seed: int, pause: float = 0.0) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 0
        try:
            os.close(r)
            _writer(path, w, seed, pause)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks).decode()


def _check_whole(records: list[StepRecord]) -> None:
    """Steps 0..n-1, each transaction complete, φ as written."""
    assert [r.step for r in records] == list(range(len(records)))
    counts: dict[int, int] = {}
    for r in records:
        txn, size = map(int, (r.query or "").split("/"))
        counts[txn] = counts.get(txn, 0) + 1
        assert counts[txn] <= size
        assert r.phi.tobytes() == _record(r.step, txn, size).phi.tobytes()
    for r in records:
        txn, size = map(int, (r.query or "").split("/"))
        assert counts[txn] == size, f"transaction {txn} is half there"


def test_sigkilled_writer_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    HistoryStore(path, writable=True).close()
    rng = random.Random(20261129)
    acked_total = 0
    for round_ in range(KILLS):
        pid, fd = _spawn(path, seed=round_)
        time.sleep(rng.uniform(0.005, 0.12))  # a random moment, mid-transaction or not
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, round_
        acks = [tuple(map(int, line.split())) for line in _read_all(fd).splitlines()]
        with HistoryStore(path) as store:
            assert store.integrity_check() == ["ok"]
            records = store.steps(USER) if USER in store.users() else []
        _check_whole(records)
        if acks:
            assert len(records) >= acks[-1][1], f"round {round_}: an acknowledged commit is lost"
            acked_total = acks[-1][1]
        assert len(records) >= acked_total
    assert acked_total > KILLS  # the writer did commit in most rounds


def test_concurrent_readers_never_see_half_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    HistoryStore(path, writable=True).close()
    pid, fd = _spawn(path, seed=7, pause=0.001)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = time.monotonic() + 2.5

    def reader() -> None:
        try:
            with HistoryStore(path, check=False) as store:
                last = 0
                while time.monotonic() < stop:
                    records = store.steps(USER) if USER in store.users() else []
                    _check_whole(records)
                    assert len(records) >= last  # committed data never goes away
                    last = len(records)
                    seen.append(last)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    _read_all(fd)
    assert not errors, errors[0]
    assert len(seen) > 20 and len(set(seen)) > 5  # reads overlapped many commits


def test_a_checkpoint_killed_after_page_one_recovers_from_the_wal(tmp_path: Path) -> None:
    """The state the crash loop once met: page 1 of a WAL checkpoint written (its
    header already gives the new, larger size), the later pages not yet, the -wal
    file intact. SQLite recovers it from the WAL; the store must not refuse it."""
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps(USER, [_record(s, 0, 1) for s in range(5)])
    old = path.read_bytes()  # checkpointed on close: the small file
    store = HistoryStore(path, writable=True)
    store.append_steps(USER, [_record(s, 1, 1) for s in range(5, 400)])  # into the WAL
    wal = Path(f"{path}-wal").read_bytes()
    assert len(wal) > 0
    con = sqlite3.connect(path)  # the full checkpoint the killed writer had begun
    con.execute("PRAGMA wal_checkpoint(FULL)")
    con.close()  # every connection closed: no shared-memory index outlives the files below
    new = path.read_bytes()
    store.close()
    page = int.from_bytes(new[16:18], "big")
    assert len(new) > len(old)
    # the interrupted checkpoint: page 1 new, the rest as before, the WAL beside it
    path.write_bytes(new[:page] + old[page:])
    Path(f"{path}-wal").write_bytes(wal)
    Path(f"{path}-shm").unlink(missing_ok=True)
    with HistoryStore(path) as reader:
        assert reader.integrity_check() == ["ok"]
        assert [r.step for r in reader.steps(USER)] == list(range(400))
    # without the WAL the same file is truncated, and refused
    path.write_bytes(new[:page] + old[page:])
    Path(f"{path}-wal").unlink()
    with pytest.raises(HistoryStoreError, match="truncated"):
        HistoryStore(path)


# -- issue 21: creating, racing, full disks and held locks -------------------------------


def _child(body: Callable[[], str]) -> tuple[int, int]:
    """Fork a child that runs ``body`` and writes what it returns (or ``Type: message``)
    to a pipe; returns (pid, read end)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            os.close(r)
            out = body()
        except BaseException as exc:
            out = f"{type(exc).__name__}: {exc}"
        try:
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _result(pid: int, fd: int) -> str:
    out = _read_all(fd)
    os.waitpid(pid, 0)
    return out


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(f".{name}."))


def _use(path: Path) -> None:
    with HistoryStore(path, writable=True) as store:
        store.append_steps(USER, [_record(0, 0, 1)])
    with HistoryStore(path) as store:
        assert store.users() == [USER] and store.integrity_check() == ["ok"]


#: kill rounds of the creation loop (a fresh path each).
CREATION_KILLS = 40


def test_a_store_killed_while_being_created_is_never_left_unopenable(tmp_path: Path) -> None:
    """SIGKILL ``HistoryStore(new, writable=True)`` at a random moment (seeded) of its
    creation: the path then holds nothing or a complete store, never a half-made file;
    the next writer opens it, and the killed creator's temporary file is cleaned up."""
    rng = random.Random(20261207)
    start = time.perf_counter()
    HistoryStore(tmp_path / "timing.sqlite", writable=True).close()
    window = time.perf_counter() - start  # one creation and open, here and now
    states: dict[str, int] = {}
    for round_ in range(CREATION_KILLS):
        path = tmp_path / f"h{round_}.sqlite"
        started_r, started_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - killed
            try:
                os.write(started_w, b"x")  # the random moment counts from here
                HistoryStore(path, writable=True, check=False).close()
            finally:
                os._exit(0)
        os.close(started_w)
        assert os.read(started_r, 1) == b"x"
        os.close(started_r)
        time.sleep(rng.uniform(0.0, 1.3 * window))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        state = ("complete" if path.exists() else "absent") + (
            "+temporary" if _leftovers(tmp_path, path.name) else "")  # fmt: skip
        states[state] = states.get(state, 0) + 1
        if path.exists():
            with HistoryStore(path) as store:  # a complete store, as the reader sees it
                assert store.users() == [] and store.schema_version == 2
        _use(path)
        assert _leftovers(tmp_path, path.name) == []  # the killed creator's file is gone
    assert states.get("absent+temporary", 0) > 0, states  # kills landed mid-creation
    assert states.get("complete", 0) > 0, states  # and after it


def _fsize_limit(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def test_a_file_size_limit_while_creating_leaves_nothing(tmp_path: Path) -> None:
    """``ulimit -f`` (RLIMIT_FSIZE) too small for a new store: one line naming the path
    and the cause, no file at the path and no temporary file; later it is created."""
    path = tmp_path / "h.sqlite"

    def body() -> str:
        _fsize_limit(6000)
        HistoryStore(path, writable=True)
        return "created"

    out = _result(*_child(body))
    assert out.startswith(f"HistoryStoreError: history store {path}: ") and "\n" not in out
    assert "ulimit" in out and "disk I/O error" in out
    assert sorted(os.listdir(tmp_path)) == []
    _use(path)


def test_a_file_size_limit_on_a_large_append_is_one_line(tmp_path: Path) -> None:
    """The write-ahead log outgrows RLIMIT_FSIZE mid-transaction: SQLite rolls the
    transaction back itself; the error is the cause (not 'cannot rollback'), in one line,
    and every earlier record is intact."""
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps(USER, [_record(s, 0, 1) for s in range(10)])

    def body() -> str:
        with HistoryStore(path, writable=True) as store:
            _fsize_limit(300_000)
            big = np.zeros((64, 64))
            store.append_steps(USER, [StepRecord(10 + s, big) for s in range(400)])
        return "stored"

    out = _result(*_child(body))
    assert out.startswith(f"HistoryStoreError: history store {path}: ") and "\n" not in out
    assert "disk I/O error" in out and "ulimit" in out and "rollback" not in out
    with HistoryStore(path) as store:
        assert [r.step for r in store.steps(USER)] == list(range(10))


_FULL_DISK = """
import os, sys
import numpy as np
from qsem.edge import HistoryStore, HistoryStoreError, StepRecord
folder = sys.argv[1]
path = os.path.join(folder, "h.sqlite")
filler = os.path.join(folder, "filler")
with open(filler, "wb") as fh:  # leave about 8 kB free
    fh.write(bytes(os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - 8192))
try:
    HistoryStore(path, writable=True)
except HistoryStoreError as exc:
    print("CREATE", exc)
print("LEFT", sorted(os.listdir(folder)))
os.remove(filler)
store = HistoryStore(path, writable=True)
n = 0
try:
    while True:
        store.append_steps("u", [StepRecord(n + i, np.ones(512) * (n + i)) for i in range(20)])
        n += 20
except HistoryStoreError as exc:
    print("FULL", exc)
store.close()
with HistoryStore(path) as reader:
    print("READ", len(reader.steps("u")), n)
"""


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    """A real ENOSPC on a 512 kB tmpfs (in a user and mount namespace: ``unshare -rm``,
    skipped where that is not allowed): creating on a full disk fails in one line and
    leaves no file; appending until the disk is full fails in one line naming the
    cause, and every acknowledged record reads back."""
    import shutil
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -rm (user and mount namespaces)")
    folder = tmp_path / "small"
    folder.mkdir()
    script = tmp_path / "full.py"
    script.write_text(_FULL_DISK)
    cmd = f"mount -t tmpfs -o size=512k tmpfs {folder} && exec {sys.executable} {script} {folder}"
    done = subprocess.run([unshare, "-rm", "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    path = folder / "h.sqlite"
    assert lines["CREATE"].startswith(f"history store {path}: database or disk is full")
    assert lines["LEFT"] == "['filler']"  # no half-made store, no temporary file
    assert lines["FULL"].startswith(f"history store {path}: database or disk is full")
    assert "rollback" not in lines["FULL"]
    stored, acked = map(int, lines["READ"].split())
    assert stored == acked > 0


def _race(n: int, body: Callable[[int], str]) -> list[str]:
    """Fork ``n`` children that block on one pipe, release them at the same moment (one
    write of ``n`` bytes), and return what each returned."""
    go_r, go_w = os.pipe()
    children = []
    for k in range(n):

        def run(k: int = k) -> str:
            os.close(go_w)
            os.read(go_r, 1)
            return body(k)

        children.append(_child(run))
    os.close(go_r)
    time.sleep(0.05)  # every child is waiting on the pipe
    os.write(go_w, b"x" * n)
    os.close(go_w)
    return [_result(pid, fd) for pid, fd in children]


#: rounds of each race (4 processes each).
RACES = 8


def test_four_processes_creating_one_store_all_succeed(tmp_path: Path) -> None:
    for round_ in range(RACES):
        path = tmp_path / f"h{round_}.sqlite"

        def body(k: int, path: Path = path) -> str:
            with HistoryStore(path, writable=True) as store:
                store.append_steps(f"u{k}", [_record(0, 0, 1)])
            return "ok"

        assert _race(4, body) == ["ok"] * 4, round_
        with HistoryStore(path) as store:
            assert store.users() == ["u0", "u1", "u2", "u3"]
        assert _leftovers(tmp_path, path.name) == []


def _v1_store(path: Path) -> None:
    """A version-1 store in rollback-journal mode, as the v1 code wrote it."""
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        "INSERT INTO schema_version VALUES (1);"
        "CREATE TABLE users (user TEXT PRIMARY KEY, created REAL NOT NULL);"
        "CREATE TABLE steps (id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(user),"
        " step INTEGER NOT NULL, phi_dtype TEXT NOT NULL, phi_shape TEXT NOT NULL,"
        " phi BLOB NOT NULL, dphi REAL, label INTEGER, query TEXT, checksum TEXT NOT NULL,"
        " UNIQUE (user, step));"
        "CREATE TABLE events (id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(user),"
        " step INTEGER NOT NULL, value REAL NOT NULL, detector TEXT NOT NULL,"
        " checksum TEXT NOT NULL);"
        "PRAGMA application_id = 1901282632;"
    )
    con.close()


def test_four_processes_migrating_one_version_1_store_all_succeed(tmp_path: Path) -> None:
    for round_ in range(RACES):
        path = tmp_path / f"v1-{round_}.sqlite"
        _v1_store(path)

        def body(k: int, path: Path = path) -> str:
            with HistoryStore(path, writable=True) as store:
                store.set_theta(f"u{k}", k / 10)
                return str(store.schema_version)

        assert _race(4, body) == ["2"] * 4, round_
        with HistoryStore(path) as store:
            assert [store.theta(f"u{k}") for k in range(4)] == [0.0, 0.1, 0.2, 0.3]
            assert store.integrity_check() == ["ok"]


def _hold_write_lock(path: Path) -> tuple[int, int]:
    """Fork a process that takes the write lock of ``path`` (``BEGIN IMMEDIATE``) and
    keeps it for 10 s; returns once the lock is held. No store is open in this process
    while it forks (an SQLite connection must not cross a fork)."""
    ready_r, ready_w = os.pipe()

    def hold() -> str:
        os.close(ready_r)
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        os.write(ready_w, b"x")
        time.sleep(10)
        return "released"

    pid, fd = _child(hold)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    return pid, fd


def _check_locked(path: Path, pid: int, action: Callable[[], object]) -> None:
    start = time.monotonic()
    with pytest.raises(HistoryStoreError, match="database is locked") as info:
        action()
    assert time.monotonic() - start >= 0.3  # it waited busy_timeout_ms first
    text = str(info.value)
    assert "\n" not in text and str(path) in text and "busy_timeout_ms=300" in text
    if os.path.exists("/proc/locks"):  # who holds it (Linux)
        assert f"process {pid} " in text


@pytest.mark.parametrize("when", ["append", "migrating open"])
def test_a_lock_held_past_busy_timeout_says_who_and_how_long(tmp_path: Path, when: str) -> None:
    path = tmp_path / "h.sqlite"
    if when == "append":
        HistoryStore(path, writable=True).close()
    else:
        _v1_store(path)
    pid, fd = _hold_write_lock(path)
    try:
        if when == "append":
            with HistoryStore(path, writable=True, busy_timeout_ms=300) as writer:
                _check_locked(path, pid, lambda: writer.append_steps(USER, [_record(0, 0, 1)]))
        else:
            _check_locked(path, pid, lambda: HistoryStore(path, writable=True, busy_timeout_ms=300))
    finally:
        os.kill(pid, signal.SIGKILL)
        _result(pid, fd)
    with HistoryStore(path, writable=True) as store:  # the lock went with its holder
        store.append_steps(USER, [_record(0, 0, 1)])
