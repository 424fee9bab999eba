"""The end of a run, made safe against a kill at any moment.

A run finishes in this order, each step an atomic rename:

1. ``results.json`` (from here on the run's results exist),
2. ``run_info.json`` with status ``completed``,
3. ``report.html`` (written after, so it is newer than ``run_info.json``),
4. the ``.lock`` file removed.

A kill before step 1 leaves an unfinished run that ``--resume`` continues from
its checkpoint. A kill after step 1 leaves a run whose finish is incomplete —
status not ``completed``, or ``report.html`` missing or older than
``run_info.json``, or a ``.NAME.*.tmp`` file of an interrupted atomic write, or
a ``.lock`` file — and ``--resume`` completes it with :func:`complete_finish`
(under the run's lock, so no writer is active). A run is finished when none of
these holds (:func:`unfinished_parts` is empty).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qsem.io import write_json

from .info import now_iso
from .safety import ARCHIVE_DIR

__all__ = ["complete_finish", "stale_temp_files", "unfinished_parts"]

RESULTS_FILE = "results.json"
RUN_INFO_FILE = "run_info.json"
REPORT_FILE = "report.html"


def stale_temp_files(out_dir: Path) -> list[Path]:
    """Temporary files ``.NAME.*.tmp`` of atomic writes that a kill interrupted
    (anywhere in the run directory but ``archive/``)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(out_dir):
        if Path(root) == out_dir and ARCHIVE_DIR in dirs:
            dirs.remove(ARCHIVE_DIR)
        found.extend(
            Path(root) / name for name in files if name.startswith(".") and name.endswith(".tmp")
        )
    return sorted(found)


def _report_stale(out_dir: Path) -> bool:
    report = out_dir / REPORT_FILE
    if not report.exists():
        return True
    info = out_dir / RUN_INFO_FILE
    return info.exists() and report.stat().st_mtime_ns < info.stat().st_mtime_ns


def unfinished_parts(out_dir: Path, info: dict[str, Any], *, report: bool = True) -> list[str]:
    """What a run with ``results.json`` still lacks to be finished (empty: nothing)."""
    parts = []
    if info.get("status") != "completed":
        parts.append(f"status {info.get('status')!r}")
    if report and _report_stale(out_dir):
        parts.append(REPORT_FILE)
    if stale_temp_files(out_dir):
        parts.append("temporary files")
    return parts


def _iso_of_mtime(path: Path) -> str:
    stamp = _dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    return stamp.isoformat(timespec="seconds")


def _seconds_between(start: Any, end: str) -> float | None:
    try:
        return (
            _dt.datetime.fromisoformat(end) - _dt.datetime.fromisoformat(str(start))
        ).total_seconds()
    except ValueError:
        return None


def complete_finish(
    out_dir: Path,
    info: dict[str, Any],
    *,
    report: bool,
    write_report: Callable[[Path], None],
) -> list[str]:
    """Complete the finish of a run that has ``results.json`` (call it under the run's lock).

    Removes stale temporary files, marks the run (and its last session)
    ``completed`` with the end time of ``results.json``, and (with ``report``)
    rewrites ``report.html``. Returns what was repaired (empty: it was finished).
    """
    parts = unfinished_parts(out_dir, info, report=report)
    for path in stale_temp_files(out_dir):
        path.unlink(missing_ok=True)
    if info.get("status") != "completed":
        end = _iso_of_mtime(out_dir / RESULTS_FILE)
        sessions = [s for s in info.get("sessions", []) if isinstance(s, dict)]
        if sessions and sessions[-1].get("status") != "completed":
            last = sessions[-1]
            wall = _seconds_between(last.get("start_time"), end)
            last.update(end_time=end, status="completed")
            if last.get("wall_time_s") is None and wall is not None:
                last["wall_time_s"] = round(max(wall, 0.0), 3)
        total = sum(float(s.get("wall_time_s") or 0.0) for s in sessions)
        info.update(status="completed", end_time=end, wall_time_s=round(total, 3), error=None)
        info["finish_completed"] = now_iso()
        write_json(out_dir / RUN_INFO_FILE, info)
    if report and (parts or _report_stale(out_dir)):
        write_report(out_dir)
    return parts
