"""The sweep ledger: one SQLite file (``OUT/sweep.db``) with the state of every trial.

Only the driver writes it (workers report back to the driver), in WAL mode with
``synchronous=FULL``: every state change is one committed transaction, so a
driver or worker killed at any instant leaves every finished trial recorded.

States: ``pending`` (to run), ``running`` (handed to an executor), ``done``
(``results.json`` written), ``failed`` (the run raised; ``error`` says why).
A ``running`` row found when a sweep starts belongs to an interrupted driver
and goes back to ``pending``.

>>> import tempfile, pathlib
>>> led = Ledger(pathlib.Path(tempfile.mkdtemp()) / "sweep.db")
>>> led.meta("experiment", "demo")
'demo'
>>> led.close()
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsem.errors import LedgerError
from qsem.runner.info import now_iso

from .spec import Trial

__all__ = ["STATES", "Ledger", "LedgerError", "Row"]

STATES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    config_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    run_dir TEXT NOT NULL UNIQUE,
    point TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted TEXT,
    start_time TEXT,
    end_time TEXT,
    wall_s REAL,
    worker TEXT,
    error TEXT,
    PRIMARY KEY (config_hash, seed)
);
"""


@dataclass(frozen=True)
class Row:
    """One trial's row of the ledger."""

    config_hash: str
    seed: int
    run_dir: str
    point: dict[str, str]
    state: str
    attempts: int
    submitted: str | None
    start_time: str | None
    end_time: str | None
    wall_s: float | None
    worker: str | None
    error: str | None


class Ledger:
    """Trial states of one sweep directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"sweep ledger {self.path} cannot be used: {exc}") from None

    def close(self) -> None:
        self.db.close()

    # -- meta ------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        """The stored value of ``key``; stores ``default`` first if there is none."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0])
        if default is not None:
            self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, default))
        return default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- trials ----------------------------------------------------------------

    def add(self, trials: Iterable[Trial]) -> None:
        """Record new trials as pending (known ones are kept); a run directory that
        the ledger holds for another config is refused."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for t in trials:
                row = self.db.execute(
                    "SELECT config_hash, seed FROM trials WHERE run_dir = ?", (t.run_dir,)
                ).fetchone()
                if row is not None and (row[0], row[1]) != t.key:
                    raise LedgerError(
                        f"{t.run_dir} holds a trial of another config in this sweep (the fixed "
                        "overrides changed?); start a new sweep with another --out"
                    )
                self.db.execute(
                    "INSERT OR IGNORE INTO trials (config_hash, seed, run_dir, point, state) "
                    "VALUES (?, ?, ?, ?, 'pending')",
                    (t.config_hash, t.seed, t.run_dir, json.dumps(t.point)),
                )

    def rows(self) -> list[Row]:
        cur = self.db.execute(
            "SELECT config_hash, seed, run_dir, point, state, attempts, submitted, start_time, "
            "end_time, wall_s, worker, error FROM trials ORDER BY run_dir"
        )
        return [Row(r[0], r[1], r[2], json.loads(r[3]), *r[4:]) for r in cur.fetchall()]

    def get(self, key: tuple[str, int]) -> Row:
        return next(r for r in self.rows() if (r.config_hash, r.seed) == key)

    def _update(self, key: tuple[str, int], **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(
            f"UPDATE trials SET {cols} WHERE config_hash = ? AND seed = ?",
            (*values.values(), *key),
        )

    def reset_interrupted(self) -> int:
        """``running`` rows (a driver that died) back to ``pending``; returns how many."""
        cur = self.db.execute("UPDATE trials SET state = 'pending' WHERE state = 'running'")
        return cur.rowcount

    def mark_running(self, key: tuple[str, int]) -> None:
        self.db.execute(
            "UPDATE trials SET state = 'running', attempts = attempts + 1, submitted = ?, "
            "error = NULL WHERE config_hash = ? AND seed = ?",
            (now_iso(), *key),
        )

    def mark_pending(self, key: tuple[str, int]) -> None:
        self._update(key, state="pending")

    def mark_done(
        self,
        key: tuple[str, int],
        *,
        start_time: str | None = None,
        end_time: str | None = None,
        wall_s: float | None = None,
        worker: str | None = None,
    ) -> None:
        self._finish(key, "done", None, start_time, end_time, wall_s, worker)

    def mark_failed(
        self,
        key: tuple[str, int],
        error: str,
        *,
        start_time: str | None = None,
        end_time: str | None = None,
        wall_s: float | None = None,
        worker: str | None = None,
    ) -> None:
        self._finish(key, "failed", error, start_time, end_time, wall_s, worker)

    def _finish(
        self,
        key: tuple[str, int],
        state: str,
        error: str | None,
        start_time: str | None,
        end_time: str | None,
        wall_s: float | None,
        worker: str | None,
    ) -> None:
        self._update(
            key,
            state=state,
            start_time=start_time,
            end_time=end_time or now_iso(),
            wall_s=wall_s,
            worker=worker,
            error=error,
        )
