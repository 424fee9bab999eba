"""The history store's helper modules, pinned where mutation testing found them loose.

``qsem.edge.store_files`` (byte-level reads of the database header, the WAL and the
rollback journal; error messages), ``qsem.edge.store_schema`` (validation, migration,
creation) and ``qsem.edge.store_open`` (the order of opening) are checked against
references written here: SQLite's WAL checksum as its C loop computes it, headers
and logs written by SQLite itself and read back with ``PRAGMA``, messages spelled out
in full (docs/testing.md lists the mutants each test kills).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import struct
import time
from pathlib import Path

import pytest

from qsem.edge import APPLICATION_ID, HistoryStoreError
from qsem.edge.store_files import (
    db_error,
    fail,
    one_line,
    read_header,
    wal_checksum,
    wal_frames,
)


def _checksum_reference(data: bytes, big_endian: bool, s1: int, s2: int) -> tuple[int, int]:
    """SQLite's ``walChecksumBytes``: over 32-bit word pairs, s1 += x0 + s2; s2 += x1 + s1."""
    fmt = ">" if big_endian else "<"
    words = struct.unpack(f"{fmt}{len(data) // 4}I", data)
    for x0, x1 in zip(words[0::2], words[1::2], strict=True):
        s1 = (s1 + x0 + s2) & 0xFFFFFFFF
        s2 = (s2 + x1 + s1) & 0xFFFFFFFF
    return s1, s2


@pytest.mark.parametrize("n_bytes", [0, 8, 24, 4096, 4096 + 24])
@pytest.mark.parametrize("big_endian", [True, False])
def test_wal_checksum_against_sqlites_loop(n_bytes: int, big_endian: bool) -> None:
    rng = random.Random(n_bytes * 2 + big_endian)
    for start in [(0, 0), (1, 2), (0xFFFFFFFF, 0xFFFFFFFE)]:
        data = bytes(rng.getrandbits(8) for _ in range(n_bytes))
        assert wal_checksum(data, big_endian, *start) == _checksum_reference(
            data, big_endian, *start
        )
    ones = b"\xff" * n_bytes  # every product at its largest: wrap-around mod 2^32
    assert wal_checksum(ones, big_endian) == _checksum_reference(ones, big_endian, 0, 0)


def test_one_line_and_fail() -> None:
    assert one_line("  a\n\tb  \r\n c ") == "a b c"
    assert one_line("x" * 400) == "x" * 400  # at the limit: kept whole
    assert one_line("x" * 401) == "x" * 397 + "..."
    assert one_line("abcdef", limit=5) == "ab..."
    err = fail("/p/h.sqlite", "bad\nthing")
    assert type(err) is HistoryStoreError
    assert str(err) == "history store /p/h.sqlite: bad thing"
    long = str(fail("p", "y" * 700))
    assert len(long) == 600 and long.endswith("y...") and long.startswith("history store p: y")


def _sqlite_error(name: str, message: str = "disk I/O error") -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    "name, hint",
    [
        ("SQLITE_FULL", "the disk is full: free space; this transaction was not stored"),
        (
            "SQLITE_IOERR_WRITE",
            "SQLITE_IOERR_WRITE: a read or write failed: the disk may be full, a file size"
            " limit ('ulimit -f') reached, or the device failing; this transaction was not"
            " stored",
        ),
        ("SQLITE_READONLY_DIRECTORY", "its directory is not writable"),
        (
            "SQLITE_READONLY_ROLLBACK",
            "a killed writer left a hot journal that only a writer can roll back",
        ),
        (
            "SQLITE_READONLY_DBMOVED",
            "SQLITE_READONLY_DBMOVED: the file, its directory or the file system is read-only",
        ),
        (
            "SQLITE_CANTOPEN_ISDIR",
            "the file or its directory cannot be opened (missing, or no permission)",
        ),
    ],
)
def test_db_error_hints(name: str, hint: str) -> None:
    err = db_error("/s/h", _sqlite_error(name, "disk\nI/O error"))
    assert type(err) is HistoryStoreError
    assert str(err) == f"history store /s/h: disk I/O error ({hint})"


def test_db_error_without_a_hint_busy_os_errors_and_our_own(tmp_path: Path) -> None:
    assert str(db_error("p", _sqlite_error("SQLITE_CORRUPT", "malformed"))) == (
        "history store p: malformed"
    )
    assert str(db_error("p", sqlite3.DatabaseError("no name"))) == "history store p: no name"
    path = str(tmp_path / "h")  # nobody holds a lock on it: "another connection"
    for exc in (_sqlite_error("SQLITE_BUSY_SNAPSHOT", "x"), sqlite3.OperationalError(
        "database is locked")):  # fmt: skip
        assert str(db_error(path, exc, 250)) == (
            f"history store {path}: database is locked: another connection held a lock on"
            " it longer than the busy_timeout_ms=250 wait; try again when it is done, or"
            " open the store with a larger busy_timeout_ms"
        )
    assert "longer than the wait;" in str(db_error(path, _sqlite_error("SQLITE_BUSY", "x")))
    os_err = OSError(28, "No space left on device")
    assert str(db_error("p", os_err)) == "history store p: No space left on device"
    assert str(db_error("p", OSError("plain"))) == "history store p: plain"
    own = HistoryStoreError("history store p: mine")
    assert db_error("q", own) is own


def _plain_db(path: Path, page_size: int, rows: int, wal: bool) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA page_size = {page_size}")
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    con.execute("PRAGMA user_version = 12345")
    if wal:
        assert con.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("CREATE TABLE t (x BLOB)")
    for _ in range(rows):
        con.execute("INSERT INTO t VALUES (zeroblob(3000))")
    return con


@pytest.mark.parametrize("page_size, wal", [(1024, False), (4096, True), (65536, False)])
def test_read_header_against_pragmas(tmp_path: Path, page_size: int, wal: bool) -> None:
    path = tmp_path / "d.sqlite"
    con = _plain_db(path, page_size, 5, wal)
    if wal:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    h = read_header(str(path), False)
    assert (h.size, h.page_size, h.pages) == (path.stat().st_size, page_size, pages)
    assert (h.app_id, h.store_id, h.wal_mode) == (APPLICATION_ID, 12345, wal)


def _header_refusal(path: str) -> str:
    with pytest.raises(HistoryStoreError) as info:
        read_header(path, False)
    return str(info.value)


def test_read_header_refusals(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    _plain_db(path, 4096, 5, False).close()
    good = path.read_bytes()
    path.write_bytes(b"")
    assert _header_refusal(str(path)) == (
        f"history store {path}: empty file, not a qsem history store (an older qsem killed"
        " while creating a store left such files: delete it to start afresh)"
    )
    path.write_bytes(b"x" + good[1:])
    assert _header_refusal(str(path)) == (
        f"history store {path}: not an SQLite database (a foreign file), refusing to use it"
    )
    path.write_bytes(good[:99])
    assert _header_refusal(str(path)) == (
        f"history store {path}: truncated (99 bytes, no full header)"
    )
    path.write_bytes(good[:8192])
    pages = len(good) // 4096
    assert _header_refusal(str(path)) == (
        f"history store {path}: truncated (8192 bytes, its header says {pages} pages of 4096 bytes)"
    )
    assert read_header(str(path), True).pages == pages  # a WAL to replay: SQLite recovers it
    missing = tmp_path / "none"
    assert _header_refusal(str(missing)) == (
        f"history store {missing}: cannot read it: No such file or directory"
    )


def _frame_count(wal: Path, page_size: int) -> int:
    return (wal.stat().st_size - 32) // (24 + page_size)


def test_wal_frames_of_a_log_sqlite_wrote(tmp_path: Path) -> None:
    """Committed frames and the page-1 images in a WAL that SQLite itself wrote."""
    path = tmp_path / "d.sqlite"
    con = _plain_db(path, 1024, 4, True)
    con.execute("PRAGMA user_version = 777")  # page 1 again, in its own commit
    wal = Path(f"{path}-wal")
    info = wal_frames(str(wal))
    assert info.page_size == 1024
    assert info.committed == _frame_count(wal, 1024) > 4
    assert info.page1[0] == (APPLICATION_ID, 12345) and info.page1[-1] == (APPLICATION_ID, 777)
    data = wal.read_bytes()
    frame = 24 + 1024
    # the last frame is the commit of user_version 777; damage it: SQLite stops before it
    wal.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    cut = wal_frames(str(wal))
    assert cut.committed < info.committed and (APPLICATION_ID, 777) not in cut.page1
    wal.write_bytes(data[: len(data) - frame // 2])  # a frame cut short
    assert wal_frames(str(wal)).committed == cut.committed
    wal.write_bytes(data[:31])  # no full header
    assert wal_frames(str(wal)) == type(info)(0, 0, ())
    bad_version = data[:4] + struct.pack(">I", 3007001) + data[8:]
    wal.write_bytes(bad_version)
    assert wal_frames(str(wal)).committed == 0
    con.close()


# -- the rollback journal, built byte by byte as SQLite's pager writes it ------------------

_MAGIC = bytes.fromhex("d9d505f920a163d7")


def _page(pgsz: int, app: int = 0, uv: int = 0) -> bytes:
    page = bytearray(pgsz)
    page[60:64] = struct.pack(">I", uv)
    page[68:72] = struct.pack(">I", app)
    return bytes(page)


def _segment(
    records: list[tuple[int, bytes]], sector: int, pgsz: int, n_rec: int | None = None
) -> bytes:
    """One journal segment: a header padded to ``sector``, then (page number, page, checksum)."""
    n = len(records) if n_rec is None else n_rec
    head = _MAGIC + struct.pack(">IIIII", n, 0, 3, sector, pgsz)
    body = b"".join(struct.pack(">I", no) + page + bytes(4) for no, page in records)
    return head.ljust(sector, b"\0") + body


def _journal(tmp_path: Path, data: bytes) -> tuple[str, str]:
    main = tmp_path / "d.sqlite"
    main.write_bytes(b"")
    log = tmp_path / "d.sqlite-journal"
    log.write_bytes(data)
    return str(log), str(main)


def test_hot_journal_walks_segments_for_page_one(tmp_path: Path) -> None:
    from qsem.edge.store_files import JournalInfo, hot_journal

    p1 = _page(512, APPLICATION_ID, 4242)
    one = _segment([(2, _page(512)), (1, p1)], 512, 512)
    assert hot_journal(*_journal(tmp_path, one)) == JournalInfo(512, (APPLICATION_ID, 4242))
    # page 1 in a second segment, which starts at the next sector boundary
    first = _segment([(3, _page(1024))], 512, 1024)
    pad = bytes(-len(first) % 512)
    two = first + pad + _segment([(1, _page(1024, 7, 8))], 512, 1024)
    assert hot_journal(*_journal(tmp_path, two)) == JournalInfo(1024, (7, 8))
    # nRec = 0xFFFFFFFF: as many records as the file holds
    every = _segment([(2, _page(512)), (1, p1)], 512, 512, n_rec=0xFFFFFFFF)
    assert hot_journal(*_journal(tmp_path, every)) == JournalInfo(512, (APPLICATION_ID, 4242))
    # no page 1 among the records, or its record cut short
    assert hot_journal(*_journal(tmp_path, _segment([(2, _page(512))], 512, 512))) == (
        JournalInfo(512, None)
    )
    assert hot_journal(*_journal(tmp_path, one[:-5])) == JournalInfo(512, None)
    # a count larger than the file: the records that are there are read
    more = _segment([(2, _page(512)), (1, p1)], 512, 512, n_rec=5)
    assert hot_journal(*_journal(tmp_path, more)) == JournalInfo(512, (APPLICATION_ID, 4242))


def test_hot_journal_that_sqlite_would_not_play_back(tmp_path: Path) -> None:
    from qsem.edge.store_files import JournalInfo, hot_journal

    good = _segment([(1, _page(512, 1, 2))], 512, 512)
    nothing = JournalInfo(0, None)
    assert hot_journal(*_journal(tmp_path, b"x" + good[1:])) == nothing  # no magic
    assert hot_journal(*_journal(tmp_path, good[:27])) == nothing  # no full header
    assert hot_journal(*_journal(tmp_path, good[:28])) == JournalInfo(512, None)
    for sector, pgsz in [(0, 512), (512, 256), (512, 768)]:
        bad = _MAGIC + struct.pack(">IIIII", 1, 0, 3, sector, pgsz) + good[28:]
        assert hot_journal(*_journal(tmp_path, bad)) == nothing, (sector, pgsz)
    # not hot: empty, a zero first byte (SQLite's "journal zeroed"), or absent
    assert hot_journal(*_journal(tmp_path, b"")) is None
    assert hot_journal(*_journal(tmp_path, b"\0" + good[1:])) is None
    assert hot_journal(str(tmp_path / "none-journal"), str(tmp_path / "none")) is None


# -- locks held by another process ---------------------------------------------------------


def _hold(path: Path, start: int, length: int, exclusive: bool, flock: bool = False) -> int:
    """Fork a child that holds a POSIX lock on ``length`` bytes of ``path`` from ``start``
    (0: to the end of the file; ``flock``: a BSD lock on the whole file instead) until it
    is killed; returns its pid once the lock is held."""
    import fcntl

    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child is killed
        try:
            os.close(ready_r)
            fd = os.open(path, os.O_RDWR)
            if flock:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, length, start)
            os.write(ready_w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    return pid


def _release(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="reads /proc/locks (Linux)")
def test_lock_holders_in_use_and_who(tmp_path: Path) -> None:
    from qsem.edge.store_files import JournalInfo, hot_journal, in_use, lock_holders

    path = tmp_path / "d.sqlite"
    path.write_bytes(bytes(4096))
    shm = Path(f"{path}-shm")
    assert lock_holders(str(path)) == [] and not in_use(str(path))  # no -shm file
    shm.write_bytes(bytes(256))
    assert not in_use(str(path))
    # a shared lock on the "dead man switch" byte 128 of -shm: another connection is open
    pid = _hold(shm, 128, 1, exclusive=False)
    try:
        assert in_use(str(path))
        assert lock_holders(str(path)) == []  # a read lock, not a write lock
    finally:
        _release(pid)
    assert not in_use(str(path))
    # the WAL write lock (byte 120 of -shm)
    pid = _hold(shm, 120, 1, exclusive=True)
    try:
        assert lock_holders(str(path)) == [pid]
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        err = db_error(str(path), sqlite3.OperationalError("database is locked"))
        assert f"database is locked: process {pid} ({comm}) held a lock" in str(err)
    finally:
        _release(pid)
    # the main file's RESERVED byte: a writer mid-transaction; its journal is not hot
    journal = Path(f"{path}-journal")
    journal.write_bytes(_segment([(1, _page(512, 1, 2))], 512, 512))
    assert hot_journal(str(journal), str(path)) == JournalInfo(512, (1, 2))
    pid = _hold(path, 0x40000001, 1, exclusive=True)
    try:
        assert lock_holders(str(path)) == [pid]
        assert hot_journal(str(journal), str(path)) is None
    finally:
        _release(pid)
    # exactly that byte: a lock on the next one, or on the next byte of -shm, is not it
    pid = _hold(path, 0x40000002, 1, exclusive=True)
    pid2 = _hold(shm, 129, 1, exclusive=False)
    try:
        assert hot_journal(str(journal), str(path)) == JournalInfo(512, (1, 2))
        assert not in_use(str(path))
    finally:
        _release(pid)
        _release(pid2)
    # no main file: nobody holds its lock, so the journal is hot
    assert hot_journal(str(journal), str(tmp_path / "gone")) == JournalInfo(512, (1, 2))
    # the PENDING byte, and two holders (each listed once)
    pid1 = _hold(path, 0x40000000, 1, exclusive=True)
    pid2 = _hold(shm, 120, 1, exclusive=True)
    try:
        assert sorted(lock_holders(str(path))) == sorted([pid1, pid2])
        text = str(db_error(str(path), sqlite3.OperationalError("database is locked")))
        assert f"process {pid1} (" in text and f"process {pid2} (" in text
        assert "), process " in text  # the holders, comma-separated
    finally:
        _release(pid1)
        _release(pid2)
    # locks on other bytes of the main file, and a BSD lock, are no write locks of SQLite's
    for start, length, flock in [(0x40000002, 1, False), (0, 1, False), (0x3FFFFFF0, 16, False),
                                 (0, 0, True)]:  # fmt: skip
        pid = _hold(path, start, length, exclusive=True, flock=flock)
        try:
            assert lock_holders(str(path)) == [], (start, length, flock)
        finally:
            _release(pid)
    # ranges that reach into SQLite's bytes: from the RESERVED byte on, and to the end of
    # the file ("EOF" in /proc/locks)
    for start, length in [(0x40000001, 16), (0x40000000, 0), (0x3FFFFFF0, 17)]:
        pid = _hold(path, start, length, exclusive=True)
        try:
            assert lock_holders(str(path)) == [pid], (start, length)
        finally:
            _release(pid)


# -- WAL headers and frames re-encoded by hand (checksums from the reference loop) ---------


def _reencode(
    data: bytes,
    *,
    magic: int | None = None,
    version: int | None = None,
    pgsz: int | None = None,
    salts: tuple[int, int] | None = None,
    zero_pgno: int | None = None,
) -> bytes:
    """A WAL SQLite wrote, with header fields replaced and every checksum recomputed (in
    the byte order the new magic says) so that only the replaced fields are wrong.
    Frame salts stay as written; ``zero_pgno``: that frame's page number set to 0."""
    m0, v0, p0, seq, s1, s2, _, _ = struct.unpack(">8I", data[:32])
    magic = m0 if magic is None else magic
    big = magic & 1 == 1
    hs1, hs2 = salts or (s1, s2)
    head = struct.pack(">6I", magic, v0 if version is None else version,
                       p0 if pgsz is None else pgsz, seq, hs1, hs2)  # fmt: skip
    c = _checksum_reference(head, big, 0, 0)
    out = bytearray(head + struct.pack(">2I", *c))
    off, i = 32, 0
    while off + 24 + p0 <= len(data):
        fhdr = bytearray(data[off : off + 24])
        page = data[off + 24 : off + 24 + p0]
        if i == zero_pgno:
            fhdr[0:4] = bytes(4)
        c = _checksum_reference(bytes(fhdr[:8]), big, *c)
        c = _checksum_reference(page, big, *c)
        fhdr[16:24] = struct.pack(">2I", *c)
        out += bytes(fhdr) + page
        off, i = off + 24 + p0, i + 1
    return bytes(out)


def _sqlite_wal(tmp_path: Path, page_size: int = 1024) -> tuple[sqlite3.Connection, Path]:
    path = tmp_path / f"w{page_size}.sqlite"
    con = _plain_db(path, page_size, 3, True)
    con.execute("PRAGMA user_version = 777")
    return con, Path(f"{path}-wal")


def test_wal_frames_in_either_byte_order_and_every_header_check(tmp_path: Path) -> None:
    from qsem.edge.store_files import WalInfo

    con, wal = _sqlite_wal(tmp_path)
    data = wal.read_bytes()
    want = wal_frames(str(wal))
    assert want.committed == _frame_count(wal, 1024)
    magic = struct.unpack(">I", data[:4])[0]
    for m in (0x377F0682, 0x377F0683):  # little- and big-endian checksums
        wal.write_bytes(_reencode(data, magic=m))
        assert wal_frames(str(wal)) == want, hex(m)
    other = magic ^ 1  # the checksums in the other byte order than the magic says
    wal.write_bytes(struct.pack(">I", other) + _reencode(data)[4:])
    assert wal_frames(str(wal)) == WalInfo(0, 0, ())
    none = WalInfo(0, 0, ())
    for bad in [
        {"magic": 0x377F0684},
        {"version": 3007001},
        {"pgsz": 1536},  # not a power of two
        {"pgsz": 256},
        {"pgsz": 131072},
    ]:
        wal.write_bytes(_reencode(data, **bad))  # type: ignore[arg-type]
        assert wal_frames(str(wal)) == none, bad
    # a valid header and no frame: nothing committed
    wal.write_bytes(_reencode(data)[:32])
    assert wal_frames(str(wal)) == WalInfo(1024, 0, ())
    # the header's salts changed (checksums recomputed): the frames are another log's
    wal.write_bytes(_reencode(data, salts=(1, 2)))
    assert wal_frames(str(wal)) == WalInfo(1024, 0, ())
    # a frame with page number 0 ends the log
    wal.write_bytes(_reencode(data, zero_pgno=0))
    assert wal_frames(str(wal)) == WalInfo(1024, 0, ())
    con.close()
    missing = tmp_path / "none-wal"
    with pytest.raises(HistoryStoreError) as info:
        wal_frames(str(missing))
    assert str(info.value) == f"history store {missing}: cannot read it: No such file or directory"


@pytest.mark.parametrize("page_size", [512, 65536])
def test_wal_frames_at_the_smallest_and_largest_page_size(tmp_path: Path, page_size: int) -> None:
    con, wal = _sqlite_wal(tmp_path, page_size)
    info = wal_frames(str(wal))
    assert info.page_size == page_size and info.committed == _frame_count(wal, page_size) > 0
    assert info.page1[-1] == (APPLICATION_ID, 777)
    con.close()


def test_pair_powers_and_a_cold_cache() -> None:
    """``M^j mod 2^32`` against integer matrix powers; the checksum with its cache of
    powers emptied (the cache is process-wide: a new process starts cold)."""
    from qsem.edge import store_files

    out = store_files._pair_powers(40)
    a, b, c, d = 1, 0, 0, 1
    for j in range(41):
        assert tuple(int(v) for v in out[j]) == (a, b, c, d), j
        a, b, c, d = [x & 0xFFFFFFFF for x in (a + c, b + d, a + 2 * c, b + 2 * d)]
    assert out.dtype == "uint64" and out.shape == (41, 4)
    data = bytes(range(256)) * 3
    store_files._POWERS.clear()
    assert wal_checksum(data, False, 5, 6) == _checksum_reference(data, False, 5, 6)
    assert wal_checksum(data, True, 5, 6) == _checksum_reference(data, True, 5, 6)


# -- store_schema: validation, migration, creation ----------------------------------------


def _schema_message(conn: sqlite3.Connection, path: str, check: bool = False) -> str:
    from qsem.edge.store_schema import validate

    with pytest.raises(HistoryStoreError) as info:
        validate(conn, path, check)
    return str(info.value)


def _v1(path: Path) -> sqlite3.Connection:
    from qsem.edge.store_schema import _SCHEMA_V1

    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for stmt in _SCHEMA_V1:
        con.execute(stmt)
    return con


def test_validate_each_refusal_in_full(tmp_path: Path) -> None:
    from qsem.edge.store_schema import SCHEMA_VERSION, validate

    path = tmp_path / "s.sqlite"
    con = _v1(path)
    p = str(path)
    assert validate(con, p, True) == 1 and not con.in_transaction  # a v1 store is readable
    con.execute("BEGIN")  # inside the caller's transaction: validate keeps it open
    assert validate(con, p, False) == 1 and con.in_transaction
    con.execute("ROLLBACK")
    con.execute(f"UPDATE schema_version SET version = {SCHEMA_VERSION}")
    assert _schema_message(con, p) == f"history store {p}: table 'users' lacks column(s) theta"
    con.execute("ALTER TABLE users ADD COLUMN theta REAL")
    assert _schema_message(con, p) == (
        f"history store {p}: no table 'params' (a version-2 store has it): damaged"
    )
    con.execute("CREATE TABLE params (user, name, dtype, shape, data, checksum, updated)")
    assert validate(con, p, True) == SCHEMA_VERSION
    con.execute("ALTER TABLE steps RENAME COLUMN query TO q")
    con.execute("ALTER TABLE steps RENAME COLUMN label TO l")
    assert (
        _schema_message(con, p) == f"history store {p}: table 'steps' lacks column(s) label, query"
    )
    for version, message in [
        (SCHEMA_VERSION + 1, f"schema version {SCHEMA_VERSION + 1} is newer than this qsem knows"
         f" ({SCHEMA_VERSION}); upgrade qsem to read it"),
        (0, "invalid schema version 0"),
        ("'two'", "invalid schema version 'two' (not an integer)"),
    ]:  # fmt: skip
        con.execute(f"UPDATE schema_version SET version = {version}")
        assert _schema_message(con, p) == f"history store {p}: {message}"
    con.execute("INSERT INTO schema_version VALUES (2)")
    assert _schema_message(con, p) == (
        f"history store {p}: invalid schema_version table (2 rows, expected 1)"
    )
    con.execute("PRAGMA application_id = 7")
    assert _schema_message(con, p) == (
        f"history store {p}: a foreign SQLite database (application_id 0x7, a qsem history"
        f" store has {APPLICATION_ID:#x})"
    )
    con.close()
    empty = tmp_path / "e.sqlite"
    con = sqlite3.connect(empty, isolation_level=None)
    con.execute("PRAGMA application_id = 9")  # no tables, but another application's id
    assert "a foreign SQLite database (application_id 0x9" in _schema_message(con, str(empty))
    con.close()


def test_upgrade_migrates_once_and_a_current_store_takes_no_lock(tmp_path: Path) -> None:
    from qsem.edge.store_schema import SCHEMA_VERSION, upgrade, validate

    path = tmp_path / "s.sqlite"
    con = _v1(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    assert upgrade(con, str(path)) == SCHEMA_VERSION
    ident = con.execute("PRAGMA user_version").fetchone()[0]
    assert ident % 2 == 1 and 0 < ident < 2**31  # a random odd 31-bit id
    assert validate(con, str(path), True) == SCHEMA_VERSION and not con.in_transaction
    cols = {r[1] for r in con.execute("PRAGMA table_info(params)")}
    assert cols == {"user", "name", "dtype", "shape", "data", "checksum", "updated"}
    # current, with an id: no write lock is taken (another writer's transaction is open)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    con.execute("PRAGMA busy_timeout = 0")
    assert upgrade(con, str(path)) == SCHEMA_VERSION
    assert con.execute("PRAGMA user_version").fetchone()[0] == ident  # kept
    other.execute("ROLLBACK")
    # current without an id (an old store): it gets one
    con.execute("PRAGMA user_version = 0")
    assert upgrade(con, str(path)) == SCHEMA_VERSION
    assert con.execute("PRAGMA user_version").fetchone()[0] % 2 == 1
    con.execute(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryStoreError) as info:
        upgrade(con, str(path))
    assert str(info.value) == (
        f"history store {path}: schema version {SCHEMA_VERSION + 1} is newer than this qsem knows"
    )
    assert not con.in_transaction  # rolled back
    con.close()


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_create_and_clean_stale(tmp_path: Path) -> None:
    from qsem.edge.store_schema import SCHEMA_VERSION, clean_stale, create

    path = tmp_path / "h.sqlite"
    dead = _dead_pid()
    stale = [f".h.sqlite.qsem-new.{dead}.ab12", f".h.sqlite.qsem-new.{dead}.ab12-journal"]
    kept = [
        f".h.sqlite.qsem-new.{os.getpid()}.cd34",  # this process: not stale
        ".h.sqlite.qsem-new.x1.ef56",  # not a pid
        f".other.qsem-new.{dead}.0000",  # another store's
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"t")
    clean_stale(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    for name in kept:
        (tmp_path / name).unlink()
    create(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite"]  # no temporary left
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    ident = con.execute("PRAGMA user_version").fetchone()[0]
    assert ident % 2 == 1
    con.close()
    before = path.read_bytes()
    create(str(path))  # another creator won: theirs is kept as it is
    assert path.read_bytes() == before
    nowhere = tmp_path / "no" / "h.sqlite"
    with pytest.raises(HistoryStoreError) as info:
        create(str(nowhere))
    assert str(info.value) == (
        f"history store {nowhere}: cannot create it: no such directory {nowhere.parent}"
    )
    clean_stale(str(nowhere))  # an unreadable folder: nothing to clean, no error


def test_header_wal_flag_needs_both_version_bytes(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    _plain_db(path, 4096, 1, False).close()
    data = bytearray(path.read_bytes())
    for b18, b19, wal in [(1, 1, False), (2, 2, True), (2, 1, False), (1, 2, False)]:
        data[18], data[19] = b18, b19
        path.write_bytes(bytes(data))
        assert read_header(str(path), False).wal_mode is wal, (b18, b19)


def test_hot_journal_stops_where_sqlites_playback_stops(tmp_path: Path) -> None:
    from qsem.edge.store_files import JournalInfo, hot_journal

    first = _segment([(2, _page(512))], 512, 512)
    first += bytes(-len(first) % 512)
    page1 = struct.pack(">I", 1) + _page(512, 5, 6) + bytes(4)
    # after the segment, no magic: what follows is not read, even if it looks like records
    garbage = (b"y" * 8 + struct.pack(">IIIII", 1, 0, 3, 512, 512)).ljust(512, b"\0") + page1
    assert hot_journal(*_journal(tmp_path, first + garbage)) == JournalInfo(512, None)
    # a second segment header cut short (magic, then fewer than 28 bytes)
    assert hot_journal(*_journal(tmp_path, first + _MAGIC + b"\0\0")) == JournalInfo(512, None)
    # a journal that cannot be read (a folder in its place)
    folder = tmp_path / "f.sqlite-journal"
    folder.mkdir()
    with pytest.raises(HistoryStoreError) as info:
        hot_journal(str(folder), str(tmp_path / "f.sqlite"))
    assert str(info.value) == f"history store {folder}: cannot read it: Is a directory"


def test_db_error_of_any_other_exception_is_its_message_on_one_line() -> None:
    assert str(db_error("p", ValueError("bad\n  value"))) == "history store p: bad value"


def test_clean_stale_leaves_a_live_creator_alone(tmp_path: Path) -> None:
    """A creator that still runs keeps its temporary file, and is sent no signal (the
    check is signal 0: any real signal would end the child, whose every signal is
    back at its default action, even in a run under nohup, which ignores SIGHUP)."""
    from qsem.edge.store_schema import clean_stale

    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - killed below
        for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_DFL)
        os.write(ready_w, b"r")
        time.sleep(60)
        os._exit(0)
    try:
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"r"  # the child's handlers are reset
        (tmp_path / f".h.sqlite.qsem-new.{pid}.ab12").write_bytes(b"t")
        clean_stale(str(tmp_path / "h.sqlite"))
        assert (tmp_path / f".h.sqlite.qsem-new.{pid}.ab12").exists()
        time.sleep(0.2)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still running
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_upgrade_names_the_path_of_a_bad_version_table(tmp_path: Path) -> None:
    from qsem.edge.store_schema import upgrade

    path = tmp_path / "s.sqlite"
    con = _v1(path)
    con.execute("INSERT INTO schema_version VALUES (1)")
    with pytest.raises(HistoryStoreError) as info:
        upgrade(con, str(path))
    assert str(info.value) == (
        f"history store {path}: invalid schema_version table (2 rows, expected 1)"
    )
    con.close()
