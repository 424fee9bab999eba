"""History-store behaviour that mutation testing found unpinned (docs/testing.md).

Each test states the documented behaviour and checks it against values written
here or read back with the plain ``sqlite3`` module: the one-line messages users
see (path, argument and record named), ``summary``, users and parameters, files
with 32 KiB and 64 KiB pages (whose header encodes the size differently), a file
whose ``quick_check`` fails, byte-stable event records, the user-name limits.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemError, QsemTypeError, QsemValueError
from qsem.edge import APPLICATION_ID, EventRecord, HistoryStore, HistoryStoreError, StepRecord


def _message(call, cls: type[QsemError] = HistoryStoreError) -> str:
    """The message of the error ``call()`` raises, which must be exactly a ``cls``."""
    with pytest.raises(QsemError) as info:
        call()
    assert type(info.value) is cls
    return str(info.value)


def test_summary_users_params_and_theta(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.add_user("zoe")
        store.add_user("zoe")  # a no-op the second time
        store.append_steps(
            "ada",
            [StepRecord(0, np.zeros(2), label=1), StepRecord(1, np.ones(2)),
             StepRecord(2, np.ones(2), label=0)],
        )  # fmt: skip
        store.append_events("ada", [EventRecord(1, 0.5, "l1"), EventRecord(2, 0.7, "l1")])
        store.set_param("bob", "w2", np.eye(2))  # a new user through set_param
        store.set_param("bob", "w1", np.arange(3))
        store.set_theta("ada", 0.25)
    with HistoryStore(path) as store:
        assert store.users() == ["ada", "bob", "zoe"]
        assert store.summary("ada") == {
            "user": "ada", "steps": 3, "labels": 2, "events": 2, "theta": 0.25, "params": [],
        }  # fmt: skip
        assert store.summary("bob") == {
            "user": "bob", "steps": 0, "labels": 0, "events": 0, "theta": None,
            "params": ["w1", "w2"],
        }  # fmt: skip
        assert store.theta("zoe") is None and store.params("zoe") == {}
        params = store.params("bob")
        assert list(params) == ["w1", "w2"]
        np.testing.assert_array_equal(params["w2"], np.eye(2))


def test_unknown_user_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        assert _message(lambda: store.steps("x")) == (
            f"history store {path}: no user 'x'; users: (none)"
        )
        store.add_user("b")
        store.add_user("a")
        assert _message(lambda: store.events("x")) == (
            f"history store {path}: no user 'x'; users: a, b"
        )


def test_event_records_are_stored_byte_stable(tmp_path: Path) -> None:
    """The detector column is JSON with sorted keys: the same event, the same bytes."""
    texts = []
    for i, extra in enumerate([{"theta": 0.1, "a": 1}, {"a": 1, "theta": 0.1}]):
        path = tmp_path / f"h{i}.sqlite"
        with HistoryStore(path, writable=True) as store:
            store.append_events("u", [EventRecord(3, 0.5, "l1", extra)])
            assert store.events("u") == [EventRecord(3, 0.5, "l1", {"a": 1, "theta": 0.1})]
        con = sqlite3.connect(path)
        texts.append(con.execute("SELECT detector, checksum FROM events").fetchall())
        con.close()
    assert texts[0] == texts[1]
    assert texts[0][0][0] == '{"a": 1, "name": "l1", "theta": 0.1}'


def _tamper(path: Path, sql: str) -> None:
    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()


def test_tampered_events_and_params_name_the_record(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_events("u", [EventRecord(3, 0.5, "l1")])
        store.set_param("u", "w", np.ones(2))
    _tamper(path, "UPDATE events SET value = 0.75")
    _tamper(path, "UPDATE params SET updated = 0.0, dtype = 'float32', data = zeroblob(8)")
    with HistoryStore(path) as store:
        assert _message(lambda: store.events("u")) == (
            f"history store {path}: event at step 3 of 'u' fails its checksum"
        )
        assert _message(lambda: store.params("u")) == (
            f"history store {path}: parameter 'w' of 'u' fails its checksum"
        )


@pytest.mark.parametrize("page_size", [32768, 65536])
def test_truncated_files_with_large_pages_are_refused(tmp_path: Path, page_size: int) -> None:
    """The header stores a 32 KiB page size as 0x8000 (unsigned) and 64 KiB as 1."""
    path = tmp_path / "big.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(i, np.full(512, i, np.float64)) for i in range(40)])
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute(f"PRAGMA page_size = {page_size}")
    con.execute("VACUUM")
    con.close()
    with HistoryStore(path) as store:  # intact: readable
        assert len(store.steps("u")) == 40
    data = path.read_bytes()
    pages = len(data) // page_size
    path.write_bytes(data[: page_size * 2 + 100])
    assert _message(lambda: HistoryStore(path)) == (
        f"history store {path}: truncated ({page_size * 2 + 100} bytes, its header says "
        f"{pages} pages of {page_size} bytes)"
    )


def _null_checksums(path: Path, n: int) -> None:
    """A file whose ``quick_check`` reports rows: NOT NULL columns holding NULL."""
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(i, np.zeros(2)) for i in range(n)])
    con = sqlite3.connect(path)
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = replace(sql, 'checksum TEXT NOT NULL,', "
                "'checksum TEXT,') WHERE name = 'steps'")  # fmt: skip
    con.commit()
    con.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE steps SET checksum = NULL")
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = replace(sql, 'checksum TEXT,', "
                "'checksum TEXT NOT NULL,') WHERE name = 'steps'")  # fmt: skip
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def test_quick_check_failures_are_reported_three_at_most(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    _null_checksums(path, 5)
    row = "NULL value in steps.checksum"
    expected = f"history store {path}: corrupt ({row}; {row}; {row})"
    assert _message(lambda: HistoryStore(path)) == expected
    assert _message(lambda: HistoryStore(path, writable=True)) == expected
    with HistoryStore(path, check=False) as store:  # the check can be skipped
        assert store.integrity_check()[0] == row
        # the records then fail their own checks (a NULL is not the checksum)
        assert "fails its checksum" in _message(lambda: store.steps("u"))


def test_a_failing_query_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(i, np.full(64, i, np.float64)) for i in range(40)])
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    last = len(data) // page - 1
    data[last * page : last * page + 12] = b"\xa5" * 12  # a data page, not the schema's
    path.write_bytes(bytes(data))
    with HistoryStore(path, check=False) as store:
        assert _message(lambda: store.steps("u")) == (
            f"history store {path}: database disk image is malformed"
        )


def test_records_and_values_are_refused_naming_the_argument(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite", writable=True) as store:
        with pytest.raises(QsemTypeError) as info:
            store.append_steps("u", [(0, np.zeros(2))])
        assert str(info.value) == "argument 'records': expected StepRecord, got tuple"
        bf16 = torch.zeros(2, dtype=torch.bfloat16)
        assert _message(lambda: store.append_steps("u", [StepRecord(0, bf16)]), QsemValueError) == (
            "argument 'records[0].phi': bfloat16 has no lossless NumPy dtype; convert it first"
        )
        assert _message(lambda: store.set_param("u", "w", bf16), QsemValueError) == (
            "argument 'value': bfloat16 has no lossless NumPy dtype; convert it first"
        )
        assert store.users() == []  # nothing was written


def test_user_names(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite", writable=True) as store:
        store.add_user("u" * 200)  # the longest name
        assert store.users() == ["u" * 200]
        for bad in ("", "u" * 201, 7, None):
            with pytest.raises(QsemValueError) as info:
                store.add_user(bad)
            assert str(info.value) == (
                f"argument 'user': expected a non-empty name (<= 200 chars), got {bad!r}"
            )


@pytest.mark.parametrize(
    ("kwargs", "cls", "message"),
    [
        ({"synchronous": "OFF"}, QsemValueError,
         "argument 'synchronous': expected one of ('FULL', 'NORMAL', 'EXTRA'), got 'OFF'"),
        ({"busy_timeout_ms": -1}, QsemValueError,
         "argument 'busy_timeout_ms': expected an int >= 0, got -1"),
        ({"busy_timeout_ms": 1.5}, QsemValueError,
         "argument 'busy_timeout_ms': expected an int >= 0, got 1.5"),
        ({"busy_timeout_ms": True}, QsemValueError,
         "argument 'busy_timeout_ms': expected an int >= 0, got True"),
    ],
)  # fmt: skip
def test_settings_refused_with_one_line(tmp_path: Path, kwargs, cls, message) -> None:
    with pytest.raises(QsemError) as info:
        HistoryStore(tmp_path / "h.sqlite", writable=True, **kwargs)
    assert type(info.value) is cls and str(info.value) == message
    assert not (tmp_path / "h.sqlite").exists()  # nothing created
    with pytest.raises(QsemTypeError) as info:
        HistoryStore(7)
    assert str(info.value) == "argument 'path': expected a file path, got int"


def test_settings_reach_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True, synchronous="EXTRA", busy_timeout_ms=0) as store:
        assert store.pragmas()["synchronous"] == 3 and store.pragmas()["busy_timeout"] == 0
        assert store.writable is True and store.path == str(path)
    with HistoryStore(str(path)) as reader:  # a str path works as a PathLike one does
        assert reader.writable is False
        assert reader.pragmas()["busy_timeout"] == 30000  # the default
        assert reader.pragmas()["journal_mode"] == "wal"


def test_files_that_are_not_usable_stores(tmp_path: Path) -> None:
    # an SQLite database with a header but no tables: a writer must not take it over
    empty = tmp_path / "empty.sqlite"
    con = sqlite3.connect(empty)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    assert _message(lambda: HistoryStore(empty, writable=True)) == (
        f"history store {empty}: an empty SQLite database that is not a qsem history store; "
        "refusing to take it over"
    )
    for name, ddl, message in [
        ("noversion", "CREATE TABLE users (x)", "no schema_version table"),
        (
            "version0",
            "CREATE TABLE schema_version (version INTEGER)",
            "invalid schema_version table (0 rows, expected 1)",
        ),
    ]:
        path = tmp_path / f"{name}.sqlite"
        con = sqlite3.connect(path)
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.execute(ddl)
        con.commit()
        con.close()
        for writable in (False, True):
            assert _message(lambda p=path, w=writable: HistoryStore(p, writable=w)) == (
                f"history store {path}: {message}"
            )
    # SQLite cannot open the file, or cannot keep a WAL for it
    missing_dir = tmp_path / "no-such-dir" / "h.sqlite"
    assert _message(lambda: HistoryStore(missing_dir, writable=True)) == (
        f"history store {missing_dir}: cannot create it: no such folder {missing_dir.parent}"
    )
    assert _message(lambda: HistoryStore(":memory:", writable=True)) == (
        "history store :memory:: cannot switch to WAL (memory)"
    )
    HistoryStore(tmp_path / "ok.sqlite", writable=True).close()  # no writer slot was leaked


def test_writer_slots_are_per_real_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with HistoryStore(a, writable=True), HistoryStore(b, writable=True):  # two files: fine
        link = tmp_path / "link.sqlite"
        link.symlink_to(a)
        for same in (link, tmp_path / "x" / ".." / "a.sqlite"):
            assert _message(lambda p=same: HistoryStore(p, writable=True)) == (
                f"history store {same}: already open for writing in this process "
                "(one writer per process: share that HistoryStore)"
            )


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path, writable=True)
    store.close()
    assert _message(store.users) == f"history store {path}: closed"
    store.close()  # closing twice is harmless


def test_a_reader_connection_is_read_only_at_the_sqlite_level(tmp_path: Path) -> None:
    """Not only our own check: SQLite itself refuses a reader's writes (``mode=ro``)."""
    path = tmp_path / "h.sqlite"
    HistoryStore(path, writable=True).close()
    with HistoryStore(path) as reader:
        assert _message(lambda: reader.add_user("x")) == f"history store {path}: opened read-only"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._db.execute("CREATE TABLE t (x)")


@pytest.mark.parametrize(("wal", "message"), [(b"", "truncated"), (b"x", "truncated")])
def test_a_wal_file_defers_the_size_check_only_when_it_holds_bytes(
    tmp_path: Path, wal: bytes, message: str
) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(i, np.full(64, i, np.float64)) for i in range(40)])
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    Path(f"{path}-wal").write_bytes(wal)
    # neither an empty WAL nor one byte of one holds a frame SQLite would replay (the
    # store reads the WAL header before any connection): the truncated file is refused
    assert message in _message(lambda: HistoryStore(path).steps("u"))


def test_a_busy_database_names_the_path(tmp_path: Path) -> None:
    """Another connection holds the write lock: a one-line store error, not sqlite3's."""
    path = tmp_path / "h.sqlite"
    HistoryStore(path, writable=True).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with HistoryStore(path, writable=True, busy_timeout_ms=0) as store:
        assert _message(lambda: store.append_steps("u", [StepRecord(0, np.zeros(2))])) == (
            f"history store {path}: database is locked: another connection held a lock on it "
            "longer than the busy_timeout_ms=0 wait; try again when it is done, or open the "
            "store with a larger busy_timeout_ms"
        )
        other.execute("ROLLBACK")
        other.close()
        store.append_steps("u", [StepRecord(0, np.zeros(2))])  # free again
        assert [r.step for r in store.steps("u")] == [0]


def test_a_write_into_a_damaged_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(i, np.full(64, i, np.float64)) for i in range(40)])
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    last = len(data) // page - 1
    data[last * page : last * page + 12] = b"\xa5" * 12
    path.write_bytes(bytes(data))
    with HistoryStore(path, writable=True, check=False) as store:
        more = [StepRecord(100 + i, np.zeros(64)) for i in range(50)]
        assert _message(lambda: store.append_steps("u", more)) == (
            f"history store {path}: database disk image is malformed"
        )
