"""The history store and the files beside it: stray logs, hot journals, read-only places.

SQLite ties ``PATH-wal`` and ``PATH-journal`` to a database by name alone. These tests
put another database's log (or another qsem store's) beside a valid store and check
that opening it is refused in one line naming the path, with every byte of the store
(and of the log) unchanged; that the store's own logs are still recovered; and that a
store in a place this user cannot write is read (``immutable``, or a private copy)
or refused saying exactly why. Permission cases run in a child process as an
unprivileged user (uid 65534) when the suite runs as root, since root ignores modes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import signal
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from qsem.cli import main  # imported here: an unprivileged child cannot read every module
from qsem.edge import HistoryStore, HistoryStoreError, StepRecord
from qsem.edge.store_files import hot_journal, wal_frames

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store(path: Path, n: int = 40) -> None:
    """A valid store, closed (its WAL folded into the file): user u, steps 0..n-1."""
    with HistoryStore(path, writable=True) as store:
        for i in range(n):
            store.append_steps("u", [StepRecord(i, np.full((64,), i, np.float64))])
    assert not Path(f"{path}-wal").exists()


def _kill_in_transaction(path: Path, sql: str) -> None:
    """A child opens ``path`` with plain sqlite3 (rollback journal), runs ``sql`` in an
    open transaction with a one-page cache (so pages spill and the journal is synced),
    and is SIGKILLed: a hot journal is left beside ``path``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - killed
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA cache_size = 1")
        con.execute("BEGIN")
        con.execute(sql)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert Path(f"{path}-journal").stat().st_size > 0


def _foreign_wal(folder: Path) -> Path:
    """The -wal of another (non-qsem) database, with committed frames."""
    other = folder / "other.db"
    con = sqlite3.connect(other, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES ('not a store')")
    shutil.copyfile(f"{other}-wal", folder / "stray-wal")
    con.close()
    return folder / "stray-wal"


def _sibling_wal(folder: Path, grow: bool) -> Path:
    """The -wal of another qsem store, copied while its writer is open (committed frames);
    ``grow``: the writes grow that store, so the log holds its page 1 (with its id)."""
    other = folder / "sibling.sqlite"
    store = HistoryStore(other, writable=True)
    n = 300 if grow else 1
    store.append_steps("b", [StepRecord(i, np.zeros(64)) for i in range(n)])
    shutil.copyfile(f"{other}-wal", folder / "stray-wal")
    store.close()
    return folder / "stray-wal"


def _foreign_journal(folder: Path) -> Path:
    other = folder / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.executemany("INSERT INTO t VALUES (?)", [(bytes(500),) for _ in range(200)])
    con.commit()
    con.close()
    _kill_in_transaction(other, "UPDATE t SET x = randomblob(600)")
    shutil.copyfile(f"{other}-journal", folder / "stray-journal")
    return folder / "stray-journal"


STRAYS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "foreign wal": (_foreign_wal, "-wal", "another database"),
    "sibling store wal with page 1": (lambda d: _sibling_wal(d, True), "-wal", "another qsem"),
    "sibling store wal": (lambda d: _sibling_wal(d, False), "-wal", "not this store's"),
    "foreign hot journal": (_foreign_journal, "-journal", "hot journal of another database"),
}


@pytest.mark.parametrize("writable", [True, False])
@pytest.mark.parametrize("kind", list(STRAYS))
def test_a_stray_log_is_refused_and_nothing_is_touched(
    tmp_path: Path, kind: str, writable: bool
) -> None:
    make, suffix, message = STRAYS[kind]
    path = tmp_path / "h.sqlite"
    _store(path)
    log = Path(f"{path}{suffix}")
    shutil.move(make(tmp_path), log)
    if suffix == "-wal":
        assert wal_frames(str(log)).committed > 0  # SQLite would replay it
    else:
        assert hot_journal(str(log), str(path)) is not None  # SQLite would roll it back
    before = {p.name: _sha(p) for p in (path, log)}
    with pytest.raises(HistoryStoreError) as info:
        HistoryStore(path, writable=writable)
    assert {p.name: _sha(p) for p in (path, log)} == before  # not one byte changed
    text = str(info.value)
    assert text.startswith(f"history store {path}: ") and "\n" not in text
    assert f"{path}{suffix}" in text and message in text
    assert not Path(f"{path}-shm").exists()  # nothing was connected to the file
    log.unlink()  # the user moves the stray log away: the store is as it was
    with HistoryStore(path) as store:
        assert [r.step for r in store.steps("u")] == list(range(40))


def test_the_stores_own_logs_are_still_recovered(tmp_path: Path) -> None:
    """Positive controls: a store's own committed WAL (writer killed) and its own hot
    journal (a rollback-mode v1-era file, writer killed) are recognised and recovered."""
    path = tmp_path / "h.sqlite"
    _store(path, 5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - killed
        store = HistoryStore(path, writable=True)
        store.append_steps("u", [StepRecord(i, np.zeros(64)) for i in range(5, 300)])
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert wal_frames(f"{path}-wal").committed > 0  # the log to replay is there
    with HistoryStore(path) as reader:
        assert len(reader.steps("u")) == 300 and reader.access == "read-only"
    with HistoryStore(path, writable=True) as store:
        assert len(store.steps("u")) == 300
    assert not Path(f"{path}-wal").exists()


def _rollback_mode(path: Path) -> None:
    """Turn a closed store into a rollback-journal file (as v1-era or copied files are)."""
    con = sqlite3.connect(path, isolation_level=None)
    assert con.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    con.close()


def test_a_hot_journal_of_the_store_is_read_by_readers_and_rolled_back_by_a_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.sqlite"
    _store(path)
    _rollback_mode(path)
    _kill_in_transaction(path, "DELETE FROM steps WHERE step >= 10")
    assert hot_journal(f"{path}-journal", str(path)) is not None
    before = _sha(path)
    with HistoryStore(path) as reader, HistoryStore(path) as second:  # a private, rolled-back copy
        assert reader.access == second.access == "snapshot"
        assert [r.step for r in reader.steps("u")] == list(range(40))
        assert [r.step for r in second.steps("u")] == list(range(40))
    assert _sha(path) == before and Path(f"{path}-journal").exists()  # a reader wrote nothing
    with HistoryStore(path, writable=True) as store:  # the writer rolls it back in place
        assert [r.step for r in store.steps("u")] == list(range(40))
        assert store.integrity_check() == ["ok"]
    assert not Path(f"{path}-journal").exists()


# -- read-only places --------------------------------------------------------------------


def _as_user(body: Callable[[], str]) -> str:
    """Run ``body`` in a child process, as uid/gid 65534 if this process is root (root
    ignores file modes); returns what it returns, or ``ExceptionType: message``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            out = body()
        except BaseException as exc:
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="qsem-ro-"))
    folder.chmod(0o755)
    yield folder
    for p in [folder, *folder.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(folder)


def _read(path: Path) -> Callable[[], str]:
    """Two stores reading ``path`` at once in one process: how they read, and what."""

    def body() -> str:
        with HistoryStore(path) as store, HistoryStore(path) as second:
            assert second.access == store.access
            return f"{store.access} {len(store.steps('u'))}"

    return body


def test_a_store_in_a_folder_nobody_can_write_is_read_immutable(shared_dir: Path) -> None:
    folder = shared_dir / "ro"
    folder.mkdir()
    path = folder / "h.sqlite"
    _store(path)
    path.chmod(0o444)
    folder.chmod(0o555)
    assert _as_user(_read(path)) == "immutable 40"
    assert sorted(os.listdir(folder)) == ["h.sqlite"]
    out = _as_user(lambda: str(HistoryStore(path, writable=True)))
    assert out.startswith("HistoryStoreError: ") and "not writable" in out and str(path) in out


def test_a_read_only_file_in_a_writable_folder_is_read(shared_dir: Path) -> None:
    folder = shared_dir / "rw"
    folder.mkdir()
    folder.chmod(0o777)
    path = folder / "h.sqlite"
    _store(path)
    path.chmod(0o444)
    assert _as_user(_read(path)) == "read-only 40"
    out = _as_user(lambda: str(HistoryStore(path, writable=True)))
    assert out.startswith("HistoryStoreError: ") and "read-only" in out and "\n" not in out


def test_a_folder_another_user_may_write_is_refused_saying_why(shared_dir: Path) -> None:
    """Not writable by this user, writable by its owner: reading it unlocked is not safe
    (a writer may start), and SQLite cannot create the -shm it needs: say so."""
    folder = shared_dir / "theirs"
    folder.mkdir()
    path = folder / "h.sqlite"
    _store(path)
    folder.chmod(0o755)
    if os.geteuid() != 0 and os.access(folder, os.W_OK):
        pytest.skip("needs root to play the other user")
    out = _as_user(_read(path))
    assert out.startswith("HistoryStoreError: ") and "\n" not in out
    assert "not writable by this user" in out and "immutable" in out
    assert sorted(os.listdir(folder)) == ["h.sqlite"]


def test_a_read_only_folder_after_a_kill_reads_a_recovered_copy(shared_dir: Path) -> None:
    folder = shared_dir / "crashed"
    folder.mkdir()
    path = folder / "h.sqlite"
    _store(path, 5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - killed
        store = HistoryStore(path, writable=True)
        store.append_steps("u", [StepRecord(i, np.zeros(64)) for i in range(5, 40)])
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    Path(f"{path}-shm").unlink()
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    assert _as_user(_read(path)) == "snapshot 40"
    assert sorted(os.listdir(folder)) == ["h.sqlite", "h.sqlite-wal"]


@pytest.mark.parametrize("kind", ["foreign", "no tables"])
def test_a_refused_file_gets_no_wal_or_shm_beside_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.sqlite"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")  # a WAL-mode file: SQLite would create both
    if kind == "foreign":
        con.execute("CREATE TABLE t (x)")
    else:
        con.execute("PRAGMA application_id = 1901282632")
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        con.execute("INSERT INTO schema_version VALUES (2)")
    con.close()
    before = _sha(path)
    for writable in (False, True):
        with pytest.raises(HistoryStoreError, match=r"foreign|no table 'users'"):
            HistoryStore(path, writable=writable)
        assert sorted(os.listdir(tmp_path)) == ["bad.sqlite"] and _sha(path) == before


def _cli(*argv: str) -> str:
    """``qsem ARGV`` in this process: the exit code and what it printed on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return f"{code} {err.getvalue()}"


def test_permission_denied_is_one_line(shared_dir: Path) -> None:
    path = shared_dir / "h.sqlite"
    _store(path)
    path.chmod(0)
    out = _as_user(_read(path))
    assert out.startswith("HistoryStoreError: ") and str(path) in out
    assert "Permission denied" in out and "\n" not in out
    assert stat.S_IMODE(path.stat().st_mode) == 0
    out = _as_user(lambda: _cli("history", str(path), "users"))
    assert out.startswith(f"1 qsem: error: history store {path}: ") and out.count("\n") == 1
    assert "Permission denied" in out and "--out" not in out  # no option that is not there


_RO_MOUNT = """
import sys
from qsem.edge import HistoryStore, HistoryStoreError
path = sys.argv[1]
with HistoryStore(path) as store:
    print(store.access, len(store.steps("u")))
try:
    HistoryStore(path, writable=True)
except HistoryStoreError as exc:
    print(exc)
"""


def test_a_store_on_a_read_only_mount_is_read_immutable(tmp_path: Path) -> None:
    """A bind mount remounted read-only in a user and mount namespace (``unshare -rm``;
    skipped where that is not allowed): even root cannot write there, so the store is
    read ``immutable`` and a writer is refused in one line."""
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -rm (user and mount namespaces)")
    folder = tmp_path / "mnt"
    folder.mkdir()
    path = folder / "h.sqlite"
    _store(path)
    script = tmp_path / "ro.py"
    script.write_text(_RO_MOUNT)
    cmd = (f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && "
           f"exec {sys.executable} {script} {path}")  # fmt: skip
    done = subprocess.run([unshare, "-rm", "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    read, refused = done.stdout.splitlines()
    assert read == "immutable 40"
    assert refused.startswith(f"history store {path}: cannot open it for writing")
    assert sorted(os.listdir(folder)) == ["h.sqlite"]
