"""Opening a history store (``qsem.edge.store_open``): the helpers mutation testing found
loose, each against a database SQLite really wrote.

These helpers sit on paths a test running as root on a writable disk does not reach
through :class:`~qsem.edge.HistoryStore` (a store read in a folder nobody can write,
a log whose replayed copy is not a valid store, a database that cannot use WAL), so
they are called directly here. docs/testing.md lists the mutants each test kills.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_store_mutation import _null_checksums

from qsem.edge import HistoryStore, HistoryStoreError
from qsem.edge.store_open import _nobody_can_write, _to_wal, _validate_replayed


def test_nobody_can_write_reads_the_write_bits_of_the_file_and_its_folder(
    tmp_path: Path,
) -> None:
    """True only when neither the file nor its folder has any write bit (owner, group,
    others); a file that cannot be read is not claimed safe."""
    folder = tmp_path / "d"
    folder.mkdir()
    path = folder / "h.sqlite"
    path.write_bytes(b"x")
    try:
        for folder_mode, file_mode, safe in [
            (0o555, 0o444, True),
            (0o755, 0o444, False),
            (0o575, 0o444, False),
            (0o557, 0o444, False),
            (0o555, 0o644, False),
            (0o555, 0o464, False),
            (0o555, 0o446, False),
        ]:
            folder.chmod(folder_mode)
            path.chmod(file_mode)
            assert _nobody_can_write(str(path)) is safe, (oct(folder_mode), oct(file_mode))
        assert _nobody_can_write(str(folder / "missing.sqlite")) is False
    finally:
        folder.chmod(0o755)


def test_a_database_that_cannot_use_wal_is_refused_naming_the_path() -> None:
    con = sqlite3.connect(":memory:", isolation_level=None)
    with pytest.raises(HistoryStoreError) as info:
        _to_wal(con, "p.sqlite", 0)
    assert str(info.value) == "history store p.sqlite: cannot switch to WAL (memory)"
    con.close()


def _replayed_message(con: sqlite3.Connection, path: str, log: str) -> str:
    with pytest.raises(HistoryStoreError) as info:
        _validate_replayed(con, path, log)
    return str(info.value)


def _after(path: str, log: str, reason: str) -> str:
    return (
        f"history store {path}: recovering it from {path}{log} (on a private copy) gives: "
        f"{reason}; that log is not this store's, or the store is damaged: refusing to use "
        "it (the store is untouched; move the log away if it is not the store's)"
    )


def test_a_replayed_copy_is_validated_with_the_integrity_check(tmp_path: Path) -> None:
    """A copy recovered from a log must be a valid store *and* pass ``integrity_check``;
    the refusal names the log and says why (SQLite's errors included)."""
    good = tmp_path / "good.sqlite"
    HistoryStore(good, writable=True).close()
    con = sqlite3.connect(good, isolation_level=None)
    assert _validate_replayed(con, str(good), "-wal") == 2
    con.close()
    corrupt = tmp_path / "corrupt.sqlite"
    _null_checksums(corrupt, 4)  # a valid schema, but integrity_check reports rows
    con = sqlite3.connect(corrupt, isolation_level=None)
    row = "NULL value in steps.checksum"
    assert _replayed_message(con, str(corrupt), "-journal") == _after(
        str(corrupt), "-journal", f"corrupt ({row}; {row}; {row})"
    )
    con.close()
    empty = tmp_path / "empty.sqlite"
    con = sqlite3.connect(empty, isolation_level=None)
    assert _replayed_message(con, str(empty), "-wal") == _after(
        str(empty),
        "-wal",
        "an empty SQLite database that is not a qsem history store; refusing to take it over",
    )
    con.close()  # SQLite's own error (a closed connection), on one line
    assert _replayed_message(con, str(empty), "-wal") == _after(
        str(empty), "-wal", "Cannot operate on a closed database."
    )


def test_a_snapshot_is_a_copy_named_store_sqlite_in_a_qsem_store_folder(tmp_path: Path) -> None:
    """A reader of a store with a hot journal gets a private, rolled-back copy: the file
    ``store.sqlite`` in a temporary ``qsem-store-*`` folder, removed when it is closed."""
    from test_edge_store_logs import _kill_in_transaction, _rollback_mode, _store

    from qsem.edge.store_open import _OPEN, open_store, release

    path = tmp_path / "h.sqlite"
    _store(path, 12)
    _rollback_mode(path)
    _kill_in_transaction(path, "DELETE FROM steps WHERE step >= 4")
    opened = open_store(str(path), False, "FULL", 1000, True)
    assert opened.access == "snapshot" and opened.snapshot is not None and opened.version == 2
    folder = Path(opened.snapshot)
    assert folder.name.startswith("qsem-store-") and folder.parent != tmp_path
    assert sorted(p.name for p in folder.iterdir()) == ["store.sqlite"]  # rolled back
    assert opened.conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 12
    release(str(path), False, opened)
    assert not folder.exists()
    assert str(path.resolve()) not in _OPEN  # a snapshot holds no lock: never counted


def test_each_kind_of_open_says_how_it_reads_and_is_counted(tmp_path: Path) -> None:
    """``access`` of a writer and of readers; this process counts its locking connections
    per real path (``_OPEN``: a later store on the file must not probe it, which would
    drop SQLite's POSIX locks), and gives each back when that store is closed."""
    from qsem.edge.store_open import _OPEN, _WRITERS

    path = tmp_path / "h.sqlite"
    key = str(path.resolve())
    writer = HistoryStore(path, writable=True)
    assert writer.access == "read-write" and _OPEN[key] == 1 and key in _WRITERS
    readers = [HistoryStore(path), HistoryStore(path)]
    assert [r.access for r in readers] == ["read-only", "read-only"] and _OPEN[key] == 3
    writer.close()
    assert _OPEN[key] == 2 and key not in _WRITERS
    readers[0].close()
    assert _OPEN[key] == 1
    readers[1].close()
    assert key not in _OPEN


def test_a_store_refuses_use_from_another_thread(tmp_path: Path) -> None:
    """A store belongs to the thread that opened it (SQLite's connection is not shared)."""
    import threading

    path = tmp_path / "h.sqlite"
    errors: list[BaseException] = []
    with HistoryStore(path, writable=True) as store:

        def use() -> None:
            try:
                store.users()
            except BaseException as exc:  # any failure is the result
                errors.append(exc)

        thread = threading.Thread(target=use)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "thread" in str(errors[0])


def test_a_foreign_database_with_a_write_ahead_log_is_refused_before_replay(
    tmp_path: Path,
) -> None:
    """Another application's database (``application_id`` 7, two pages) and its log with
    committed frames: refused from the header, naming the ids, before anything replays."""
    import shutil

    other = tmp_path / "other.db"
    con = sqlite3.connect(other, isolation_level=None)
    con.execute("PRAGMA application_id = 7")
    con.execute("CREATE TABLE t (x)")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("INSERT INTO t VALUES ('not a store')")
    path = tmp_path / "h.sqlite"
    shutil.copyfile(other, path)
    shutil.copyfile(f"{other}-wal", f"{path}-wal")
    con.close()
    before = path.read_bytes(), Path(f"{path}-wal").read_bytes()
    with pytest.raises(HistoryStoreError) as info:
        HistoryStore(path)
    assert str(info.value) == (
        f"history store {path}: a foreign SQLite database (application_id 0x7, a qsem"
        " history store has 0x71534548)"
    )
    assert (path.read_bytes(), Path(f"{path}-wal").read_bytes()) == before


def test_a_log_with_another_page_size_is_refused_naming_both_sizes(tmp_path: Path) -> None:
    """A write-ahead log with committed frames of 1024-byte pages (from a database that
    even carries qsem's ``application_id``) beside a store of 4096-byte pages."""
    import shutil

    from qsem.edge import APPLICATION_ID

    path = tmp_path / "h.sqlite"
    HistoryStore(path, writable=True).close()
    other = tmp_path / "other.db"
    con = sqlite3.connect(other, isolation_level=None)
    con.execute("PRAGMA page_size = 1024")
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("CREATE TABLE t (x)")
    shutil.copyfile(f"{other}-wal", f"{path}-wal")
    con.close()
    with pytest.raises(HistoryStoreError) as info:
        HistoryStore(path)
    assert str(info.value) == (
        f"history store {path}: {path}-wal has pages of 1024 bytes, the store 4096: it is"
        " another database's write-ahead log; refusing to replay it (the store is"
        " untouched: move it away)"
    )


def test_a_path_that_is_no_store_file_is_refused_before_sqlite(tmp_path: Path) -> None:
    """A reader of a missing path, and a path that is a folder, get one line naming it."""
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(HistoryStoreError) as info:
        HistoryStore(missing)
    assert str(info.value) == f"history store {missing}: no such file"
    assert not missing.exists()  # a reader creates nothing
    folder = tmp_path / "folder.sqlite"
    folder.mkdir()
    for writable in (False, True):
        with pytest.raises(HistoryStoreError) as info:
            HistoryStore(folder, writable=writable)
        assert str(info.value) == f"history store {folder}: not a file"


def test_a_read_only_mount_is_a_place_nobody_can_write(tmp_path: Path) -> None:
    """Modes that let everyone write, on a bind mount remounted read-only (``unshare
    -rm``; skipped where that is not allowed): not even root can write there. The check
    runs in a subprocess that imports the ``qsem`` this test imported (its folder first
    on ``PYTHONPATH``), so it runs the code under test."""
    import os
    import shutil
    import subprocess
    import sys

    import qsem

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -rm (user and mount namespaces)")
    folder = tmp_path / "mnt"
    folder.mkdir()
    path = folder / "h.sqlite"
    path.write_bytes(b"x")
    path.chmod(0o666)
    assert _nobody_can_write(str(path)) is False  # the same place, writable
    script = tmp_path / "check.py"
    script.write_text(
        "import sys\nfrom qsem.edge.store_open import _nobody_can_write\n"
        "print(_nobody_can_write(sys.argv[1]))\n"
    )
    cmd = (
        f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && "
        f"exec {sys.executable} {script} {path}"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(qsem.__file__).resolve().parents[1])}
    done = subprocess.run(
        [unshare, "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
