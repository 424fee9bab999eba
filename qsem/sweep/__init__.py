"""Sweeps over seeds and config grids: ``qsem sweep NAME --seeds 0-9 --grid lr=0.01,0.02``.

Each (grid point, seed) is one ordinary run directory made by
:func:`qsem.runner.run_experiment`; trials run on a local process pool, in this
process, or on Dask distributed (:mod:`qsem.sweep.executors`); their states
live in an SQLite ledger written by the driver (:mod:`qsem.sweep.ledger`); the
statistics across seeds go to ``summary.json`` and ``plots/``
(:mod:`qsem.sweep.summary`). See ``docs/sweeps.md``.

>>> from qsem.sweep import parse_seeds, parse_grid
>>> parse_seeds("0-3"), parse_grid(["lr=0.1,0.2"])
([0, 1, 2, 3], {'lr': ['0.1', '0.2']})
"""

from .driver import LEDGER_FILE, MAX_ATTEMPTS, SweepResult, run_sweep
from .executors import (
    DaskExecutor,
    InProcessExecutor,
    PoolExecutor,
    TrialExecutor,
    available_cores,
    make_executor,
)
from .ledger import Ledger, LedgerError
from .spec import Trial, config_hash, grid_label, make_trials, parse_grid, parse_seeds
from .summary import SUMMARY_FILE, format_table, summarise
from .trial import TrialOutcome, TrialSpec, run_trial, start_mode

__all__ = [
    "LEDGER_FILE", "MAX_ATTEMPTS", "SUMMARY_FILE", "DaskExecutor", "InProcessExecutor", "Ledger",
    "LedgerError", "PoolExecutor", "SweepResult", "Trial", "TrialExecutor", "TrialOutcome",
    "TrialSpec", "available_cores", "config_hash", "format_table", "grid_label", "make_executor",
    "make_trials", "parse_grid", "parse_seeds", "run_sweep", "run_trial", "start_mode",
    "summarise",
]  # fmt: skip
