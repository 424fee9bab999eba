"""The per-user history store ``H^(u) = {φ_t^(u), Δφ^(u), y_t^user, T^(u)}`` in SQLite.

One file holds the history of many users: per user the step records (the
reading ``φ_t`` as a tensor, ``Δφ_t``, the user's label ``y_t`` if given, the
query), the emergence events ``T^(u)`` of the user's detector, the learned
sensitivity ``θ^(u)`` and named parameter tensors (the user's reading weights).

Guarantees (each tested; the *Edge personalisation* documentation page says how, and
what SQLite itself cannot protect against):

* WAL journal, ``busy_timeout`` (30 s by default); one writer connection per process
  (a second writable :class:`HistoryStore` on the same file in one process is
  refused) and any number of concurrent readers; every append is one transaction,
  so readers see a record whole or not at all;
* ``synchronous=FULL`` by default: a commit that returned is on disk, even through
  a power loss. ``NORMAL`` (in WAL mode) skips the sync at each commit: the last
  transactions before a power loss or OS crash may be lost, the file is never
  corrupted; a killed process loses nothing in either mode;
* creation is atomic (built beside the path, synced, linked into place): a killed or
  failing creator leaves no file or a complete one, and concurrent creators all
  succeed; a writer migrates an older file in one ``BEGIN IMMEDIATE`` transaction
  (concurrent migrators wait), a reader reads it as it is;
* a file is recognised before SQLite may change it (:mod:`~qsem.edge.store_open`):
  a ``-wal`` or hot ``-journal`` that is not the store's is refused, every byte left
  as it was; a read-only place is read ``immutable`` where nobody can write it, or
  from a private recovered copy, or refused saying why;
* tensors and reals stored losslessly (``-0.0`` and NaN payloads included), each
  record with a checksum verified on read; a damaged index cannot hide a record;
* every failure is one :class:`HistoryStoreError` line naming the path and the cause
  (foreign, empty, truncated, corrupt or newer files, full disks, locks held too
  long, no permission) — never a crash or a silent reset.

>>> import tempfile, os, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "h.sqlite")
>>> with HistoryStore(path, writable=True) as store:
...     store.append_steps("ada", [StepRecord(0, np.ones((2, 3), np.float32), dphi=None)])
>>> with HistoryStore(path) as store:
...     store.users(), store.steps("ada")[0].phi.shape
(['ada'], (2, 3))
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qsem.circuits.errors import QsemTypeError, arg_error

from .codec import checksum as _checksum
from .codec import decode_real, decode_tensor, encode_real, encode_tensor
from .store_files import APPLICATION_ID, HistoryStoreError, db_error, fail
from .store_open import Opened, open_store, release
from .store_schema import SCHEMA_VERSION

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_BUSY_TIMEOUT_MS",
    "SCHEMA_VERSION",
    "EventRecord",
    "HistoryStore",
    "HistoryStoreError",
    "StepRecord",
    "decode_tensor",
    "encode_tensor",
]

_SYNC = ("FULL", "NORMAL", "EXTRA")
#: how long a connection waits for a lock another one holds before it gives up (30 s:
#: a writer's checkpoint of a large log on a slow card can hold it for seconds).
DEFAULT_BUSY_TIMEOUT_MS = 30_000


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


class HistoryStore:
    """A history store file, opened read-only (default) or as this process's writer.

    ``writable=True`` creates the file if it does not exist (atomically), migrates an
    older schema and takes the process's writer slot for that file; ``synchronous``:
    ``"FULL"`` (default), ``"NORMAL"`` or ``"EXTRA"``; ``busy_timeout_ms``: how long a
    connection waits for a lock held by another one (default 30 s); ``check``: run
    ``PRAGMA integrity_check`` on open (catches a corrupt file, a damaged index
    included, before it is used). ``access`` says how the file is read:
    ``"read-write"``, ``"read-only"``, ``"immutable"`` (a place nobody can write) or
    ``"snapshot"`` (a private, recovered copy: after a kill left a hot journal, or a log
    to replay in a folder this user cannot write).
    A store object belongs to the thread that opened it (give each reader thread its own).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        writable: bool = False,
        synchronous: str = "FULL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
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
        self.busy_timeout_ms = busy_timeout_ms
        self._opened: Opened | None = None
        self._opened = open_store(self.path, self.writable, synchronous, busy_timeout_ms,
                                  bool(check))  # fmt: skip
        self.schema_version = self._opened.version
        self.access = self._opened.access

    # -- plumbing -----------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._opened is None:
            raise fail(self.path, "closed")
        return self._opened.conn

    def _transaction(self) -> _Txn:
        if not self.writable:
            raise fail(self.path, "opened read-only")
        return _Txn(self._db, self.path, self.busy_timeout_ms)

    def close(self) -> None:
        """Close the connection (and free this process's writer slot)."""
        if self._opened is not None:
            opened, self._opened = self._opened, None
            release(self.path, self.writable, opened)

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise db_error(self.path, exc, self.busy_timeout_ms) from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """One read transaction: the queries inside see one snapshot of the file."""
        conn = self._db
        if conn.in_transaction:
            yield
            return
        self._query("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                self._query("COMMIT")

    def _bad(self, what: str, exc: Exception) -> HistoryStoreError:
        return fail(self.path, f"{what} is damaged ({type(exc).__name__}: {exc})")

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
        """Append step records of ``user`` in ONE transaction (all or none are stored).

        ``dphi`` is kept exactly (``-0.0`` and NaN included); a value that is not a real
        number is refused naming ``records[i].dphi``."""
        _check_user(user)
        rows = []
        for i, r in enumerate(records):
            if not isinstance(r, StepRecord):
                raise arg_error("records", f"expected StepRecord, got {type(r).__name__}",
                                QsemTypeError)  # fmt: skip
            dtype, shape, data = encode_tensor(r.phi, f"records[{i}].phi")
            dphi = encode_real(r.dphi, f"records[{i}].dphi")
            label = None if r.label is None else _integer(r.label, f"records[{i}].label")
            step = _integer(r.step, f"records[{i}].step")
            if r.query is not None and not isinstance(r.query, str):
                raise arg_error(f"records[{i}].query", f"expected a str or None, got "
                                f"{type(r.query).__name__}", QsemTypeError)  # fmt: skip
            digest = _checksum(user, step, dtype, shape, data, dphi, label, r.query)
            rows.append((user, step, dtype, shape, data, dphi, label, r.query, digest))
        with self._transaction() as conn:
            self._ensure_user(conn, user)
            conn.executemany(
                "INSERT INTO steps (user, step, phi_dtype, phi_shape, phi, dphi, label, query,"
                " checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def append_events(self, user: str, events: Iterable[EventRecord]) -> None:
        """Append emergence events of ``user`` in one transaction (values kept exactly)."""
        _check_user(user)
        rows = []
        for i, e in enumerate(events):
            if not isinstance(e, EventRecord):
                raise arg_error("events", f"expected EventRecord, got {type(e).__name__}",
                                QsemTypeError)  # fmt: skip
            value = encode_real(e.value, f"events[{i}].value")
            if value is None:
                raise arg_error(f"events[{i}].value", "expected a real number, got None")
            if "name" in e.extra:
                raise arg_error(f"events[{i}].extra", "the key 'name' is the detector's")
            try:
                detector = json.dumps({"name": e.detector, **e.extra}, sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise arg_error(f"events[{i}].extra", f"not JSON-serialisable ({exc})") from None
            step = _integer(e.step, f"events[{i}].step")
            rows.append((user, step, value, detector, _checksum(user, step, value, detector)))
        with self._transaction() as conn:
            self._ensure_user(conn, user)
            conn.executemany("INSERT INTO events (user, step, value, detector, checksum) "
                             "VALUES (?, ?, ?, ?, ?)", rows)  # fmt: skip

    def set_theta(self, user: str, theta: float) -> None:
        """Store the user's emergence sensitivity ``θ^(u)`` (exactly: ``-0.0``, NaN)."""
        _check_user(user)
        value = encode_real(theta, "theta")
        with self._transaction() as conn:
            self._ensure_user(conn, user)
            conn.execute("UPDATE users SET theta = ? WHERE user = ?", (value, user))

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
    # The small tables are read NOT INDEXED (from the table itself); the steps through
    # their index, with the count cross-checked against the table: a damaged index
    # cannot hide a record.

    def users(self) -> list[str]:
        """Every user, by name."""
        return [r[0] for r in self._query("SELECT user FROM users NOT INDEXED ORDER BY user")]

    def _known(self, user: str) -> None:
        _check_user(user)
        if not self._query("SELECT 1 FROM users NOT INDEXED WHERE user = ?", (user,)):
            known = ", ".join(self.users()) or "(none)"
            raise fail(self.path, f"no user {user!r}; users: {known}")

    def _counts(self, user: str) -> tuple[int, int]:
        n, labels = self._query("SELECT COUNT(*), COUNT(label) FROM steps NOT INDEXED "
                                "WHERE user = ?", (user,))[0]  # fmt: skip
        return int(n), int(labels)

    def steps(self, user: str) -> list[StepRecord]:
        """The user's step records by step, each checked against its checksum, and their
        number and row ids against the table itself (a damaged index cannot hide one)."""
        with self._reading():
            self._known(user)
            rows = self._query(
                "SELECT id, user, step, phi_dtype, phi_shape, phi, dphi, label, query, checksum"
                " FROM steps WHERE user = ? ORDER BY step",
                (user,),
            )
            n = self._counts(user)[0]
        distinct = len({r[0] for r in rows})
        if n != len(rows) or distinct != n:
            raise fail(
                self.path,
                f"corrupt: user {user!r} has {n} steps in the table but {distinct} in its "
                "index (run PRAGMA integrity_check)",
            )
        out = []
        for _, user_, step, dtype, shape, data, stored, label, query, digest in rows:
            dphi = _exact(stored, digest, user_, step, dtype, shape, data, _REAL, label, query)
            if dphi is _FAILED:
                raise fail(self.path, f"step {step} of user {user!r} fails its checksum")
            try:
                phi = decode_tensor(dtype, shape, data)
                out.append(StepRecord(step, phi, decode_real(dphi), label, query))
            except (ValueError, TypeError) as exc:
                raise self._bad(f"step {step} of user {user!r}", exc) from None
        return out

    def events(self, user: str) -> list[EventRecord]:
        """The user's emergence events in insertion order (checksums checked)."""
        self._known(user)
        out = []
        for step, stored, detector, digest in self._query(
            "SELECT step, value, detector, checksum FROM events WHERE user = ? ORDER BY id",
            (user,),
        ):
            value = _exact(stored, digest, user, step, _REAL, detector)
            if value is _FAILED:
                raise fail(self.path, f"event at step {step} of {user!r} fails its checksum")
            try:
                info = json.loads(detector)
                name = info.pop("name")
                if not isinstance(name, str):
                    raise TypeError(f"detector name {name!r} is not a string")
                out.append(EventRecord(step, _real(decode_real(value)), name, info))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise self._bad(f"event at step {step} of {user!r}", exc) from None
        return out

    def theta(self, user: str) -> float | None:
        """The user's ``θ^(u)`` (None if not set, or a version-1 file)."""
        self._known(user)
        if self.schema_version < 2:
            return None
        row = self._query("SELECT theta FROM users NOT INDEXED WHERE user = ?", (user,))
        try:
            return decode_real(row[0][0])
        except ValueError as exc:
            raise self._bad(f"theta of {user!r}", exc) from None

    def params(self, user: str) -> dict[str, np.ndarray]:
        """The user's parameter tensors by name (empty for a version-1 file)."""
        self._known(user)
        if self.schema_version < 2:
            return {}
        out = {}
        for name, dtype, shape, data, digest in self._query(
            "SELECT name, dtype, shape, data, checksum FROM params NOT INDEXED WHERE user = ? "
            "ORDER BY name",
            (user,),
        ):
            if _checksum(user, name, dtype, shape, data) != digest:
                raise fail(self.path, f"parameter {name!r} of {user!r} fails its checksum")
            try:
                out[name] = decode_tensor(dtype, shape, data)
            except (ValueError, TypeError) as exc:
                raise self._bad(f"parameter {name!r} of {user!r}", exc) from None
        return out

    def summary(self, user: str) -> dict[str, Any]:
        """Counts of the user's records, θ^(u), parameter names."""
        with self._reading():
            self._known(user)
            n_steps, n_labels = self._counts(user)
            n_events = self._query("SELECT COUNT(*) FROM events WHERE user = ?", (user,))[0][0]
            return {"user": user, "steps": n_steps, "labels": n_labels, "events": n_events,
                    "theta": self.theta(user), "params": sorted(self.params(user))}  # fmt: skip


class _Txn:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; on any failure ``ROLLBACK`` (if SQLite has not
    rolled back already) and one :class:`HistoryStoreError` naming the first cause."""

    def __init__(self, conn: sqlite3.Connection, path: str, busy_timeout_ms: int) -> None:
        self.conn, self.path, self.busy_timeout_ms = conn, path, busy_timeout_ms

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise db_error(self.path, exc, self.busy_timeout_ms) from None
        return self.conn

    def _rollback(self) -> None:
        if self.conn.in_transaction:  # SQLite rolls back by itself after some errors
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the first error is the one to report

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self._rollback()
                raise db_error(self.path, err, self.busy_timeout_ms) from None
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise db_error(self.path, exc, self.busy_timeout_ms) from None


_FAILED, _REAL = object(), object()


def _exact(stored: Any, digest: str, *parts: Any) -> Any:
    """The stored real of a record whose checksum over ``parts`` (the real at ``_REAL``)
    is ``digest``, else ``_FAILED``.

    Stores written before reals were kept exactly hold ``-0.0`` as ``0.0`` and NaN as
    NULL, under a checksum over the value as it was given: the checksum tells which it
    was, so such a record reads back (NaN without its payload) instead of failing."""
    readings = [stored]
    if stored is None:
        readings.append(float("nan"))
    elif isinstance(stored, (int, float)) and stored == 0:
        readings.append(-0.0)
    for value in readings:
        if _checksum(*(value if p is _REAL else p for p in parts)) == digest:
            return value
    return _FAILED


def _integer(value: Any, name: str) -> int:
    """``value`` as an int; anything that is not an integer (1.5, NaN, "3") is refused."""
    if not isinstance(value, numbers.Integral):
        raise arg_error(name, f"expected an integer, got {value!r}", QsemTypeError)
    return int(value)


def _real(x: float | None) -> float:
    if x is None:
        raise TypeError("an event value is NULL")
    return x


def _check_user(user: Any) -> None:
    if not isinstance(user, str) or not user or len(user) > 200:
        raise arg_error("user", f"expected a non-empty name (<= 200 chars), got {user!r}")
