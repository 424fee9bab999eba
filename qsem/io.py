"""Atomic file writes and JSON / JSON Lines helpers.

Every file qsem writes into a run directory goes through :func:`atomic_write`:
the data go to a temporary file in the same directory, are flushed and fsync'ed,
and the temporary file is renamed over the target with :func:`os.replace`. A
reader (or a run killed at any instant) therefore sees either the old file or
the new one, never a partial one; a failed write leaves no temporary behind.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_json(d / "a.json", {"x": 1.5, "y": float("nan")})
>>> read_json(d / "a.json")
{'x': 1.5, 'y': None}
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from qsem.errors import QsemError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "dumps_json",
    "jsonable",
    "read_json",
    "read_jsonl",
    "write_json",
    "write_jsonl",
]

_UMASK: int | None = None


def _umask() -> int:
    """The process umask (read once; ``os.umask`` can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        current = os.umask(0o022)
        os.umask(current)
        _UMASK = current
    return _UMASK


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX; a no-op where directories cannot be opened)."""
    if os.name != "posix":
        return
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file atomically: ``write(fh)`` fills a temporary file that then replaces ``path``.

    If ``write`` (or the flush, fsync or rename) fails, ``path`` keeps its old
    content (or stays absent) and the temporary file is removed.
    """
    target = Path(path)
    directory = target.parent
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # a read-only or missing directory: name the target, not the temp file
        raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            # name the file the user knows (a full disk reports no name, or the temporary one)
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    _fsync_dir(directory)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""

    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data.

    Tensors and NumPy values of size 1 become Python numbers, larger ones lists;
    tuples become lists, paths strings; non-finite floats become ``None`` (strict
    JSON has no NaN / Infinity). Anything else that JSON cannot hold raises
    :class:`~qsem.errors.QsemError` naming where it sits.
    """
    return _jsonable(value, "value")


def _jsonable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise QsemError(f"{where}: JSON keys must be strings, got {k!r}")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # torch tensors, numpy arrays and scalars
    if callable(tolist) and not isinstance(value, type):
        if "complex" in str(getattr(value, "dtype", "")):
            raise QsemError(f"{where}: complex values cannot be written as JSON")
        return _jsonable(tolist(), where)
    raise QsemError(f"{where}: a {type(value).__name__} cannot be written as JSON")


def dumps_json(value: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (see :func:`jsonable`), keys in insertion order."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False, ensure_ascii=False)


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Atomically write ``value`` as indented JSON (serialised before the file is touched)."""
    atomic_write_text(path, dumps_json(value) + "\n")


def write_jsonl(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
    """Atomically write already serialised JSON lines (one object per line)."""
    atomic_write_text(path, "".join(line if line.endswith("\n") else line + "\n" for line in lines))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing or malformed file raises QsemError naming it."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise QsemError(f"{p}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QsemError(f"{p}: not valid JSON ({exc})") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON Lines file of objects; a malformed line raises QsemError naming it."""
    p = Path(path)
    out: list[dict[str, Any]] = []
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QsemError(f"{p}: no such file") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QsemError(f"{p}: line {number} is not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise QsemError(f"{p}: line {number} is not a JSON object")
        out.append(obj)
    return out


@contextmanager
def exclusive_lock(
    path: str | os.PathLike[str],
    busy: str,
    *,
    error: type[QsemError] = QsemError,
    remove: bool = False,
) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on the file ``path`` (created if missing).

    Another process holding it makes this raise ``error(busy)`` at once. The lock
    goes with the process (a killed holder leaves no stale lock, only the file);
    ``remove=True`` deletes the file on release. POSIX only; elsewhere a no-op.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = Path(path)
    with lock_path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise error(busy) from None
        try:
            yield
        finally:
            if remove:
                lock_path.unlink(missing_ok=True)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether another process holds :func:`exclusive_lock` on ``path`` now (False if no file)."""
    if not Path(path).exists():
        return False
    try:
        with exclusive_lock(path, "busy"):
            return False
    except QsemError:
        return True
