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
