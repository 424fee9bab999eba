"""The history store: lossless tensors, pragmas, one writer, migration from v1, bad files."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemTypeError, QsemValueError
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
    with pytest.raises(HistoryStoreError, match=f"no such folder {tmp_path / 'nope'}$"):
        HistoryStore(tmp_path / "nope" / "h.sqlite", writable=True)
    with pytest.raises(QsemValueError, match="argument 'synchronous'"):
        HistoryStore(tmp_path / "h.sqlite", writable=True, synchronous="OFF")
    with HistoryStore(tmp_path / "h.sqlite", writable=True) as store:
        with pytest.raises(QsemValueError, match="argument 'user'"):
            store.add_user("")


# -- issue 21: exact reals, damaged indexes and records, one-line errors ----------------


def _f64(x: float) -> bytes:
    return struct.pack("<d", x)


#: every real a REAL column would change (-0.0 -> 0.0, NaN -> NULL), payloads included.
NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_1234))[0]
REALS = [-0.0, float("nan"), NAN_PAYLOAD, -NAN_PAYLOAD, float("inf"), -float("inf"), 5e-324,
         0.0, 2.0, -1.5]  # fmt: skip


def _write_reals(store: HistoryStore, field: str) -> None:
    if field == "dphi":
        store.append_steps("u", [StepRecord(i, np.zeros(2), dphi=v) for i, v in enumerate(REALS)])
    elif field == "event value":
        store.append_events("u", [EventRecord(i, v, "l1") for i, v in enumerate(REALS)])
    else:
        for i, v in enumerate(REALS):
            store.set_theta(f"u{i}", v)


def _read_reals(store: HistoryStore, field: str) -> list[float | None]:
    if field == "dphi":
        return [r.dphi for r in store.steps("u")]
    if field == "event value":
        return [e.value for e in store.events("u")]
    return [store.theta(f"u{i}") for i in range(len(REALS))]


@pytest.mark.parametrize("field", ["dphi", "event value", "theta"])
def test_special_reals_round_trip_bit_exact(tmp_path: Path, field: str) -> None:
    """Δφ, event values and θ come back with the bits they were written with: -0.0 and
    NaN (with its payload) included; no value makes a user's records unreadable."""
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        _write_reals(store, field)
    with HistoryStore(path) as store:
        back = _read_reals(store, field)
        assert all(isinstance(x, float) for x in back)
        assert [_f64(x) for x in back] == [_f64(v) for v in REALS]  # type: ignore[arg-type]


def test_records_the_previous_version_could_not_read_back_are_read(tmp_path: Path) -> None:
    """The previous version wrote Δφ = -0.0 as 0.0 and NaN as NULL, and an event value
    -0.0 as 0.0, each under a checksum over the value given: those records failed their
    checksum (all of the user's steps unreadable). The checksum says which value it was."""
    path = tmp_path / "h.sqlite"
    _valid(path)
    data, shape = bytes(16), json.dumps([2])
    con = sqlite3.connect(path)
    for step, stored, given in [(40, 0.0, -0.0), (41, None, float("nan")), (42, 0.0, 0.0)]:
        digest = _digest("u", step, "float64", shape, data, given, None, None)
        con.execute(_STEP_SQL, ("u", step, "float64", shape, data, stored, None, None, digest))
    con.execute(
        _EVENT_SQL, ("u", 7, 0.0, '{"name": "l1"}', _digest("u", 7, -0.0, '{"name": "l1"}'))
    )
    con.commit()
    con.close()
    with HistoryStore(path) as store:
        records = store.steps("u")
        assert [_f64(r.dphi) for r in records[40:]] == [_f64(-0.0), _f64(float("nan")), _f64(0.0)]  # type: ignore[arg-type]
        assert _f64(store.events("u")[0].value) == _f64(-0.0)
    con = sqlite3.connect(path)  # a value the checksum does not vouch for still fails
    con.execute("UPDATE steps SET dphi = NULL WHERE step = 42")
    con.commit()
    con.close()
    with (
        HistoryStore(path) as store,
        pytest.raises(HistoryStoreError, match=r"step 42 .* checksum"),
    ):
        store.steps("u")


@pytest.mark.parametrize("bad", ["0.5", 1j, [0.5]])
def test_a_value_that_is_not_real_is_refused_naming_the_field(tmp_path: Path, bad: object) -> None:
    with HistoryStore(tmp_path / "h.sqlite", writable=True) as store:
        with pytest.raises(QsemTypeError, match=r"argument 'records\[1\]\.dphi'"):
            store.append_steps("u", [StepRecord(0, np.zeros(2)), StepRecord(1, np.zeros(2), bad)])  # type: ignore[arg-type]
        with pytest.raises(QsemTypeError, match=r"argument 'events\[0\]\.value'"):
            store.append_events("u", [EventRecord(0, bad, "l1")])  # type: ignore[arg-type]
        with pytest.raises(QsemTypeError, match="argument 'theta'"):
            store.set_theta("u", bad)  # type: ignore[arg-type]
        assert store.users() == []  # nothing was stored


@pytest.mark.parametrize(
    ("field", "record"),
    [
        ("records[0].label", StepRecord(0, np.zeros(2), label=1.5)),  # type: ignore[arg-type]
        ("records[0].label", StepRecord(0, np.zeros(2), label=float("nan"))),  # type: ignore[arg-type]
        ("records[0].step", StepRecord("3", np.zeros(2))),  # type: ignore[arg-type]
        ("records[0].query", StepRecord(0, np.zeros(2), query=5)),  # type: ignore[arg-type]
    ],
)
def test_a_bad_step_field_is_refused_naming_it(
    tmp_path: Path, field: str, record: StepRecord
) -> None:
    with HistoryStore(tmp_path / "h.sqlite", writable=True) as store:
        with pytest.raises(QsemTypeError, match=re.escape(f"argument '{field}'")):
            store.append_steps("u", [record])
        assert store.users() == []


def _damage_index_entry(path: Path, step: int, how: str) -> None:
    """Change ONE entry of the (user, step) index of the steps table in the file's bytes:
    ``"user"``: its user 'u' becomes 'v' (the row is still in the table, the index no
    longer finds it); ``"rowid"``: it points to the next row. ``PRAGMA quick_check`` does
    not compare indexes with tables, so both pass it."""
    con = sqlite3.connect(path)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = "
                       "'sqlite_autoindex_steps_1'").fetchone()[0]  # fmt: skip
    con.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    base = (root - 1) * page
    assert data[base] == 0x0A  # a leaf index page: every entry is on it
    for k in range(int.from_bytes(data[base + 3 : base + 5], "big")):
        cell = base + int.from_bytes(data[base + 8 + 2 * k : base + 10 + 2 * k], "big")
        header = data[cell + 1]  # payload size (1 byte), then the record header size
        types, body = data[cell + 2 : cell + 1 + header], cell + 1 + header
        # text of length 1, then step and rowid: a 1-byte integer (1), 0 (8) or 1 (9)
        assert types[0] == 15 and types[1] in (1, 8, 9) and types[2] in (1, 8, 9)
        assert data[body : body + 1] == b"u"
        value = {8: 0, 9: 1}.get(types[1], data[body + 1])
        if value == step:
            assert how == "user" or types[1] == types[2] == 1
            at = body if how == "user" else body + 2
            data[at] = ord("v") if how == "user" else data[at] + 1
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"no index entry for step {step}")


@pytest.mark.parametrize(("how", "step", "seen"), [("user", 39, 39), ("rowid", 17, 40)])
def test_a_damaged_index_cannot_hide_a_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, step: int, seen: int
) -> None:
    from qsem.cli import main

    path = tmp_path / "h.sqlite"
    _valid(path)
    _damage_index_entry(path, step, how)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA quick_check").fetchall() == [("ok",)]  # blind to it
    rows = con.execute("SELECT checksum FROM steps WHERE user = 'u' ORDER BY step").fetchall()
    assert len(rows) == seen and len(set(rows)) == 39  # through the index: one is hidden
    con.close()
    for writable in (False, True):  # integrity_check on open
        with pytest.raises(HistoryStoreError, match="corrupt") as info:
            HistoryStore(path, writable=writable)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    with HistoryStore(path, check=False) as store:  # counts cross-checked on read
        with pytest.raises(HistoryStoreError, match="in its index") as info:
            store.steps("u")
        assert "\n" not in str(info.value)
        assert store.summary("u")["steps"] == 40
    for action in (["users"], ["export", "u"], ["show", "u"]):
        capsys.readouterr()
        assert main(["history", str(path), *action]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "corrupt" in err and str(path) in err


def _craft(path: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    _valid(path)
    con = sqlite3.connect(path)
    con.execute(sql, args)
    con.commit()
    con.close()


def _step_row(dtype: str, shape: str, data: bytes) -> tuple[object, ...]:
    """A step record of user u with a CORRECT checksum over a bad shape or dtype."""
    return ("u", 99, dtype, shape, data, None, None, None,
            _digest("u", 99, dtype, shape, data, None, None, None))  # fmt: skip


_STEP_SQL = ("INSERT INTO steps (user, step, phi_dtype, phi_shape, phi, dphi, label, query, "
             "checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
_EVENT_SQL = "INSERT INTO events (user, step, value, detector, checksum) VALUES (?, ?, ?, ?, ?)"

#: records whose checksum is right but whose content cannot be decoded.
DAMAGED = {
    "shape not JSON": (_STEP_SQL, _step_row("float64", "[2,", bytes(16)), "step 99"),
    "shape of text": (_STEP_SQL, _step_row("float64", '["a"]', bytes(16)), "step 99"),
    "shape vs bytes": (_STEP_SQL, _step_row("float64", "[5]", bytes(16)), "step 99"),
    "unknown dtype": (_STEP_SQL, _step_row("float33", "[2]", bytes(16)), "step 99"),
    "detector not JSON": (_EVENT_SQL, ("u", 3, 0.5, "{", _digest("u", 3, 0.5, "{")), "event"),
    "detector no name": (_EVENT_SQL, ("u", 3, 0.5, "{}", _digest("u", 3, 0.5, "{}")), "event"),
    "detector a list": (_EVENT_SQL, ("u", 3, 0.5, "[1]", _digest("u", 3, 0.5, "[1]")), "event"),
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_a_damaged_record_is_one_line_naming_it(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from qsem.cli import main

    sql, row, what = DAMAGED[kind]
    path = tmp_path / "h.sqlite"
    _craft(path, sql, row)
    with HistoryStore(path) as store, pytest.raises(HistoryStoreError, match=what) as info:
        store.events("u") if what == "event" else store.steps("u")
    assert "\n" not in str(info.value) and "'u'" in str(info.value)
    capsys.readouterr()
    assert main(["history", str(path), "export", "u"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and str(path) in err and "damaged" in err


@pytest.mark.parametrize("value", ["'two'", "NULL", "2.5", None])
def test_an_invalid_schema_version_is_one_line(
    tmp_path: Path, value: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    from qsem.cli import main

    path = tmp_path / "h.sqlite"
    _valid(path)
    con = sqlite3.connect(path)
    con.executescript("DROP TABLE schema_version; CREATE TABLE schema_version (version);"
                      + ("INSERT INTO schema_version VALUES (2), (2);" if value is None else
                         f"INSERT INTO schema_version VALUES ({value});"))  # fmt: skip
    con.close()
    before = _sha(path)
    for writable in (False, True):
        with pytest.raises(HistoryStoreError, match="invalid schema") as info:
            HistoryStore(path, writable=writable)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert _sha(path) == before
    capsys.readouterr()
    assert main(["history", str(path), "users"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_export_keeps_every_value_in_standard_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``qsem history ... export/show``: NaN and infinities as strings, complex numbers as
    [real, imag], -0.0 kept; standard JSON (no bare NaN a strict parser refuses)."""
    from qsem.cli import main

    def strict(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    path = tmp_path / "h.sqlite"
    phi = np.array([1 + 2j, complex(np.nan, -0.0)], np.complex128)
    with HistoryStore(path, writable=True) as store:
        store.append_steps("u", [StepRecord(0, phi, dphi=float("nan")),
                                 StepRecord(1, np.array([np.inf, -0.0]), dphi=-0.0)])  # fmt: skip
        store.append_events("u", [EventRecord(0, float("-inf"), "l1", {"theta": float("nan")})])
        store.set_theta("u", float("nan"))
        store.set_param("u", "w", np.array([np.nan]))
    capsys.readouterr()
    assert main(["history", str(path), "export", "u", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out, parse_constant=strict)
    first, second = doc["steps"]
    assert first["dphi"] == "NaN" and first["phi"][0] == [1.0, 2.0]
    assert first["phi"][1][0] == "NaN" and str(first["phi"][1][1]) == "-0.0"
    assert str(second["dphi"]) == "-0.0" and second["phi"][0] == "Infinity"
    assert str(second["phi"][1]) == "-0.0"
    assert doc["events"] == [{"step": 0, "value": "-Infinity", "detector": "l1", "theta": "NaN"}]
    assert doc["summary"]["theta"] == "NaN" and doc["params"] == {"w": ["NaN"]}
    assert main(["history", str(path), "show", "u"]) == 0
    assert json.loads(capsys.readouterr().out, parse_constant=strict)["summary"]["theta"] == "NaN"
    assert main(["history", str(path), "export", "u", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].startswith("0,nan,") and rows[2].startswith("1,-0.0,")
    assert json.loads(rows[1].split(",", 7)[7].strip('"').replace('""', '"'),
                      parse_constant=strict) == [[1.0, 2.0], ["NaN", -0.0]]  # fmt: skip
