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

    from qsem.edge.store_open import open_store, release

    path = tmp_path / "h.sqlite"
    _store(path, 12)
    _rollback_mode(path)
    _kill_in_transaction(path, "DELETE FROM steps WHERE step >= 4")
    opened = open_store(str(path), False, "FULL", 1000, True)
    assert opened.access == "snapshot" and opened.snapshot is not None
    folder = Path(opened.snapshot)
    assert folder.name.startswith("qsem-store-") and folder.parent != tmp_path
    assert sorted(p.name for p in folder.iterdir()) == ["store.sqlite"]  # rolled back
    assert opened.conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 12
    release(str(path), False, opened)
    assert not folder.exists()
