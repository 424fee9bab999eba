"""Creating and validating a history store (``qsem.edge.store_schema``), where mutation
testing found it loose.

Creation failures are real ones, not simulated: a path that cannot be linked (a
trailing slash), a folder nobody can create files in (``/proc``), a file size limit
(``RLIMIT_FSIZE``, in a forked child, as a full disk would). ``/proc`` is also a
folder whose ``fsync`` the kernel refuses with ``EINVAL``, as some file systems do
for folders. docs/testing.md lists the mutants each test kills.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from qsem.edge import HistoryStoreError
from qsem.edge.store_schema import _fsync, create

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")


def _in_child(work: Callable[[], str]) -> str:
    """``work()`` in a forked child (which inherits this process's code, mutants
    included); its result, or ``"raised: <message>"``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            out = work()
        except BaseException as exc:  # any failure is the report
            out = f"raised: {exc}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as fh:
        return fh.read().decode()


@linux
def test_a_folder_sync_tolerates_a_file_system_that_cannot_sync_folders(tmp_path: Path) -> None:
    """``fsync`` of ``/proc`` fails with ``EINVAL``: tolerated for a folder (the store is
    created anyway), raised for a file; a folder sync opens folders only."""
    _fsync("/proc", directory=True)
    with pytest.raises(OSError) as info:
        _fsync("/proc")
    assert info.value.errno == errno.EINVAL
    (tmp_path / "f").write_bytes(b"x")
    _fsync(str(tmp_path / "f"))
    _fsync(str(tmp_path), directory=True)
    with pytest.raises(NotADirectoryError):
        _fsync(str(tmp_path / "f"), directory=True)


def test_a_path_that_cannot_be_linked_is_refused_naming_it(tmp_path: Path) -> None:
    """The new file is built, then cannot be linked to ``PATH/`` (a trailing slash): the
    OS error, on one line with the path; no temporary file is left."""
    path = f"{tmp_path / 'h.sqlite'}/"
    with pytest.raises(HistoryStoreError) as info:
        create(path)
    assert str(info.value) == f"history store {path}: cannot create it: No such file or directory"
    assert list(tmp_path.iterdir()) == []


@linux
def test_a_folder_nobody_can_create_files_in_is_refused_naming_the_path() -> None:
    with pytest.raises(HistoryStoreError) as info:
        create("/proc/h.sqlite")
    assert str(info.value) == (
        "history store /proc/h.sqlite: unable to open database file (the file or its"
        " directory cannot be opened (missing, or no permission))"
    )


def test_a_file_size_limit_while_creating_leaves_nothing(tmp_path: Path) -> None:
    """Under ``ulimit -f`` 16 KiB (a disk that fills up) SQLite's write fails: SQLite's
    message with its hint, and neither the store nor its temporary file exists."""
    path = tmp_path / "h.sqlite"

    def limited() -> str:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.RLIM_INFINITY))
        create(str(path))
        return "created"

    assert _in_child(limited) == (
        f"raised: history store {path}: disk I/O error (SQLITE_IOERR_WRITE: a read or write"
        " failed: the disk may be full, a file size limit ('ulimit -f') reached, or the device"
        " failing; this transaction was not stored)"
    )
    assert list(tmp_path.iterdir()) == []


@linux
def test_the_temporary_file_is_built_beside_the_store(tmp_path: Path) -> None:
    """Created from a working folder where no file can be made (``/proc``): the new
    file is built in the store's folder, not the working one."""
    path = tmp_path / "h.sqlite"

    def elsewhere() -> str:
        os.chdir("/proc")
        create(str(path))
        return "created"

    assert _in_child(elsewhere) == "created"
    assert [p.name for p in tmp_path.iterdir()] == ["h.sqlite"]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_a_temporary_store_is_removed_with_its_logs(tmp_path: Path) -> None:
    """What a failed creator leaves: the file, its rollback journal, WAL and shared
    memory; a file of another name beside them stays."""
    from qsem.edge.store_schema import _remove

    tmp = tmp_path / ".h.sqlite.qsem-new.1.ab12"
    for suffix in ("", "-journal", "-wal", "-shm", "-other"):
        Path(f"{tmp}{suffix}").write_bytes(b"t")
    _remove(str(tmp))
    assert [p.name for p in tmp_path.iterdir()] == [f"{tmp.name}-other"]
    _remove(str(tmp))  # nothing left to remove: no error


def test_validate_reads_in_one_transaction_of_its_own(tmp_path: Path) -> None:
    """Outside a transaction, validation opens one read transaction for all its reads and
    rolls it back (a spy on the statements SQLite runs); inside the caller's, it opens
    none and leaves the caller's open."""
    from qsem.edge.store_schema import validate

    path = tmp_path / "h.sqlite"
    create(str(path))
    con = sqlite3.connect(path, isolation_level=None)
    ran: list[str] = []
    con.set_trace_callback(ran.append)
    assert validate(con, str(path), True) == 2 and not con.in_transaction
    assert ran[0].upper() == "BEGIN" and ran[-1].upper() == "ROLLBACK"
    assert not any(s.upper() in ("BEGIN", "ROLLBACK", "COMMIT") for s in ran[1:-1])
    ran.clear()
    con.execute("BEGIN")
    validate(con, str(path), False)
    assert con.in_transaction
    assert not any(s.upper() in ("BEGIN", "ROLLBACK", "COMMIT") for s in ran[1:])
    con.close()


def test_upgrade_rereads_the_version_inside_its_transaction(tmp_path: Path) -> None:
    """Another process changes ``schema_version`` between upgrade's first read and its
    ``BEGIN IMMEDIATE`` (a spy on the statements makes the change right then): the read
    inside the transaction sees it and names the path; nothing is migrated."""
    from test_store_modules_mutation import _v1

    from qsem.edge.store_schema import upgrade

    path = tmp_path / "s.sqlite"
    con = _v1(path)
    other = sqlite3.connect(path, isolation_level=None)

    def meanwhile(statement: str) -> None:
        if statement.upper() == "BEGIN IMMEDIATE":
            other.execute("INSERT INTO schema_version VALUES (1)")

    con.set_trace_callback(meanwhile)
    with pytest.raises(HistoryStoreError) as info:
        upgrade(con, str(path))
    con.set_trace_callback(None)
    assert str(info.value) == (
        f"history store {path}: invalid schema_version table (2 rows, expected 1)"
    )
    assert not con.in_transaction
    assert "params" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    other.close()
    con.close()


def test_new_ids_are_odd_31_bit_numbers() -> None:
    """An id is never 0 (0 marks a store without one): 64 draws, all odd, below 2^31."""
    from qsem.edge.store_schema import _new_id

    ids = [_new_id() for _ in range(64)]
    assert all(i % 2 == 1 and 0 < i < 2**31 for i in ids)
    assert len(set(ids)) > 1


def test_clean_stale_skips_a_name_it_cannot_remove(tmp_path: Path) -> None:
    """A dead creator's name that is a folder cannot be unlinked: left, no error; the
    dead creator's file beside it is removed."""
    from qsem.edge.store_schema import clean_stale

    pid = os.fork()
    if pid == 0:  # pragma: no cover - exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    (tmp_path / f".h.sqlite.qsem-new.{pid}.dir0").mkdir()
    (tmp_path / f".h.sqlite.qsem-new.{pid}.ab12").write_bytes(b"t")
    clean_stale(str(tmp_path / "h.sqlite"))
    assert [p.name for p in tmp_path.iterdir()] == [f".h.sqlite.qsem-new.{pid}.dir0"]


def _no_rollback(con: sqlite3.Connection) -> None:
    """Make SQLite refuse every ``ROLLBACK`` on ``con`` (an authorizer: a real SQLite
    error, ``not authorized``, as a failing rollback would raise)."""

    def authorize(action: int, arg1: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and (arg1 or "").upper() == "ROLLBACK":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    con.set_authorizer(authorize)


def test_a_failing_rollback_does_not_hide_what_validation_found(tmp_path: Path) -> None:
    """Validation's own read transaction ends in ``ROLLBACK``; when SQLite refuses it,
    the result stands: a store's version, or the refusal of a foreign database."""
    from qsem.edge.store_schema import validate

    path = tmp_path / "h.sqlite"
    create(str(path))
    con = sqlite3.connect(path, isolation_level=None)
    _no_rollback(con)
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        con.execute("BEGIN").execute("ROLLBACK")  # the fault is real
    con.set_authorizer(None)
    con.execute("ROLLBACK")
    _no_rollback(con)
    assert validate(con, str(path), True) == 2
    con.close()
    other = tmp_path / "other.db"
    con = sqlite3.connect(other, isolation_level=None)
    con.execute("CREATE TABLE t (x)")
    _no_rollback(con)
    with pytest.raises(HistoryStoreError) as info:
        validate(con, str(other), False)
    assert str(info.value) == (
        f"history store {other}: a foreign SQLite database (application_id 0x0, a qsem "
        "history store has 0x71534548)"
    )
    con.close()


def test_a_failing_rollback_does_not_hide_why_an_upgrade_failed(tmp_path: Path) -> None:
    """A file whose version is newer than this code knows is refused inside upgrade's
    transaction; a ``ROLLBACK`` SQLite refuses after that does not replace the refusal."""
    from test_store_modules_mutation import _v1

    from qsem.edge.store_schema import upgrade

    path = tmp_path / "s.sqlite"
    con = _v1(path)
    con.execute("UPDATE schema_version SET version = 3")
    _no_rollback(con)
    with pytest.raises(HistoryStoreError) as info:
        upgrade(con, str(path))
    assert str(info.value) == (
        f"history store {path}: schema version 3 is newer than this qsem knows"
    )
    con.close()


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="needs POSIX users")
def test_clean_stale_goes_on_past_a_creator_of_another_user() -> None:
    """As a user who may not signal pid 1 (``EPERM``: alive, someone else's), the names
    of pid 1 are left and every dead creator's name is still removed, in whatever order
    the folder lists them (eight of each, created alternately)."""
    folder = Path(tempfile.mkdtemp(prefix="qsem-stale-"))  # every user can enter it
    folder.chmod(0o777)
    try:
        _clean_stale_as_another_user(folder)
    finally:
        shutil.rmtree(folder)


def _clean_stale_as_another_user(folder: Path) -> None:
    from qsem.edge.store_schema import clean_stale

    clean_stale(str(folder / "h.sqlite"))  # nothing there yet: nothing happens
    pid = os.fork()
    if pid == 0:  # pragma: no cover - exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    alive = [f".h.sqlite.qsem-new.1.{k:04x}" for k in range(8)]
    dead = [f".h.sqlite.qsem-new.{pid}.{k:04x}" for k in range(8)]
    for a, d in zip(alive, dead, strict=True):
        (folder / a).write_bytes(b"t")
        (folder / d).write_bytes(b"t")

    def as_another_user() -> str:
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        clean_stale(str(folder / "h.sqlite"))
        return "cleaned"

    assert _in_child(as_another_user) == "cleaned"
    assert sorted(p.name for p in folder.iterdir()) == sorted(alive)


#: (AUDIT_ARCH, link syscall number or None, linkat syscall number) of the machines the
#: no-hard-link tests can filter (``/usr/include/linux/audit.h``, ``asm/unistd_64.h``)
_LINK_SYSCALLS = {"x86_64": (0xC000003E, 86, 265), "aarch64": (0xC00000B7, None, 37)}
no_links_here = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.uname().machine not in _LINK_SYSCALLS,
    reason="a seccomp filter for link(2) is written for Linux on x86_64 and aarch64",
)


def _refuse_hard_links(err: int) -> None:
    """From now on this process's ``link`` / ``linkat`` system calls fail with ``err``, as
    on a file system without hard links (vfat: ``EPERM``; some FUSE and network file
    systems: ``ENOTSUP``; a file at its link limit: ``EMLINK``). A seccomp filter made by
    the kernel: the code under test runs unchanged and sees the kernel's error."""
    import ctypes
    import struct

    arch, link, linkat = _LINK_SYSCALLS[os.uname().machine]

    def op(code: int, jt: int, jf: int, k: int) -> bytes:  # struct sock_filter
        return struct.pack("HBBI", code, jt, jf, k)

    load, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    allow, refuse = 0x7FFF0000, 0x00050000 | err  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    prog = b"".join(
        [
            op(load, 0, 0, 4),  # seccomp_data.arch
            op(jeq, 0, 3, arch),  # another ABI: allow
            op(load, 0, 0, 0),  # seccomp_data.nr
            op(jeq, 2, 0, linkat),
            op(jeq, 1, 0, link if link is not None else linkat),
            op(ret, 0, 0, allow),
            op(ret, 0, 0, refuse),
        ]
    )
    code = ctypes.create_string_buffer(prog)

    class Program(ctypes.Structure):  # struct sock_fprog
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    program = Program(len(prog) // 8, ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(program), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def _tables(path: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        pragmas = ("application_id", "journal_mode")
        meta = [con.execute(f"PRAGMA {p}").fetchone()[0] for p in pragmas]
    finally:
        con.close()
    return [*rows, ("pragmas", repr(meta))]


@no_links_here
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOTSUP, errno.EMLINK])
def test_where_hard_links_are_refused_the_new_store_is_renamed_into_place(
    tmp_path: Path, err: int
) -> None:
    """Where the kernel refuses ``link`` (a file system without hard links), the built
    file is renamed into place: the store is there, with the schema, ``application_id``
    and WAL mode of a store created where links work, and no temporary file is left."""
    reference = tmp_path / "reference.sqlite"
    create(str(reference))  # links work here (and mutmut sees this test call create)
    path = tmp_path / "h.sqlite"
    probe = tmp_path / "probe"

    def without_links() -> str:
        _refuse_hard_links(err)
        probe.write_bytes(b"p")
        try:
            os.link(probe, tmp_path / "probe2")
        except OSError as exc:
            assert exc.errno == err  # the filter is in place
        create(str(path))
        return "created"

    assert _in_child(without_links) == "created"
    assert _tables(path) == _tables(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite", "probe", "reference.sqlite"]


@no_links_here
def test_where_hard_links_are_refused_a_store_another_creator_placed_first_stays(
    tmp_path: Path,
) -> None:
    """Without hard links, the path can appear between the refused link and the rename
    (another creator won): that store stays as it is, and this creator's file goes."""
    path = tmp_path / "h.sqlite"
    create(str(path))
    before = path.read_bytes()

    def without_links() -> str:
        _refuse_hard_links(errno.EPERM)  # link() is refused before the path is looked at
        create(str(path))
        return "created"

    assert _in_child(without_links) == "created"
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["h.sqlite"]
