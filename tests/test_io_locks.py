"""qsem.io.exclusive_lock / is_locked: the one lock of run and sweep directories."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qsem.circuits.errors import QsemError
from qsem.io import exclusive_lock, is_locked
from qsem.runner.core import RunDirError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")


def test_a_held_lock_is_seen_and_refuses_a_second_holder(tmp_path: Path) -> None:
    # flock belongs to an open file description: a second open() in the same
    # process contends like another process would
    lock = tmp_path / ".lock"
    assert not is_locked(lock)  # no file: nobody holds it
    with exclusive_lock(lock, "busy here"):
        assert lock.exists()
        assert is_locked(lock)
        with pytest.raises(QsemError, match=r"^busy here$"), exclusive_lock(lock, "busy here"):
            pass
        with pytest.raises(RunDirError), exclusive_lock(lock, "x", error=RunDirError):
            pass
    assert lock.exists()  # remove=False keeps the file
    assert not is_locked(lock)


def test_remove_deletes_the_file_on_release(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    with exclusive_lock(lock, "busy", remove=True):
        assert is_locked(lock)
    assert not lock.exists()
    assert not is_locked(lock)
