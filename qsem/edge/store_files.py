"""The files of a history store, read as bytes before SQLite touches them.

SQLite ties a ``-wal`` or ``-journal`` file to a database by its name alone: a stray
one beside a store would be replayed into it (or rolled back into it) by the first
read-write connection. This module reads the main file's header, the write-ahead
log and the rollback journal with plain file reads, so that
:mod:`qsem.edge.store_open` can refuse a file (or a log) that is not the store's
before any connection could change a byte.

* :func:`read_header`: the 100-byte database header (page size, page count,
  ``application_id``, ``user_version`` = the store's random id);
* :func:`wal_frames`: the frames SQLite would replay from ``PATH-wal`` (salts and
  the cumulative checksums verified as SQLite does), and the identity of every
  committed copy of page 1 in it;
* :func:`hot_journal`: whether ``PATH-journal`` is hot (SQLite would roll it back)
  and the identity of the page-1 image it holds;
* :func:`in_use`: whether another process has the store open (it holds SQLite's
  shared-memory "dead man switch" lock);
* :func:`lock_holders`: the processes holding SQLite's locks (from ``/proc/locks``);
* :func:`db_error`: one line for an ``sqlite3`` or OS error, with its likely cause.

Never open (and close) a file of a store that a connection of this process has open:
closing any descriptor of a file drops every POSIX lock the process holds on it,
SQLite's included. :mod:`qsem.edge.store_open` only calls these while the store is
not open in this process.

>>> one_line("corrupt\\n*** in database main ***\\nPage 5")
'corrupt *** in database main *** Page 5'
"""

from __future__ import annotations

import os
import re
import sqlite3
import struct
import sys
from dataclasses import dataclass

import numpy as np

from qsem.errors import HistoryStoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "APPLICATION_ID",
    "Header",
    "HistoryStoreError",
    "JournalInfo",
    "WalInfo",
    "db_error",
    "fail",
    "hot_journal",
    "in_use",
    "lock_holders",
    "one_line",
    "read_header",
    "wal_frames",
]

#: ``PRAGMA application_id`` of a qsem history store (``b"qSEH"``): tells our files from others.
APPLICATION_ID = 0x71534548

_SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_MAGICS = (0x377F0682, 0x377F0683)
_WAL_VERSION = 3007000
_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
#: SQLite's unix locking bytes: the RESERVED byte of the main file, and in ``-shm``
#: the WAL write lock (120) and the "dead man switch" every live connection holds (128).
_RESERVED_BYTE = 0x40000001
_SHM_WRITE_LOCK, _SHM_DMS = 120, 128


def one_line(text: str, limit: int = 400) -> str:
    """``text`` with every run of white space (newlines included) made one space, cut at
    ``limit`` characters: SQLite's own messages (``integrity_check`` rows) span lines."""
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def fail(path: str, message: str) -> HistoryStoreError:
    """The one-line :class:`HistoryStoreError` ``history store PATH: message``."""
    return HistoryStoreError(one_line(f"history store {path}: {message}", 600))


@dataclass(frozen=True)
class Header:
    """The fields of a database header a store is recognised by."""

    size: int  #: file size in bytes
    page_size: int
    pages: int  #: the in-header page count
    app_id: int  #: ``PRAGMA application_id``
    store_id: int  #: ``PRAGMA user_version``: a qsem store's random id (0 in old stores)
    wal_mode: bool  #: bytes 18-19 are 2 (the file is in WAL mode)


def _ident(page1: bytes) -> tuple[int, int]:
    """``(application_id, user_version)`` of a page-1 image."""
    return struct.unpack(">I", page1[68:72])[0], struct.unpack(">I", page1[60:64])[0]


def read_header(path: str, wal_pending: bool) -> Header:
    """The header of ``path``; refuse a file that is not an intact SQLite database.

    ``wal_pending``: a ``-wal`` with frames is beside it (then a file shorter than its
    header says is what a writer killed mid-checkpoint leaves, and SQLite recovers it).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise fail(path, f"cannot read it: {exc.strerror or exc}") from None
    if size == 0:
        raise fail(
            path,
            "empty file, not a qsem history store (an older qsem killed while "
            "creating a store left such files: delete it to start afresh)",
        )
    if not head.startswith(_SQLITE_MAGIC):
        raise fail(path, "not an SQLite database (a foreign file), refusing to use it")
    if len(head) < 100:
        raise fail(path, f"truncated ({size} bytes, no full header)")
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    counter, pages, valid_for = (
        struct.unpack(">I", head[24:28])[0],
        *struct.unpack(">I", head[28:32]),
        struct.unpack(">I", head[92:96])[0],
    )
    if pages and counter == valid_for and size < pages * page_size and not wal_pending:
        raise fail(
            path, f"truncated ({size} bytes, its header says {pages} pages of {page_size} bytes)"
        )
    app_id, store_id = _ident(head)
    return Header(size, page_size, pages, app_id, store_id, head[18] == 2 and head[19] == 2)


# -- the write-ahead log -------------------------------------------------------------


def _pair_powers(n: int) -> np.ndarray:
    """``M^j mod 2^32`` for ``j = 0..n`` with ``M = [[1, 1], [1, 2]]`` (uint64, ``(n+1, 4)``).

    SQLite's WAL checksum over 32-bit word pairs ``(x0, x1)`` is the recurrence
    ``s1 += x0 + s2; s2 += x1 + s1`` (mod 2^32), i.e. ``v <- M v + (x0, x0 + x1)``:
    a page's checksum is a sum of these powers times its words, no Python loop."""
    out = np.empty((n + 1, 4), dtype=np.uint64)
    a, b, c, d = 1, 0, 0, 1
    for j in range(n + 1):
        out[j] = (a, b, c, d)
        a, b, c, d = (
            (a + c) & 0xFFFFFFFF,
            (b + d) & 0xFFFFFFFF,
            (a + 2 * c) & 0xFFFFFFFF,
            (b + 2 * d) & 0xFFFFFFFF,
        )
    return out


_POWERS: dict[int, np.ndarray] = {}


def wal_checksum(data: bytes, big_endian: bool, s1: int = 0, s2: int = 0) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes) continuing from ``(s1, s2)``.

    >>> wal_checksum(bytes(8), True, 1, 2)  # one pair of zero words: s1 = 1+0+2, s2 = 2+0+3
    (3, 5)
    """
    words = np.frombuffer(data, dtype=">u4" if big_endian else "<u4").astype(np.uint64)
    x0, x1 = words[0::2], words[1::2]
    n = len(x0)
    if n not in _POWERS:
        _POWERS[n] = _pair_powers(n)
    p = _POWERS[n]
    rev = p[n - 1 :: -1] if n else p[:0]  # M^(n-k) for k = 1..n
    b0, b1 = x0, x0 + x1
    with np.errstate(over="ignore"):
        r1 = int((rev[:, 0] * b0 + rev[:, 1] * b1).sum(dtype=np.uint64))
        r2 = int((rev[:, 2] * b0 + rev[:, 3] * b1).sum(dtype=np.uint64))
    a, b, c, d = (int(v) for v in p[n])
    return (a * s1 + b * s2 + r1) & 0xFFFFFFFF, (c * s1 + d * s2 + r2) & 0xFFFFFFFF


@dataclass(frozen=True)
class WalInfo:
    """What SQLite would replay from a ``-wal`` file."""

    page_size: int  #: from the WAL header (0: no valid header)
    committed: int  #: frames up to the last valid commit frame (what a reader replays)
    page1: tuple[tuple[int, int], ...]  #: (application_id, user_version) of committed page-1 frames


def wal_frames(path: str) -> WalInfo:
    """Parse ``path`` (a ``-wal`` file) as SQLite's recovery does: a valid header (magic,
    version, header checksum), then frames whose salts match and whose cumulative
    checksum holds; frames after the last commit frame are not part of the database."""
    none = WalInfo(0, 0, ())
    try:
        with open(path, "rb") as fh:
            hdr = fh.read(32)
            if len(hdr) < 32:
                return none
            magic, version, pgsz, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", hdr)
            big = magic & 1 == 1
            if (
                magic not in _WAL_MAGICS
                or version != _WAL_VERSION
                or pgsz & (pgsz - 1)
                or not (512 <= pgsz <= 65536)
                or wal_checksum(hdr[:24], big) != (c1, c2)
            ):
                return none
            s, committed, n = (c1, c2), 0, 0
            page1: list[tuple[int, int]] = []
            pending: list[tuple[int, int]] = []
            while True:
                fhdr = fh.read(24)
                page = fh.read(pgsz)
                if len(fhdr) < 24 or len(page) < pgsz:
                    break
                pgno, commit, f1, f2, k1, k2 = struct.unpack(">6I", fhdr)
                if (f1, f2) != (salt1, salt2) or pgno == 0:
                    break
                s = wal_checksum(fhdr[:8], big, *s)
                s = wal_checksum(page, big, *s)
                if s != (k1, k2):
                    break
                n += 1
                if pgno == 1:
                    pending.append(_ident(page))
                if commit:
                    committed, page1, pending = n, page1 + pending, []
    except OSError as exc:
        raise fail(path, f"cannot read it: {exc.strerror or exc}") from None
    return WalInfo(pgsz, committed, tuple(page1))


# -- the rollback journal ------------------------------------------------------------


@dataclass(frozen=True)
class JournalInfo:
    """A hot rollback journal: its page size and the page-1 image it would restore."""

    page_size: int
    page1: tuple[int, int] | None  #: (application_id, user_version) or None if no page 1


def hot_journal(path: str, main_path: str) -> JournalInfo | None:
    """``PATH-journal`` as SQLite's ``hasHotJournal`` sees it: present, non-empty, a
    non-zero first byte, and no process holding the main file's RESERVED lock (a
    writer in the middle of a transaction). None if it is not hot. Its segments (a
    header, then ``nRec`` records of page number, page, checksum) are walked as
    SQLite's playback does, for the image of page 1 it would restore."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fail(path, f"cannot read it: {exc.strerror or exc}") from None
    if not data or data[0] == 0 or _locked(main_path, _RESERVED_BYTE):
        return None
    if not data.startswith(_JOURNAL_MAGIC) or len(data) < 28:
        return JournalInfo(0, None)  # SQLite plays nothing back from it
    sector, pgsz = struct.unpack(">II", data[20:28])
    if not sector or pgsz < 512 or pgsz & (pgsz - 1):
        return JournalInfo(0, None)
    off = 0
    while data[off : off + 8] == _JOURNAL_MAGIC and off + 28 <= len(data):
        n_rec = struct.unpack(">I", data[off + 8 : off + 12])[0]
        rec = off + sector
        if n_rec == 0xFFFFFFFF:
            n_rec = (len(data) - rec) // (pgsz + 8)
        for _ in range(n_rec):
            if rec + 4 + pgsz > len(data):
                break
            if struct.unpack(">I", data[rec : rec + 4])[0] == 1:
                return JournalInfo(pgsz, _ident(data[rec + 4 : rec + 4 + pgsz]))
            rec += pgsz + 8
        off = -(-rec // sector) * sector
    return JournalInfo(pgsz, None)


# -- locks -------------------------------------------------------------------------------


def _locked(path: str, offset: int) -> bool:
    """Whether another process holds a POSIX lock on byte ``offset`` of ``path``
    (``F_GETLK``; Linux and macOS layouts of ``struct flock``; elsewhere: assume so)."""
    if fcntl is None:  # pragma: no cover - not a POSIX system
        return True
    if sys.platform.startswith("linux"):
        fmt, args = "hhqqi", (fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
    elif sys.platform == "darwin":
        fmt, args = "qqihh", (offset, 1, 0, fcntl.F_WRLCK, os.SEEK_SET)
    else:  # pragma: no cover - other platforms: be conservative
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        raw = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(fmt, *args) + bytes(16))
    finally:
        os.close(fd)
    fields = struct.unpack(fmt, raw[: struct.calcsize(fmt)])
    l_type = fields[0] if fmt == "hhqqi" else fields[3]
    return bool(l_type != fcntl.F_UNLCK)


def in_use(path: str) -> bool:
    """Whether another process has the store ``path`` open in WAL mode: every live
    connection holds a shared lock on byte 128 of ``PATH-shm``."""
    return os.path.exists(f"{path}-shm") and _locked(f"{path}-shm", _SHM_DMS)


def lock_holders(path: str) -> list[int]:
    """The ids of other processes holding SQLite's write locks on the store ``path`` (the
    WAL write lock in ``-shm``, or the main file's RESERVED/PENDING/EXCLUSIVE bytes),
    read from ``/proc/locks`` without opening the files (Linux; elsewhere ``[]``)."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    inodes = {}
    for name, lo, hi in (
        (f"{path}-shm", _SHM_WRITE_LOCK, _SHM_WRITE_LOCK),
        (path, 0x40000000, 0x40000001),
    ):
        try:
            st = os.stat(name)
        except OSError:
            continue
        inodes[st.st_ino] = (lo, hi)
    pids = []
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 8 or parts[1] != "POSIX" or parts[3] != "WRITE":
            continue
        try:
            pid, ino = int(parts[4]), int(parts[5].rsplit(":", 1)[1])
            start, end = int(parts[6]), (2**63 if parts[7] == "EOF" else int(parts[7]))
        except ValueError:
            continue
        if ino in inodes and pid != os.getpid():
            lo, hi = inodes[ino]
            if start <= hi and end >= lo and pid not in pids:
                pids.append(pid)
    return pids


# -- errors ------------------------------------------------------------------------------


def _who(path: str) -> str:
    pids = lock_holders(path)
    if not pids:
        return "another connection"
    names = []
    for pid in pids[:3]:
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
                names.append(f"process {pid} ({fh.read().strip()})")
        except OSError:
            names.append(f"process {pid}")
    return ", ".join(names)


def db_error(
    path: str, exc: BaseException, busy_timeout_ms: int | None = None
) -> HistoryStoreError:
    """A one-line :class:`HistoryStoreError` for an ``sqlite3`` or OS error, with its cause."""
    if isinstance(exc, HistoryStoreError):
        return exc
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return fail(path, f"{exc.strerror or exc}")
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    msg = one_line(str(exc))
    if name.startswith("SQLITE_BUSY") or msg.startswith("database is locked"):
        wait = "" if busy_timeout_ms is None else f" busy_timeout_ms={busy_timeout_ms}"
        return fail(
            path,
            f"database is locked: {_who(path)} held a lock on it longer than"
            f" the{wait} wait; try again when it is done, or open the store with"
            " a larger busy_timeout_ms",
        )
    hint = ""
    if name == "SQLITE_FULL":
        hint = "the disk is full: free space; this transaction was not stored"
    elif name.startswith("SQLITE_IOERR"):
        hint = (
            f"{name}: a read or write failed: the disk may be full, a file size limit"
            " ('ulimit -f') reached, or the device failing; this transaction was not"
            " stored"
        )
    elif name == "SQLITE_READONLY_DIRECTORY":
        hint = "its directory is not writable"
    elif name == "SQLITE_READONLY_ROLLBACK":
        hint = "a killed writer left a hot journal that only a writer can roll back"
    elif name.startswith("SQLITE_READONLY"):
        hint = f"{name}: the file, its directory or the file system is read-only"
    elif name.startswith("SQLITE_CANTOPEN"):
        hint = "the file or its directory cannot be opened (missing, or no permission)"
    return fail(path, f"{msg} ({hint})" if hint else msg)
