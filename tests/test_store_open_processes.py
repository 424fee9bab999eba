"""Opening a history store (``qsem.edge.store_open``) where another user or another
process is involved: every refusal in full, and the busy wait of the switch to WAL.

Each test first opens the store in this process (so the functions it checks run here
too, which is how mutation testing selects it), then plays the other party in a forked
child: a user who may not write (uid 65534; root ignores file modes), or a process
that holds a database open. The child inherits this process's code, so it runs
exactly the code under test. docs/testing.md lists the mutants each test kills.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from test_edge_store_logs import STRAYS, _as_user, _read, _rollback_mode, _store

from qsem.edge import APPLICATION_ID, HistoryStore, HistoryStoreError, StepRecord
from qsem.edge.store_open import _to_wal, open_store, release

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

#: only root can play another user; a user who is not root already is one
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to play another user"
)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user can enter (pytest's tmp_path is private to its owner)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="qsem-other-"))
    folder.chmod(0o755)
    yield folder
    for p in [folder, *folder.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(folder)


def _store_read_here(path: Path) -> None:
    """A closed store of 3 steps that this process has also read (see the module's
    docstring); a writer closed last folds the reader's log back in: no file beside it."""
    _store(path, 3)
    with HistoryStore(path):
        pass
    HistoryStore(path, writable=True).close()
    assert sorted(os.listdir(path.parent)) == [path.name]


def _opened(path: Path, writable: bool = False) -> str:
    """What a child running as another user gets from opening ``path``."""
    return _as_user(lambda: HistoryStore(path, writable=writable).access)


def _refusal(path: Path, text: str) -> str:
    return f"HistoryStoreError: history store {path}: {text}"


@as_root
def test_places_another_user_cannot_write_are_refused_in_full(shared: Path) -> None:
    """A writer in a folder it cannot write (an existing store, and a new one), and of a
    read-only file in a folder it can write: one line each, naming the path."""
    folder = shared / "ro"
    folder.mkdir()
    path = folder / "h.sqlite"
    _store_read_here(path)
    folder.chmod(0o555)
    not_writable = (
        f"cannot open it for writing: its folder {folder} is not writable "
        "(a store needs its -wal and -shm files beside it)"
    )
    assert _opened(path, writable=True) == _refusal(path, not_writable)
    new = folder / "new.sqlite"
    assert _opened(new, writable=True) == _refusal(new, not_writable)
    assert _opened(folder / "none" / "h.sqlite", writable=True) == _refusal(
        folder / "none" / "h.sqlite", f"cannot create it: no such folder {folder / 'none'}"
    )
    folder.chmod(0o777)
    path.chmod(0o444)
    assert _opened(path, writable=True) == _refusal(
        path,
        "cannot open it for writing: the file is read-only (open it read-only, or make it"
        " writable)",
    )
    assert _opened(path) == "read-only"


@as_root
def test_an_unlocked_read_where_another_user_may_write_is_refused_in_full(
    shared: Path,
) -> None:
    """A WAL store in a folder its owner can write and this user cannot: SQLite cannot
    make the ``-shm``, and an ``immutable`` read is not safe while a writer may start.
    The same store in a folder nobody can write is read ``immutable``."""
    folder = shared / "theirs"
    folder.mkdir()
    path = folder / "h.sqlite"
    _store_read_here(path)
    assert _as_user(_read(path)) == _refusal(
        path,
        "cannot read it: SQLite needs to create h.sqlite-shm beside a WAL store, and its"
        " folder is not writable by this user; another user can write there, so reading"
        " it unlocked (immutable) is not safe: ask them to make the folder read-only, or"
        " copy the file",
    )
    path.chmod(0o444)
    folder.chmod(0o555)
    assert _as_user(_read(path)) == "immutable 3"
    assert _as_user(lambda: str(HistoryStore(path).schema_version)) == "2"
    assert sorted(os.listdir(folder)) == ["h.sqlite"]


#: the refusal of each stray log of ``test_edge_store_logs.STRAYS``, in full
STRAY_TEXT = {
    "-wal another qsem": "{log} holds pages of another database or another qsem store;"
    " refusing to replay it (the store is untouched: move it away)",
    "-journal hot journal of another database": "{log} is a hot journal of another"
    " database; refusing to roll it back into the store (the store is untouched: move it"
    " away)",
}


@pytest.mark.parametrize("kind", ["foreign wal", "foreign hot journal"])
def test_a_stray_log_is_refused_in_full(tmp_path: Path, kind: str) -> None:
    make, suffix, _ = STRAYS[kind]
    path = tmp_path / "h.sqlite"
    _store(path, 3)
    if suffix == "-journal":
        _rollback_mode(path)
    shutil.move(make(tmp_path), f"{path}{suffix}")
    key = next(k for k in STRAY_TEXT if k.startswith(suffix + " "))
    for writable in (False, True):
        with pytest.raises(HistoryStoreError) as info:
            HistoryStore(path, writable=writable)
        text = STRAY_TEXT[key].format(log=f"{path}{suffix}")
        assert str(info.value) == f"history store {path}: {text}"


def _hold_open(path: Path, write: str = "") -> tuple[int, int]:
    """A child process that opens ``path`` (WAL mode) with plain sqlite3, runs ``write``
    (committed frames stay in its log: no checkpoint) and keeps it open until its pipe
    is closed; returns its pid and the pipe's write end."""
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child holds the file
        os.close(stop_w)
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if write:
            con.execute("PRAGMA wal_autocheckpoint = 0")
            con.execute(write)
        os.write(ready_w, b"1")
        os.read(stop_r, 1)  # until the parent closes its end
        con.close()
        os._exit(0)
    os.close(stop_r)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"1"
    os.close(ready_r)
    return pid, stop_w


def test_a_database_another_process_holds_open_is_validated_on_the_real_connection(
    tmp_path: Path,
) -> None:
    """Another process has a WAL database open, so its log is live and not read as
    bytes: the file is validated on the real connection, which refuses a foreign
    database, for a reader and a writer, in full; a store held open is opened."""
    from qsem.edge.store_files import in_use

    path = tmp_path / "other.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t (x)")
    con.close()
    pid, stop = _hold_open(path)
    try:
        assert in_use(str(path))
        for writable in (False, True):
            with pytest.raises(HistoryStoreError) as info:
                HistoryStore(path, writable=writable)
            assert str(info.value) == (
                f"history store {path}: a foreign SQLite database (application_id 0x0, a"
                " qsem history store has 0x71534548)"
            )
    finally:
        os.close(stop)
        os.waitpid(pid, 0)
    store = tmp_path / "h.sqlite"
    _store(store, 3)
    pid, stop = _hold_open(store)
    try:
        with HistoryStore(store) as reader, HistoryStore(store, writable=True) as writer:
            assert (reader.access, writer.access) == ("read-only", "read-write")
            assert len(reader.steps("u")) == len(writer.steps("u")) == 3
    finally:
        os.close(stop)
        os.waitpid(pid, 0)


def _locked_store(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """A rollback-journal store, a connection to switch, and another one holding a read
    transaction (its SHARED lock keeps the switch to WAL from starting). The connection
    to switch has no busy handler of SQLite's own (``timeout=0``; SQLite 3.40 calls it
    for the switch, and Python's default would wait 5 s), so the waiting is
    ``_to_wal``'s."""
    _store(path, 3)
    _rollback_mode(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM steps").fetchone()
    return sqlite3.connect(path, isolation_level=None, timeout=0), holder


def test_the_switch_to_wal_waits_for_a_lock_up_to_the_busy_timeout(tmp_path: Path) -> None:
    """SQLite fails the switch at once while another connection reads; ``_to_wal`` tries
    again until the busy timeout (0.3 s here) has passed, then raises SQLite's error."""
    con, holder = _locked_store(tmp_path / "h.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        con.execute("PRAGMA journal_mode = WAL")  # SQLite alone: fails at once
    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        _to_wal(con, "h.sqlite", 300)
    assert time.monotonic() - start >= 0.3
    holder.execute("ROLLBACK")
    _to_wal(con, "h.sqlite", 0)  # no lock in the way: at once
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    holder.close()
    con.close()


def test_the_switch_to_wal_goes_ahead_once_the_lock_is_released(tmp_path: Path) -> None:
    """The reader ends its transaction 0.2 s into the wait (a timer thread): the switch
    then succeeds, well inside its 60 s busy timeout."""
    con, holder = _locked_store(tmp_path / "h.sqlite")
    holder.close()  # a connection of the timer's own thread holds the lock instead
    ready = threading.Event()
    done = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(tmp_path / "h.sqlite", isolation_level=None)
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM steps").fetchone()
        ready.set()
        time.sleep(0.2)
        other.execute("ROLLBACK")
        other.close()
        done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    start = time.monotonic()
    _to_wal(con, "h.sqlite", 60_000)
    waited = time.monotonic() - start
    thread.join()
    assert done.is_set() and waited >= 0.1
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def _main_file(path: Path, kind: str) -> None:
    """The main file beside a stray log: one page of a database with no
    ``application_id`` (0) or another's (7), or two pages (a table) with none."""
    con = sqlite3.connect(path, isolation_level=None)
    if kind == "1 page, application_id 7":
        con.execute("PRAGMA application_id = 7")
    con.execute("PRAGMA user_version = 0")
    if kind == "2 pages":
        con.execute("CREATE TABLE t (x)")
    con.execute("VACUUM")  # writes page 1 (and the table's page)
    con.close()


@pytest.mark.parametrize(
    ("kind", "pages", "refused"),
    [
        ("1 page", 1, None),
        ("1 page, application_id 7", 1, "0x7"),
        ("2 pages", 2, "0x0"),
    ],
)
def test_an_empty_database_may_take_a_qsem_log_and_nothing_else(
    tmp_path: Path, kind: str, pages: int, refused: str | None
) -> None:
    """A file of at most one page and no ``application_id`` holds nothing to lose: the
    log of a qsem store (page 1 and its id included) beside it is recovered, and the
    store is read; a file with pages of its own, or another application's, is refused
    as foreign. A foreign log beside an empty file is refused as foreign pages. (A file
    of 0 bytes is refused before its log is read.)"""
    from test_edge_store_logs import _foreign_wal

    from qsem.edge.store_files import read_header

    path = tmp_path / "h.sqlite"
    _main_file(path, kind)
    assert read_header(str(path), False).pages == pages
    shutil.move(_whole_store_wal(tmp_path), f"{path}-wal")
    if refused is None:
        with HistoryStore(path) as store:
            assert store.users() == ["b"] and len(store.steps("b")) == 300
    else:
        with pytest.raises(HistoryStoreError) as info:
            HistoryStore(path)
        assert str(info.value) == (
            f"history store {path}: a foreign SQLite database (application_id {refused}, a"
            " qsem history store has 0x71534548)"
        )
    if kind == "1 page":
        for p in tmp_path.glob("h.sqlite*"):
            p.unlink()
        _main_file(path, kind)
        shutil.move(_foreign_wal(tmp_path), f"{path}-wal")
        with pytest.raises(HistoryStoreError) as info:
            HistoryStore(path)
        assert str(info.value) == f"history store {path}: " + STRAY_TEXT[
            "-wal another qsem"
        ].format(log=f"{path}-wal")


def _whole_store_wal(folder: Path) -> Path:
    """The log of another qsem store that holds every page of it (a ``VACUUM`` through
    the log, copied before any checkpoint): user ``b`` with 300 steps."""
    other = folder / "whole.sqlite"
    with HistoryStore(other, writable=True) as store:
        store.append_steps("b", [StepRecord(i, np.zeros(64)) for i in range(300)])
    con = sqlite3.connect(other, isolation_level=None)
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("VACUUM")
    shutil.copyfile(f"{other}-wal", folder / "whole-wal")
    con.close()
    return folder / "whole-wal"


def test_a_hot_journal_from_before_the_store_had_an_id_is_its_own(tmp_path: Path) -> None:
    """A v1-era store (id 0, rollback journal) killed while it was being given an id:
    page 1 in the journal has id 0, the main file already the new one (written into
    the header as SQLite writes a page that spills). The journal is the store's: a
    reader gets the rolled-back copy, id 0 and all 40 steps."""
    from qsem.edge.store_files import hot_journal, read_header

    path = tmp_path / "h.sqlite"
    _store(path, 40)
    _rollback_mode(path)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA user_version = 0")
    con.close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - killed
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA cache_size = 1")  # every changed page spills, page 1 too
        con.execute("BEGIN")
        con.execute("PRAGMA user_version = 777")
        con.execute("UPDATE steps SET query = 'x'")
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    journal = hot_journal(f"{path}-journal", str(path))
    assert journal is not None and journal.page1 == (APPLICATION_ID, 0)
    with path.open("r+b") as fh:  # page 1 as it spills: the new id in the file header
        fh.seek(60)
        fh.write((777).to_bytes(4, "big"))
    assert read_header(str(path), False).store_id == 777
    opened = open_store(str(path), False, "FULL", 1000, True)
    try:
        assert opened.access == "snapshot"
        assert opened.conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 40
        assert opened.conn.execute("PRAGMA user_version").fetchone()[0] == 0
    finally:
        release(str(path), False, opened)


@pytest.mark.parametrize("writable", [False, True])
def test_a_damaged_store_another_process_holds_open_is_checked_on_the_real_connection(
    tmp_path: Path, writable: bool
) -> None:
    """The probe does not validate a file another process has open, so the real
    connection runs ``integrity_check`` itself (unless ``check=False`` is asked for):
    a store whose rows break its NOT NULL constraints is refused, in full. Its live log
    holds committed frames, which are not replayed into a private copy."""
    from test_store_mutation import _null_checksums

    path = tmp_path / "h.sqlite"
    _null_checksums(path, 4)
    pid, stop = _hold_open(path, "UPDATE users SET created = created + 1")  # a live log
    try:
        with pytest.raises(HistoryStoreError) as info:
            HistoryStore(path, writable=writable)
        assert str(info.value).startswith(f"history store {path}: corrupt (NULL value in ")
        with HistoryStore(path, writable=writable, check=False) as store:
            assert store.users() == ["u"]
    finally:
        os.close(stop)
        os.waitpid(pid, 0)


def _private_tmp(work: Callable[[], None]) -> tuple[str, list[str]]:
    """``work()`` in a forked child whose temporary folder is a new, private one (the
    documented ``tempfile.tempdir``): its refusal (``""`` if none) and what it left."""
    import json
    import tempfile

    from test_store_schema_mutation import _in_child

    def child() -> str:
        tempfile.tempdir = tempfile.mkdtemp(prefix="qsem-private-")
        refusal = ""
        try:
            work()
        except HistoryStoreError as exc:
            refusal = str(exc)
        return json.dumps([refusal, sorted(os.listdir(tempfile.tempdir))])

    refusal, left = json.loads(_in_child(child))
    return refusal, left


def test_a_private_copy_is_removed_after_use_and_after_any_failure(tmp_path: Path) -> None:
    """The temporary folder of a replayed copy goes once the copy was validated (a
    writer's own committed log), once validation failed (another store's log), and
    when the copy itself could not be made (a file size limit while copying)."""
    import resource

    from test_edge_store_logs import _sibling_wal

    path = tmp_path / "h.sqlite"
    _store(path, 40)
    shutil.copyfile(_sibling_wal(tmp_path, False), f"{path}-wal")
    with pytest.raises(HistoryStoreError):  # here too (see the module's docstring)
        HistoryStore(path)
    refusal, left = _private_tmp(lambda: HistoryStore(path).close())
    assert refusal.startswith(f"history store {path}: recovering it from {path}-wal")
    assert left == []

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.RLIM_INFINITY))
        HistoryStore(path).close()

    refusal, left = _private_tmp(limited)
    assert refusal.startswith(f"history store {path}: ") and "File too large" in refusal
    assert left == []
    own = tmp_path / "own.sqlite"
    _store(own, 5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - killed with committed frames in its log
        store = HistoryStore(own, writable=True)
        store.append_steps("u", [StepRecord(i, np.zeros(64)) for i in range(5, 300)])
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert _private_tmp(lambda: HistoryStore(own, writable=True).close()) == ("", [])


def test_a_later_store_keeps_the_locks_that_tell_other_processes_the_file_is_live(
    tmp_path: Path,
) -> None:
    """Recognising a file opens and closes it (and its ``-shm``) outside SQLite, which
    would drop every POSIX lock this process holds on it: a second store on a file this
    process has open must not do it, or another process no longer sees it live."""
    from test_store_schema_mutation import _in_child

    from qsem.edge.store_files import in_use

    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True), HistoryStore(path) as reader:
        assert reader.access == "read-only"
        assert _in_child(lambda: str(in_use(str(path)))) == "True"
    assert _in_child(lambda: str(in_use(str(path)))) == "False"


def test_a_hot_journal_whose_rolled_back_copy_is_damaged_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    """The store's own hot journal (a killed rollback-mode writer) over a file whose rows
    break its NOT NULL constraints: the rolled-back private copy fails
    ``integrity_check``, and the refusal names the journal it was recovered from."""
    from test_edge_store_logs import _kill_in_transaction
    from test_store_mutation import _null_checksums

    path = tmp_path / "h.sqlite"
    _null_checksums(path, 4)
    _rollback_mode(path)
    _kill_in_transaction(path, "UPDATE steps SET phi = randomblob(5000)")  # pages spill
    with pytest.raises(HistoryStoreError) as info:
        HistoryStore(path)
    assert str(info.value).startswith(
        f"history store {path}: recovering it from {path}-journal (on a private copy)"
        " gives: corrupt (NULL value in "
    )
