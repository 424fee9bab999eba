"""Error types raised by qsem for bad input (defined in :mod:`qsem.errors`).

Kept so that ``from qsem.circuits.errors import QsemError`` goes on working.
"""

from __future__ import annotations

from qsem.errors import (
    DimensionError,
    InvalidStateError,
    MemoryLimitError,
    MissingDependencyError,
    NotCPTPError,
    NotUnitaryError,
    QsemError,
    QsemTypeError,
    QsemValueError,
    arg_error,
)

__all__ = [
    "DimensionError",
    "InvalidStateError",
    "MemoryLimitError",
    "MissingDependencyError",
    "NotCPTPError",
    "NotUnitaryError",
    "QsemError",
    "QsemTypeError",
    "QsemValueError",
    "arg_error",
]
