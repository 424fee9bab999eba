"""The per-user history store ``H^(u) = {φ_t^(u), Δφ^(u), y_t^user, T^(u)}`` in SQLite.

One file holds the history of many users: per user the step records (the
reading ``φ_t`` as a tensor, ``Δφ_t``, the user's label ``y_t`` if given, the
query), the emergence events ``T^(u)`` of the user's detector, the learned
sensitivity ``θ^(u)`` and named parameter tensors (the user's reading weights).

Guarantees (each tested; the *Edge personalisation* documentation page says how):

* WAL journal, ``busy_timeout``; one writer connection per process (a second
  writable :class:`HistoryStore` on the same file in one process is refused) and
  any number of concurrent readers (read-only connections); every append is one
  transaction, so readers see a record whole or not at all;
* ``synchronous=FULL`` by default: a commit that returned is on disk, even through
  a power loss. ``NORMAL`` (in WAL mode) skips the sync at each commit: the last
  transactions before a power loss or OS crash may be lost, the file is never
  corrupted; a killed process loses nothing in either mode;
* a ``schema_version`` table and migrations (v1 -> v2 adds ``θ^(u)`` and the
  parameter table); a writer migrates an older file in one transaction, a reader
  reads it as it is;
* tensors stored losslessly: dtype, shape and the raw little-endian bytes
  (bit-exact round trip), each record with a checksum verified on read;
* a foreign file, an empty, truncated or corrupt database or a newer schema is
  refused with a :class:`HistoryStoreError` naming the path — never a crash or a
  silent reset.

>>> import tempfile, os, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "h.sqlite")
>>> with HistoryStore(path, writable=True) as store:
...     store.append_steps("ada", [StepRecord(0, np.ones((2, 3), np.float32), dphi=None)])
>>> with HistoryStore(path) as store:
...     store.users(), store.steps("ada")[0].phi.shape
(['ada'], (2, 3))
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qsem.circuits.errors import QsemError, QsemTypeError, arg_error

from .codec import checksum as _checksum
from .codec import decode_tensor, encode_tensor

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "EventRecord",
    "HistoryStore",
    "HistoryStoreError",
    "StepRecord",
    "decode_tensor",
    "encode_tensor",
]

#: ``PRAGMA application_id`` of a qsem history store (``b"qSEH"``): tells our files from others.
APPLICATION_ID = 0x71534548
#: the schema version this code writes (and the newest it reads).
SCHEMA_VERSION = 2

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SYNC = ("FULL", "NORMAL", "EXTRA")

#: the version-1 schema, frozen: a new file is created as v1 and migrated, so the
#: migration path runs on every new file.
_SCHEMA_V1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (1)",
    "CREATE TABLE users (user TEXT PRIMARY KEY, created REAL NOT NULL)",
    "CREATE TABLE steps (id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(user),"
    " step INTEGER NOT NULL, phi_dtype TEXT NOT NULL, phi_shape TEXT NOT NULL,"
    " phi BLOB NOT NULL, dphi REAL, label INTEGER, query TEXT, checksum TEXT NOT NULL,"
    " UNIQUE (user, step))",
    "CREATE TABLE events (id INTEGER PRIMARY KEY, user TEXT NOT NULL REFERENCES users(user),"
    " step INTEGER NOT NULL, value REAL NOT NULL, detector TEXT NOT NULL,"
    " checksum TEXT NOT NULL)",
)
#: ``_MIGRATIONS[v]``: the statements taking a version-``v`` file to ``v + 1``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE users ADD COLUMN theta REAL",
        "CREATE TABLE params (user TEXT NOT NULL REFERENCES users(user), name TEXT NOT NULL,"
        " dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,"
        " checksum TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (user, name))",
        "UPDATE schema_version SET version = 2",
    ),
}

#: real paths of the stores open for writing in this process (one writer per process).
_WRITERS: set[str] = set()


class HistoryStoreError(QsemError):
    """A history store file cannot be used (foreign, truncated, corrupt, newer schema)."""


@dataclass(frozen=True)
class StepRecord:
    """One step of a user's history: the reading ``phi`` (any array), ``Δφ``, label, query."""

    step: int
    phi: Any
    dphi: float | None = None
    label: int | None = None
    query: str | None = None


@dataclass(frozen=True)
class EventRecord:
    """An emergence event of the user's detector: step, ``Δφ`` value, detector, threshold."""

    step: int
    value: float
    detector: str
    extra: dict[str, Any] = field(default_factory=dict)


def _check_header(path: str) -> None:
    """Refuse a file that is not an intact SQLite database before SQLite opens it."""
    size = os.path.getsize(path)
    if size == 0:
        raise HistoryStoreError(f"history store {path}: empty file, not a qsem history store")
    with open(path, "rb") as fh:
        head = fh.read(100)
    if not head.startswith(_SQLITE_MAGIC):
        raise HistoryStoreError(
            f"history store {path}: not an SQLite database (a foreign file), refusing to use it"
        )
    if len(head) < 100:
        raise HistoryStoreError(f"history store {path}: truncated ({size} bytes, no full header)")
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    counter, pages, valid_for = (
        struct.unpack(">I", head[24:28])[0],
        struct.unpack(">I", head[28:32])[0],
        struct.unpack(">I", head[92:96])[0],
    )
    # A writer killed during a WAL checkpoint can leave page 1 (with the new size)
    # written and later pages not yet: the -wal file still holds every frame and
    # SQLite's recovery replays it, so the size check applies only without a WAL.
    wal = f"{path}-wal"
    wal_pending = os.path.exists(wal) and os.path.getsize(wal) > 0
    if pages and counter == valid_for and size < pages * page_size and not wal_pending:
        raise HistoryStoreError(
            f"history store {path}: truncated ({size} bytes, its header says "
            f"{pages} pages of {page_size} bytes)"
        )


class HistoryStore:
    """A history store file, opened read-only (default) or as this process's writer.

    ``writable=True`` creates the file if it does not exist, migrates an older schema
    and takes the process's writer slot for that file; ``synchronous``: ``"FULL"``
    (default), ``"NORMAL"`` or ``"EXTRA"``; ``busy_timeout_ms``: how long a
    connection waits for a lock held by another one; ``check``: run
    ``PRAGMA quick_check`` on open (catches a corrupt file before it is used).
    A store object belongs to the thread that opened it (give each reader thread its own).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        writable: bool = False,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        check: bool = True,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise arg_error("path", f"expected a file path, got {type(path).__name__}",
                            QsemTypeError)  # fmt: skip
        if synchronous not in _SYNC:
            raise arg_error("synchronous", f"expected one of {_SYNC}, got {synchronous!r}")
        if (
            isinstance(busy_timeout_ms, bool)
            or not isinstance(busy_timeout_ms, int)
            or (busy_timeout_ms < 0)
        ):
            raise arg_error("busy_timeout_ms", f"expected an int >= 0, got {busy_timeout_ms!r}")
        self.path = os.fspath(path)
        self.writable = bool(writable)
        self._key = os.path.realpath(self.path)
        self._conn: sqlite3.Connection | None = None
        exists = os.path.exists(self.path)
        if exists and not os.path.isfile(self.path):
            raise HistoryStoreError(f"history store {self.path}: not a file")
        if not exists and not self.writable:
            raise HistoryStoreError(f"history store {self.path}: no such file")
        if self.writable and self._key in _WRITERS:
            raise HistoryStoreError(
                f"history store {self.path}: already open for writing in this process "
                "(one writer per process: share that HistoryStore)"
            )
        if exists:
            _check_header(self.path)
        try:
            self._conn = self._connect(busy_timeout_ms, synchronous)
            self._check = bool(check)
            self.schema_version = self._open_schema(exists)
        except sqlite3.DatabaseError as exc:
            self._close_conn()
            raise HistoryStoreError(f"history store {self.path}: {exc}") from None
        except BaseException:
            self._close_conn()
            raise
        if self.writable:
            _WRITERS.add(self._key)

    # -- opening ----------------------------------------------------------------

    def _connect(self, busy_timeout_ms: int, synchronous: str) -> sqlite3.Connection:
        if self.writable:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1e3)
        else:
            uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                                   timeout=busy_timeout_ms / 1e3)  # fmt: skip
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        self._synchronous = synchronous
        return conn

    def _writer_pragmas(self) -> None:
        """WAL, ``synchronous``, foreign keys: set only once the file is known to be ours."""
        conn = self._db
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryStoreError(f"history store {self.path}: cannot switch to WAL ({mode})")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")

    def _open_schema(self, exists: bool) -> int:
        conn = self._db
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        if not tables and app == 0 and self.writable:
            if exists:
                raise HistoryStoreError(
                    f"history store {self.path}: an empty SQLite database that is not a qsem "
                    "history store; refusing to take it over"
                )
            self._writer_pragmas()
            return self._create()
        if app != APPLICATION_ID:
            raise HistoryStoreError(
                f"history store {self.path}: a foreign SQLite database (application_id "
                f"{app:#x}, a qsem history store has {APPLICATION_ID:#x})"
            )
        if "schema_version" not in tables:
            raise HistoryStoreError(f"history store {self.path}: no schema_version table")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise HistoryStoreError(
                f"history store {self.path}: schema version {version} is newer than this qsem "
                f"knows ({SCHEMA_VERSION}); upgrade qsem to read it"
            )
        if version < 1:
            raise HistoryStoreError(f"history store {self.path}: invalid schema version {version}")
        if self._check:
            self._quick_check()
        if self.writable:
            self._writer_pragmas()
            if version < SCHEMA_VERSION:
                self._migrate(version)
                version = SCHEMA_VERSION
        return version

    def _create(self) -> int:
        with self._transaction() as conn:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for stmt in _SCHEMA_V1:
                conn.execute(stmt)
        self._migrate(1)
        return SCHEMA_VERSION

    def _migrate(self, version: int) -> None:
        """Apply the migrations from ``version`` to :data:`SCHEMA_VERSION` in one transaction."""
        with self._transaction() as conn:
            for v in range(version, SCHEMA_VERSION):
                for stmt in _MIGRATIONS[v]:
                    conn.execute(stmt)

    def _quick_check(self) -> None:
        rows = [r[0] for r in self._db.execute("PRAGMA quick_check")]
        if rows != ["ok"]:
            raise HistoryStoreError(f"history store {self.path}: corrupt ({'; '.join(rows[:3])})")

    # -- plumbing -----------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise HistoryStoreError(f"history store {self.path}: closed")
        return self._conn

    def _transaction(self) -> _Txn:
        if not self.writable:
            raise HistoryStoreError(f"history store {self.path}: opened read-only")
        return _Txn(self._db, self.path)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection (and free this process's writer slot)."""
        self._close_conn()
        if self.writable:
            _WRITERS.discard(self._key)

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise HistoryStoreError(f"history store {self.path}: {exc}") from None

    def pragmas(self) -> dict[str, Any]:
        """The connection's ``journal_mode``, ``synchronous`` (0 OFF, 1 NORMAL, 2 FULL,
        3 EXTRA), ``busy_timeout`` (ms) and ``application_id``."""
        keys = ("journal_mode", "synchronous", "busy_timeout", "application_id")
        return {k: self._query(f"PRAGMA {k}")[0][0] for k in keys}

    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check`` rows (``["ok"]`` for an intact file)."""
        return [r[0] for r in self._query("PRAGMA integrity_check")]

    # -- writing ------------------------------------------------------------------

    def _ensure_user(self, conn: sqlite3.Connection, user: str) -> None:
        conn.execute("INSERT OR IGNORE INTO users (user, created) VALUES (?, ?)",
                     (user, time.time()))  # fmt: skip

    def add_user(self, user: str) -> None:
        """Register ``user`` (no-op if known)."""
        _check_user(user)
        with self._transaction() as conn:
            self._ensure_user(conn, user)

    def append_steps(self, user: str, records: Iterable[StepRecord]) -> None:
        """Append step records of ``user`` in ONE transaction (all or none are stored)."""
        _check_user(user)
        rows = []
        for r in records:
            if not isinstance(r, StepRecord):
                raise arg_error("records", f"expected StepRecord, got {type(r).__name__}",
                                QsemTypeError)  # fmt: skip
            dtype, shape, data = encode_tensor(r.phi, "phi")
            dphi = None if r.dphi is None else float(r.dphi)
            label = None if r.label is None else int(r.label)
            step = int(r.step)
            rows.append(
                (
                    user,
                    step,
                    dtype,
                    shape,
                    data,
                    dphi,
                    label,
                    r.query,
                    _checksum(user, step, dtype, shape, data, dphi, label, r.query),
                )
            )
        with self._transaction() as conn:
            self._ensure_user(conn, user)
            conn.executemany(
                "INSERT INTO steps (user, step, phi_dtype, phi_shape, phi, dphi, label, query,"
                " checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def append_events(self, user: str, events: Iterable[EventRecord]) -> None:
        """Append emergence events of ``user`` in one transaction."""
        _check_user(user)
        rows = []
        for e in events:
            detector = json.dumps({"name": e.detector, **e.extra}, sort_keys=True)
            rows.append((user, int(e.step), float(e.value), detector,
                         _checksum(user, int(e.step), float(e.value), detector)))  # fmt: skip
        with self._transaction() as conn:
            self._ensure_user(conn, user)
            conn.executemany("INSERT INTO events (user, step, value, detector, checksum) "
                             "VALUES (?, ?, ?, ?, ?)", rows)  # fmt: skip

    def set_theta(self, user: str, theta: float) -> None:
        """Store the user's emergence sensitivity ``θ^(u)``."""
        _check_user(user)
        with self._transaction() as conn:
            self._ensure_user(conn, user)
            conn.execute("UPDATE users SET theta = ? WHERE user = ?", (float(theta), user))

    def set_param(self, user: str, name: str, value: Any) -> None:
        """Store (or replace) the user's parameter tensor ``name``."""
        _check_user(user)
        dtype, shape, data = encode_tensor(value, "value")
        row = (user, name, dtype, shape, data, _checksum(user, name, dtype, shape, data),
               time.time())  # fmt: skip
        with self._transaction() as conn:
            self._ensure_user(conn, user)
            conn.execute("INSERT OR REPLACE INTO params (user, name, dtype, shape, data, checksum,"
                         " updated) VALUES (?, ?, ?, ?, ?, ?, ?)", row)  # fmt: skip

    # -- reading ------------------------------------------------------------------

    def users(self) -> list[str]:
        """Every user, by name."""
        return [r[0] for r in self._query("SELECT user FROM users ORDER BY user")]

    def _known(self, user: str) -> None:
        _check_user(user)
        if not self._query("SELECT 1 FROM users WHERE user = ?", (user,)):
            known = ", ".join(self.users()) or "(none)"
            raise HistoryStoreError(f"history store {self.path}: no user {user!r}; users: {known}")

    def steps(self, user: str) -> list[StepRecord]:
        """The user's step records by step, each checked against its checksum."""
        self._known(user)
        out = []
        for user_, step, dtype, shape, data, dphi, label, query, digest in self._query(
            "SELECT user, step, phi_dtype, phi_shape, phi, dphi, label, query, checksum "
            "FROM steps WHERE user = ? ORDER BY step",
            (user,),
        ):
            if _checksum(user_, step, dtype, shape, data, dphi, label, query) != digest:
                raise HistoryStoreError(
                    f"history store {self.path}: step {step} of user {user!r} fails its checksum"
                )
            out.append(StepRecord(step, decode_tensor(dtype, shape, data), dphi, label, query))
        return out

    def events(self, user: str) -> list[EventRecord]:
        """The user's emergence events in insertion order (checksums checked)."""
        self._known(user)
        out = []
        for step, value, detector, digest in self._query(
            "SELECT step, value, detector, checksum FROM events WHERE user = ? ORDER BY id",
            (user,),
        ):
            if _checksum(user, step, value, detector) != digest:
                raise HistoryStoreError(
                    f"history store {self.path}: event at step {step} of {user!r} fails its "
                    "checksum"
                )
            info = json.loads(detector)
            out.append(EventRecord(step, value, info.pop("name"), info))
        return out

    def theta(self, user: str) -> float | None:
        """The user's ``θ^(u)`` (None if not set, or a version-1 file)."""
        self._known(user)
        if self.schema_version < 2:
            return None
        row = self._query("SELECT theta FROM users WHERE user = ?", (user,))
        return None if row[0][0] is None else float(row[0][0])

    def params(self, user: str) -> dict[str, np.ndarray]:
        """The user's parameter tensors by name (empty for a version-1 file)."""
        self._known(user)
        if self.schema_version < 2:
            return {}
        out = {}
        for name, dtype, shape, data, digest in self._query(
            "SELECT name, dtype, shape, data, checksum FROM params WHERE user = ? ORDER BY name",
            (user,),
        ):
            if _checksum(user, name, dtype, shape, data) != digest:
                raise HistoryStoreError(
                    f"history store {self.path}: parameter {name!r} of {user!r} fails its checksum"
                )
            out[name] = decode_tensor(dtype, shape, data)
        return out

    def summary(self, user: str) -> dict[str, Any]:
        """Counts of the user's records, θ^(u), parameter names."""
        self._known(user)
        n_steps, n_labels = self._query(
            "SELECT COUNT(*), COUNT(label) FROM steps WHERE user = ?", (user,)
        )[0]
        n_events = self._query("SELECT COUNT(*) FROM events WHERE user = ?", (user,))[0][0]
        return {"user": user, "steps": n_steps, "labels": n_labels, "events": n_events,
                "theta": self.theta(user), "params": sorted(self.params(user))}  # fmt: skip


class _Txn:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn, self.path = conn, path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:  # e.g. "database is locked" by another writer
            raise HistoryStoreError(f"history store {self.path}: {exc}") from None
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
            return
        self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.IntegrityError):
            raise HistoryStoreError(f"history store {self.path}: {exc}") from None
        if isinstance(exc, sqlite3.DatabaseError):
            raise HistoryStoreError(f"history store {self.path}: {exc}") from None


def _check_user(user: Any) -> None:
    if not isinstance(user, str) or not user or len(user) > 200:
        raise arg_error("user", f"expected a non-empty name (<= 200 chars), got {user!r}")
