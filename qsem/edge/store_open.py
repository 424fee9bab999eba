"""Opening a history store: recognise the file and its logs first, connect after.

The order of :func:`open_store` is the store's promise that a file qsem has not
recognised as its own (and consistent) is never changed:

1. a new file is built beside the path under a temporary name (schema, id, WAL
   mode), synced, and linked into place in one step (:func:`create`): a killed or
   failing creator leaves no file, or a complete one; concurrent creators all see
   the one that won;
2. the main file's header, ``PATH-wal`` and ``PATH-journal`` are read as bytes
   (:mod:`qsem.edge.store_files`): a log with another page size, or whose page 1
   is another database's (``application_id``) or another store's (the random id in
   ``user_version``), is refused before any connection;
3. the file is validated on a *probe* that cannot write it: the main file opened
   ``immutable`` when no log needs replaying, or a private copy of the file and its
   log replayed by SQLite when one does (then ``integrity_check`` always). Another
   process that has the store open is trusted: its log is live, and the file is
   validated on the real connection instead;
4. only then the real connection: read-write (WAL, migration inside ``BEGIN
   IMMEDIATE``, the version read inside it), or read-only (``mode=ro``; ``immutable``
   in a place nobody can write; the validated private copy after a kill left a hot
   rollback journal, or where the directory is read-only and a log needs replaying).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .store_files import (
    APPLICATION_ID,
    Header,
    HistoryStoreError,
    db_error,
    fail,
    hot_journal,
    in_use,
    read_header,
    wal_frames,
)
from .store_schema import clean_stale, create, upgrade, validate

_LOCK = threading.RLock()
#: real path -> number of connections of this process that hold SQLite's locks on it
#: ("read-write", "read-only"; not "immutable", which takes none, nor "snapshot").
_OPEN: dict[str, int] = {}
_LOCKING = ("read-write", "read-only")
#: real paths open for writing in this process (one writer per process).
_WRITERS: set[str] = set()


def _forget_after_fork() -> None:
    _OPEN.clear()
    _WRITERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@dataclass
class Opened:
    """An open connection and how it reads the store."""

    conn: sqlite3.Connection
    version: int
    #: ``"read-write"``, ``"read-only"``, ``"immutable"`` or ``"snapshot"`` (a private copy)
    access: str
    snapshot: str | None = None  #: the temporary folder of the private copy


def _uri(path: str, **params: str) -> str:
    return (
        "file:" + urllib.parse.quote(os.path.abspath(path)) + "?" + urllib.parse.urlencode(params)
    )


def _connect(target: str, busy_timeout_ms: int, **params: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        _uri(target, **params),
        uri=True,
        isolation_level=None,
        timeout=busy_timeout_ms / 1e3,
        check_same_thread=True,
    )
    conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    return conn


# -- recognising the file and its logs ---------------------------------------------------


def _stamp(path: str) -> tuple[Any, ...]:
    """Size, mtime and inode of the file and its logs (to tell a race from a bad file)."""
    out: list[Any] = []
    for name in (path, f"{path}-wal", f"{path}-journal"):
        try:
            st = os.stat(name)
            out.append((st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


def _check_logs(path: str, header: Header, wal: Any, journal: Any) -> None:
    """Refuse a ``-wal`` or hot ``-journal`` that is not this store's (from bytes alone)."""
    mine = header.app_id == APPLICATION_ID
    empty = header.app_id == 0 and header.pages <= 1  # an empty database: nothing to lose
    if wal is not None and wal.committed:
        name = f"{path}-wal"
        if not (mine or empty):
            raise fail(
                path,
                f"a foreign SQLite database (application_id {header.app_id:#x}, a qsem "
                f"history store has {APPLICATION_ID:#x})",
            )
        if wal.page_size != header.page_size and not empty:
            raise fail(
                path,
                f"{name} has pages of {wal.page_size} bytes, the store "
                f"{header.page_size}: it is another database's write-ahead log; "
                "refusing to replay it (the store is untouched: move it away)",
            )
        ids = {sid for _, sid in wal.page1 if sid} | (
            {header.store_id} if header.store_id else set()
        )
        if any(app != APPLICATION_ID for app, _ in wal.page1) or len(ids) > 1:
            raise fail(
                path,
                f"{name} holds pages of another database or another qsem store;"
                " refusing to replay it (the store is untouched: move it away)",
            )
    if journal is not None and journal.page_size:
        name = f"{path}-journal"
        app, sid = journal.page1 if journal.page1 else (header.app_id, header.store_id)
        if (
            journal.page_size != header.page_size
            or app != header.app_id
            or (sid not in (0, header.store_id))
        ):
            raise fail(
                path,
                f"{name} is a hot journal of another database; refusing to roll it"
                " back into the store (the store is untouched: move it away)",
            )


def _nobody_can_write(path: str) -> bool:
    """True if no one but root can change ``path``: a read-only mount, or neither the file
    nor its folder has a write permission bit (then no writer can open or journal it)."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        return not (os.stat(folder).st_mode & bits or os.stat(path).st_mode & bits)
    except OSError:
        return False


def _replay_copy(path: str, busy_timeout_ms: int, wal: bool, journal: bool) -> tuple[str, Any]:
    """A private copy of the file and its log in a temporary folder, opened read-write so
    SQLite replays the WAL (or rolls the journal back) there and nowhere else."""
    folder = tempfile.mkdtemp(prefix="qsem-store-")
    copy = os.path.join(folder, "store.sqlite")
    try:
        shutil.copyfile(path, copy)
        if wal:
            shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        if journal:
            shutil.copyfile(f"{path}-journal", f"{copy}-journal")
        return folder, _connect(copy, busy_timeout_ms, mode="rw")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _validate_replayed(conn: sqlite3.Connection, path: str, log: str) -> int:
    """:func:`validate` (with ``integrity_check``) a private copy that SQLite recovered from
    the log ``PATH{log}``: a failure means the log does not fit the file."""
    try:
        return validate(conn, path, check=True)
    except (HistoryStoreError, sqlite3.Error) as exc:
        reason = str(db_error(path, exc)).removeprefix(f"history store {path}: ")
        raise fail(
            path,
            f"recovering it from {path}{log} (on a private copy) gives: {reason}; that log is "
            "not this store's, or the store is damaged: refusing to use it (the store is "
            "untouched; move the log away if it is not the store's)",
        ) from None


def _probe(path: str, writable: bool, busy_timeout_ms: int, check: bool) -> Opened | bool:
    """Recognise ``path`` without changing it. Returns the connection a reader keeps (a
    private copy, or ``immutable``), else whether the file was validated (False: another
    process has it open, validate it on the real connection)."""
    live = in_use(path)
    wal = wal_frames(f"{path}-wal") if not live and os.path.exists(f"{path}-wal") else None
    committed = bool(wal and wal.committed)
    header = read_header(path, wal_pending=live or committed)
    journal = None if live else hot_journal(f"{path}-journal", path)
    hot = journal is not None and journal.page_size > 0
    _check_logs(path, header, wal, journal)
    if live:
        return False  # another process holds it open: validated on the real connection
    folder_ro = not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)
    if committed or hot:
        folder, conn = _replay_copy(path, busy_timeout_ms, committed, hot)
        try:
            version = _validate_replayed(conn, path, "-wal" if committed else "-journal")
            if not writable and (hot or folder_ro):
                conn.execute("PRAGMA query_only = 1")
                return Opened(conn, version, "snapshot", folder)
        except BaseException:
            conn.close()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)
        return True
    conn = _connect(path, busy_timeout_ms, mode="ro", immutable="1")
    try:
        version = validate(conn, path, check)
        if not writable and folder_ro and header.wal_mode:
            if not _nobody_can_write(path):
                raise fail(
                    path,
                    "cannot read it: SQLite needs to create "
                    f"{os.path.basename(path)}-shm beside a WAL store, and its"
                    " folder is not writable by this user; another user can write"
                    " there, so reading it unlocked (immutable) is not safe: ask"
                    " them to make the folder read-only, or copy the file",
                )
            return Opened(conn, version, "immutable")
    except BaseException:
        conn.close()
        raise
    conn.close()
    return True


def _recognise(path: str, writable: bool, busy_timeout_ms: int, check: bool) -> Opened | bool:
    """:func:`_probe`, again if the files changed meanwhile (a writer was busy with them)."""
    for attempt in range(6):
        before = _stamp(path)
        try:
            return _probe(path, writable, busy_timeout_ms, check)
        except (HistoryStoreError, sqlite3.Error, OSError) as exc:
            if attempt == 5 or _stamp(path) == before:
                raise db_error(path, exc, busy_timeout_ms) from None
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


# -- opening ---------------------------------------------------------------------------


def _to_wal(conn: sqlite3.Connection, path: str, busy_timeout_ms: int) -> None:
    """Switch a rollback-journal file (an old or copied store) to WAL. SQLite does not call
    its busy handler for this switch (it fails at once while another connection holds a
    lock), so wait here, up to ``busy_timeout_ms``, as for any other lock."""
    deadline = time.monotonic() + busy_timeout_ms / 1e3
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            busy = str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY")
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
    if str(mode).lower() != "wal":
        raise fail(path, f"cannot switch to WAL ({mode})")


def _writer(path: str, synchronous: str, busy_timeout_ms: int, check: bool) -> Opened:
    """The read-write connection: validated (``check``: with ``integrity_check``, where no
    probe did it) before the first write, WAL, then :func:`upgrade`."""
    conn = _connect(path, busy_timeout_ms, mode="rw")
    try:
        validate(conn, path, check)
        _to_wal(conn, path, busy_timeout_ms)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        return Opened(conn, upgrade(conn, path), "read-write")
    except BaseException:
        conn.close()
        raise


def _reader(path: str, busy_timeout_ms: int, check: bool) -> Opened:
    conn = _connect(path, busy_timeout_ms, mode="ro")
    try:
        return Opened(conn, validate(conn, path, check), "read-only")
    except BaseException:
        conn.close()
        raise


def _place(path: str, writable: bool) -> None:
    """Refuse to create or write a store where that cannot work, before SQLite tries."""
    if path == ":memory:":  # SQLite's name for a database in memory, not a file
        raise fail(path, "cannot switch to WAL (memory)")
    folder = os.path.dirname(os.path.abspath(path))
    exists = os.path.exists(path)
    if exists and not os.path.isfile(path):
        raise fail(path, "not a file")
    if not exists and not writable:
        raise fail(path, "no such file")
    if writable and not os.path.isdir(folder):
        raise fail(path, f"cannot create it: no such folder {folder}")
    if writable and not os.access(folder, os.W_OK):
        raise fail(
            path,
            f"cannot open it for writing: its folder {folder} is not writable "
            "(a store needs its -wal and -shm files beside it)",
        )
    if writable and exists and not os.access(path, os.W_OK):
        raise fail(
            path,
            "cannot open it for writing: the file is read-only (open it "
            "read-only, or make it writable)",
        )


def open_store(
    path: str, writable: bool, synchronous: str, busy_timeout_ms: int, check: bool
) -> Opened:
    """Open the store ``path`` (see the module's docstring for the order of the steps)."""
    key = os.path.realpath(path)
    with _LOCK:
        if writable and key in _WRITERS:
            raise fail(
                path,
                "already open for writing in this process (one writer per "
                "process: share that HistoryStore)",
            )
        _place(path, writable)
        try:
            if not os.path.exists(path):
                create(path)
            elif writable:
                clean_stale(path)
            # the first store on this file in this process recognises the files; later
            # ones must not open (and close) them: that would drop SQLite's POSIX locks
            probe: Opened | bool = (
                _recognise(path, writable, busy_timeout_ms, check) if (key not in _OPEN) else True
            )
            if isinstance(probe, Opened):
                opened = probe
            elif writable:
                opened = _writer(path, synchronous, busy_timeout_ms, check and not probe)
            else:
                opened = _reader(path, busy_timeout_ms, check and not probe)
        except (sqlite3.Error, OSError) as exc:
            raise db_error(path, exc, busy_timeout_ms) from None
        if opened.access in _LOCKING:
            _OPEN[key] = _OPEN.get(key, 0) + 1
        if writable:
            _WRITERS.add(key)
        return opened


def release(path: str, writable: bool, opened: Opened) -> None:
    """Close ``opened`` and give back this process's slot(s) for ``path``."""
    key = os.path.realpath(path)
    with _LOCK:
        opened.conn.close()
        if opened.snapshot:
            shutil.rmtree(opened.snapshot, ignore_errors=True)
        count = _OPEN.get(key, 0) - (opened.access in _LOCKING)
        if count > 0:
            _OPEN[key] = count
        else:
            _OPEN.pop(key, None)
        if writable:
            _WRITERS.discard(key)
