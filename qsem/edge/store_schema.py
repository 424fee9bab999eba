"""The schema of a history store, its validation, migrations and atomic creation.

* :data:`SCHEMA_VERSION` and the frozen version-1 schema; a new file is created at
  version 1 and migrated, so the migration path runs on every new file;
* :func:`validate`: refuse a database unless it is a store this code can read (its
  ``application_id``, one integer schema version, every table and column of that
  version, and optionally ``PRAGMA integrity_check``);
* :func:`upgrade`: migrate, in one ``BEGIN IMMEDIATE`` transaction that reads the
  version itself (concurrent openers of an old file wait; only the first migrates);
* :func:`create`: build a new store beside its path and link it into place in one step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3

from .store_files import APPLICATION_ID, db_error, fail

__all__ = ["SCHEMA_VERSION", "clean_stale", "create", "read_version", "upgrade", "validate"]

#: the temporary name a new store is built under: ``.NAME.qsem-new.PID.RANDOM``.
_TMP_TAG = "qsem-new"

#: the schema version this code writes (and the newest it reads).
SCHEMA_VERSION = 2

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
_V1_COLUMNS = {
    "schema_version": {"version"},
    "users": {"user", "created"},
    "steps": {
        "id",
        "user",
        "step",
        "phi_dtype",
        "phi_shape",
        "phi",
        "dphi",
        "label",
        "query",
        "checksum",
    },
    "events": {"id", "user", "step", "value", "detector", "checksum"},
}
#: the tables (and columns) a store of each version has.
_COLUMNS = {
    1: _V1_COLUMNS,
    2: {
        **_V1_COLUMNS,
        "users": {"user", "created", "theta"},
        "params": {"user", "name", "dtype", "shape", "data", "checksum", "updated"},
    },
}

#: SQL and PRAGMA statements, one name each. They are module constants like the schema:
#: keywords, pragma, table and column names are case-insensitive in SQLite, so a
#: case-changing mutant of any of them is equivalent (docs/testing.md, "store_schema").
_READ_VERSION = "SELECT version, typeof(version) FROM schema_version"
_TABLES = "SELECT name FROM sqlite_master WHERE type='table'"
_APPLICATION_ID = "PRAGMA application_id"
_USER_VERSION = "PRAGMA user_version"
_INTEGRITY_CHECK = "PRAGMA integrity_check"
_SYNCHRONOUS_FULL = "PRAGMA synchronous = FULL"
_TO_WAL = "PRAGMA journal_mode = WAL"
_BEGIN = "BEGIN"
_BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
_COMMIT = "COMMIT"
_ROLLBACK = "ROLLBACK"
#: ``open`` flag for a folder: ``O_DIRECTORY`` where the OS has it (every POSIX system)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def read_version(conn: sqlite3.Connection, path: str) -> int:
    """The version in ``schema_version``: exactly one row holding an integer."""
    rows = conn.execute(_READ_VERSION).fetchall()
    if len(rows) != 1:
        raise fail(path, f"invalid schema_version table ({len(rows)} rows, expected 1)")
    value, kind = rows[0]
    if kind != "integer":
        raise fail(path, f"invalid schema version {value!r} (not an integer)")
    return int(value)


def validate(conn: sqlite3.Connection, path: str, check: bool) -> int:
    """Refuse a connection's database unless it is a qsem store this code can read: its
    ``application_id``, a valid schema version, every table and column of that version,
    and (``check``) ``PRAGMA integrity_check``. Returns the schema version.

    Every read is made in one read transaction, so all of them see one snapshot: another
    process migrating the file between two reads cannot make it look damaged.
    """
    own = not conn.in_transaction
    if own:
        conn.execute(_BEGIN)
    try:
        return _validate(conn, path, check)
    finally:
        if own and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(_ROLLBACK)  # it only read


def _validate(conn: sqlite3.Connection, path: str, check: bool) -> int:
    tables = {r[0] for r in conn.execute(_TABLES)}
    app = conn.execute(_APPLICATION_ID).fetchone()[0]
    if app != APPLICATION_ID:
        if not tables and app == 0:
            raise fail(
                path,
                "an empty SQLite database that is not a qsem history store; "
                "refusing to take it over",
            )
        raise fail(
            path,
            f"a foreign SQLite database (application_id {app:#x}, a qsem "
            f"history store has {APPLICATION_ID:#x})",
        )
    if "schema_version" not in tables:
        raise fail(path, "no schema_version table")
    version = read_version(conn, path)
    if version > SCHEMA_VERSION:
        raise fail(
            path,
            f"schema version {version} is newer than this qsem knows "
            f"({SCHEMA_VERSION}); upgrade qsem to read it",
        )
    if version < 1:
        raise fail(path, f"invalid schema version {version}")
    for table, cols in _COLUMNS[version].items():
        if table not in tables:
            raise fail(path, f"no table {table!r} (a version-{version} store has it): damaged")
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if not cols <= have:
            raise fail(path, f"table {table!r} lacks column(s) {', '.join(sorted(cols - have))}")
    if check:
        rows = [r[0] for r in conn.execute(_INTEGRITY_CHECK)]
        if rows != ["ok"]:
            raise fail(path, f"corrupt ({'; '.join(rows[:3])})")
    return version


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    for v in range(version, SCHEMA_VERSION):
        for stmt in _MIGRATIONS[v]:
            conn.execute(stmt)


def upgrade(conn: sqlite3.Connection, path: str) -> int:
    """Migrate to :data:`SCHEMA_VERSION` and give an old store its random id, in ONE
    ``BEGIN IMMEDIATE`` transaction that reads the version itself: concurrent openers
    of an old file wait for each other, and only the first migrates it. A current store
    takes no lock (so opening a writer does not wait for another process's transaction)."""
    current = read_version(conn, path) == SCHEMA_VERSION
    if current and conn.execute(_USER_VERSION).fetchone()[0] != 0:
        return SCHEMA_VERSION
    conn.execute(_BEGIN_IMMEDIATE)
    try:
        version = read_version(conn, path)
        if version > SCHEMA_VERSION:
            raise fail(path, f"schema version {version} is newer than this qsem knows")
        _migrate(conn, version)
        if conn.execute(_USER_VERSION).fetchone()[0] == 0:
            conn.execute(f"PRAGMA user_version = {_new_id()}")
        conn.execute(_COMMIT)
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(_ROLLBACK)
        raise
    return SCHEMA_VERSION


def _new_id() -> int:
    return secrets.randbits(31) | 1


# -- creating ----------------------------------------------------------------------------


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (_O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a directory
        if not directory or exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _remove(tmp: str) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.unlink(tmp + suffix)


def clean_stale(path: str) -> None:
    """Remove the temporary files of creators of ``path`` that no longer run (killed)."""
    folder, base = os.path.split(os.path.abspath(path))
    prefix = f".{base}.{_TMP_TAG}."
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        except OSError:
            continue  # alive (another user's process)


def create(path: str) -> None:
    """Create the store ``path`` atomically: built beside it as ``.NAME.qsem-new.PID.X``
    (schema v1, migrated to v2, ``application_id``, a random id, WAL mode), synced, then
    hard-linked to ``path`` (fails if the path exists: another creator won, fine) and
    the folder synced. Where hard links are not supported, renamed if ``path`` is absent."""
    folder, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise fail(path, f"cannot create it: no such directory {folder}")
    clean_stale(path)
    tmp = os.path.join(folder, f".{base}.{_TMP_TAG}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute(_SYNCHRONOUS_FULL)
            conn.execute(_BEGIN_IMMEDIATE)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_new_id()}")
            for stmt in _SCHEMA_V1:
                conn.execute(stmt)
            conn.execute(_COMMIT)
            conn.execute(_BEGIN_IMMEDIATE)
            _migrate(conn, 1)
            conn.execute(_COMMIT)
            # WAL before anyone can see the file; where SQLite cannot switch, every writer
            # that opens the store refuses it (store_open._to_wal, the one home of that rule)
            conn.execute(_TO_WAL)
        finally:
            conn.close()
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process created it first: use theirs
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if os.path.exists(path):
                return
            os.replace(tmp, path)  # no hard links here: a small race with another creator
        _fsync(folder, directory=True)
    except (sqlite3.Error, OSError) as exc:
        raise (
            db_error(path, exc)
            if isinstance(exc, sqlite3.Error)
            else fail(path, f"cannot create it: {exc.strerror or exc}")
        ) from None
    finally:
        _remove(tmp)
