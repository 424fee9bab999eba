"""The history store: lossless tensors, pragmas, one writer, migration from v1, bad files."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemValueError
from qsem.edge import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    EventRecord,
    HistoryStore,
    HistoryStoreError,
    StepRecord,
    decode_tensor,
    encode_tensor,
)

#: the version-1 schema as it was released, frozen here (independent of the code's copy).
V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE users (user TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE steps (id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(user),
  step INTEGER NOT NULL, phi_dtype TEXT NOT NULL, phi_shape TEXT NOT NULL, phi BLOB NOT NULL,
  dphi REAL, label INTEGER, query TEXT, checksum TEXT NOT NULL, UNIQUE (user, step));
CREATE TABLE events (id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(user),
  step INTEGER NOT NULL, value REAL NOT NULL, detector TEXT NOT NULL, checksum TEXT NOT NULL);
"""


def _digest(*parts: object) -> str:
    """The record checksum as the v1 format defines it: blake2b-128 over repr/bytes + NUL."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128", "int64",
                                   "bool", "float16"])  # fmt: skip
def test_tensor_round_trip_is_bit_exact(tmp_path: Path, rng: np.random.Generator, dtype: str):
    a = rng.normal(size=(3, 4, 2)) * 1e3
    if dtype.startswith("complex"):
        a = a + 1j * rng.normal(size=a.shape)
    a = a.astype(dtype)
    if dtype.startswith(("float", "complex")):  # special values keep their bits
        flat = a.reshape(-1)
        flat[:4] = [np.nan, -0.0, np.inf, -np.inf]
        flat[4] = np.finfo(np.float32).tiny / 3 if dtype != "float16" else 1e-7
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(0, a, dphi=0.25, label=2, query="q")])
        store.set_param("u", "w", a.T)  # a non-contiguous view
    with HistoryStore(path) as store:
        (rec,) = store.steps("u")
        w = store.params("u")["w"]
    assert rec.phi.dtype == a.dtype and rec.phi.shape == a.shape and _bits(rec.phi) == _bits(a)
    assert w.dtype == a.dtype and w.shape == a.T.shape and _bits(w) == _bits(np.array(a.T))
    assert (rec.dphi, rec.label, rec.query) == (0.25, 2, "q")


def test_torch_and_big_endian_inputs_round_trip() -> None:
    t = torch.randn(5, 3, dtype=torch.complex64).conj()  # a lazily conjugated view
    dtype, shape, data = encode_tensor(t)
    back = decode_tensor(dtype, shape, data)
    assert dtype == "complex64" and _bits(back) == _bits(t.resolve_conj().numpy())
    be = np.arange(6, dtype=">f8").reshape(2, 3)
    out = decode_tensor(*encode_tensor(be))
    assert out.dtype == np.float64 and np.array_equal(out, be)
    assert len(encode_tensor(be)[2]) == 48 and encode_tensor(be)[2][:8] == b"\x00" * 8


@pytest.mark.parametrize("bad", [torch.zeros(2, dtype=torch.bfloat16), np.array(["a"])])
def test_unstorable_dtypes_are_refused_naming_the_argument(bad: object) -> None:
    with pytest.raises(QsemValueError, match="argument 'phi'"):
        encode_tensor(bad, "phi")


def test_pragmas_wal_full_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True, busy_timeout_ms=1234) as store:
        p = store.pragmas()
        assert p == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 1234,
                     "application_id": APPLICATION_ID}  # fmt: skip
        assert store.schema_version == SCHEMA_VERSION
    with HistoryStore(path, writable=True, synchronous="NORMAL") as store:
        assert store.pragmas()["synchronous"] == 1
    with HistoryStore(path) as reader:  # read-only
        with pytest.raises(HistoryStoreError, match="read-only"):
            reader.add_user("x")


def test_one_writer_per_process_many_readers(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    writer = HistoryStore(path, writable=True)
    with pytest.raises(HistoryStoreError, match="already open for writing"):
        HistoryStore(path, writable=True)
    readers = [HistoryStore(path) for _ in range(3)]
    writer.append_steps("u", [StepRecord(0, np.zeros(2))])
    assert all(r.users() == ["u"] for r in readers)
    for r in readers:
        r.close()
    writer.close()
    HistoryStore(path, writable=True).close()  # the slot is free again


def test_a_failed_append_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(0, np.zeros(2))])
        with pytest.raises(HistoryStoreError, match=str(path)):
            store.append_steps("u", [StepRecord(1, np.ones(2)), StepRecord(0, np.ones(2))])
        assert [r.step for r in store.steps("u")] == [0]
        store.append_events("u", [EventRecord(3, 0.5, "l1", {"theta": 0.1})])
        store.set_theta("u", 0.1)
        (ev,) = store.events("u")
        assert (ev.step, ev.value, ev.detector, ev.extra) == (3, 0.5, "l1", {"theta": 0.1})
        assert store.theta("u") == 0.1
        with pytest.raises(HistoryStoreError, match="no user 'bob'; users: u"):
            store.steps("bob")


def test_a_tampered_record_fails_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(0, np.zeros(2), dphi=1.0)])
    con = sqlite3.connect(path)
    con.execute("UPDATE steps SET dphi = 2.0")
    con.commit()
    con.close()
    with HistoryStore(path) as store, pytest.raises(HistoryStoreError, match="checksum"):
        store.steps("u")


def _v1_file(path: Path) -> np.ndarray:
    """A version-1 store written with the frozen v1 schema: one user, one step, one event."""
    phi = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    data = phi.astype("<f4").tobytes()
    shape = json.dumps([2, 3])
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    con.execute("INSERT INTO users VALUES ('ada', 0.0)")
    con.execute(
        "INSERT INTO steps (user, step, phi_dtype, phi_shape, phi, dphi, label, query, checksum)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("ada", 0, "float32", shape, data, 0.5, 1, "q0",
         _digest("ada", 0, "float32", shape, data, 0.5, 1, "q0")),
    )  # fmt: skip
    det = json.dumps({"name": "l1"})
    con.execute("INSERT INTO events (user, step, value, detector, checksum) VALUES "
                "(?, ?, ?, ?, ?)", ("ada", 0, 0.5, det, _digest("ada", 0, 0.5, det)))  # fmt: skip
    con.commit()
    con.close()
    return phi


def test_a_version_1_file_is_read_then_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    phi = _v1_file(path)
    with HistoryStore(path) as reader:  # a reader reads v1 as it is, and changes nothing
        assert reader.schema_version == 1 and reader.theta("ada") is None
        assert reader.params("ada") == {}
        assert _bits(reader.steps("ada")[0].phi) == _bits(phi)
    with HistoryStore(path, writable=True) as store:  # a writer migrates it
        assert store.schema_version == SCHEMA_VERSION
        (rec,) = store.steps("ada")
        assert (rec.step, rec.dphi, rec.label, rec.query) == (0, 0.5, 1, "q0")
        assert _bits(rec.phi) == _bits(phi)
        assert store.events("ada")[0].detector == "l1"
        store.set_theta("ada", 0.3)
        store.set_param("ada", "w", np.eye(2))
        store.append_steps("ada", [StepRecord(1, phi)])
    with HistoryStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION and store.theta("ada") == 0.3
        assert store.integrity_check() == ["ok"] and len(store.steps("ada")) == 2
    con = sqlite3.connect(path)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    con.close()


def _valid(path: Path) -> None:
    with HistoryStore(path, writable=True) as store:
        for i in range(40):
            store.append_steps("u", [StepRecord(i, np.full((64,), i, np.float64))])
    con = sqlite3.connect(path)  # fold the WAL into the main file
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def _foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()


def _newer(path: Path) -> None:
    _valid(path)
    con = sqlite3.connect(path)
    con.execute(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()


def _truncated(path: Path) -> None:
    _valid(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt(path: Path) -> None:
    _valid(path)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for p in range(1, len(data) // page):  # scribble over every b-tree page header but page 1
        data[p * page : p * page + 12] = b"\xa5" * 12
    path.write_bytes(bytes(data))


BAD = {
    "text file": (lambda p: p.write_text("not a database\n" * 20), "not an SQLite database"),
    "empty file": (lambda p: p.write_bytes(b""), "empty file"),
    "short header": (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20), "truncated"),
    "foreign sqlite": (_foreign_sqlite, "foreign SQLite database"),
    "newer schema": (_newer, "newer than this qsem knows"),
    "truncated": (_truncated, "truncated"),
    "corrupt": (_corrupt, "malformed|corrupt"),
}


@pytest.mark.parametrize("kind", list(BAD))
@pytest.mark.parametrize("writable", [False, True])
def test_bad_files_are_refused_naming_the_path_and_left_alone(
    tmp_path: Path, kind: str, writable: bool
) -> None:
    make, message = BAD[kind]
    path = tmp_path / "bad.sqlite"
    make(path)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    before = _sha(path)
    with pytest.raises(HistoryStoreError, match=message) as info:
        HistoryStore(path, writable=writable)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert _sha(path) == before  # never a silent reset
    HistoryStore(tmp_path / "fresh.sqlite", writable=True).close()  # no writer slot leaked
    shutil.rmtree(tmp_path / "fresh.sqlite", ignore_errors=True)


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(HistoryStoreError, match="no such file"):
        HistoryStore(tmp_path / "nope.sqlite")
    with pytest.raises(HistoryStoreError, match="not a file"):
        HistoryStore(tmp_path, writable=True)
    with pytest.raises(QsemValueError, match="argument 'synchronous'"):
        HistoryStore(tmp_path / "h.sqlite", writable=True, synchronous="OFF")
    with HistoryStore(tmp_path / "h.sqlite", writable=True) as store:
        with pytest.raises(QsemValueError, match="argument 'user'"):
            store.add_user("")
