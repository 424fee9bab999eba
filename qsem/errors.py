"""Every error class qsem raises on purpose, in one module at the bottom of the package.

Every message names the offending argument (or config key, or file), so a user in
a notebook sees at a glance which value to fix. All of them derive from
:class:`QsemError`; the value errors also from :class:`ValueError`, the type errors
from :class:`TypeError`, so ``except ValueError`` keeps working.

The classes are re-exported where they used to live (``qsem.circuits.errors``,
``qsem.runner``, ``qsem.edge.store``, ``qsem.sweep.ledger``, ``qsem.experiments``).

>>> from qsem.errors import QsemValueError, arg_error
>>> isinstance(arg_error("shots", "must be >= 1, got 0"), QsemValueError)
True
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DimensionError",
    "HistoryStoreError",
    "InvalidStateError",
    "LedgerError",
    "MemoryLimitError",
    "MissingDependencyError",
    "NotCPTPError",
    "NotUnitaryError",
    "QsemError",
    "QsemTypeError",
    "QsemValueError",
    "RunDirError",
    "UnknownExperimentError",
    "arg_error",
]


class QsemError(Exception):
    """Base class of every error qsem raises on purpose."""


class QsemValueError(QsemError, ValueError):
    """An argument has the right type but a wrong value (shape, range, dims)."""


class QsemTypeError(QsemError, TypeError):
    """An argument has the wrong type."""


# --- circuits and simulation -------------------------------------------------


class DimensionError(QsemValueError):
    """Wire dimensions of a gate, channel or state do not match the circuit."""


class NotUnitaryError(QsemValueError):
    """A matrix passed as a unitary is not unitary within the stated tolerance."""


class NotCPTPError(QsemValueError):
    """Kraus operators do not form a completely positive trace-preserving map."""


class InvalidStateError(QsemValueError):
    """A density matrix is not Hermitian, not PSD or does not have trace 1."""


class MemoryLimitError(QsemError, MemoryError):
    """A register's state would not fit in the allowed memory."""


class MissingDependencyError(QsemError, ImportError):
    """An optional backend is not installed; the message names the extra."""


# --- configuration, runs and files ---------------------------------------------


class ConfigError(QsemValueError):
    """A configuration key is unknown or has a value of the wrong type."""


class UnknownExperimentError(ConfigError):
    """``qsem run NAME`` with a NAME that is not registered."""


class RunDirError(QsemError):
    """The run directory cannot be used: it holds another run, or nothing to resume."""


class CheckpointError(QsemError):
    """A checkpoint is corrupt, foreign, or belongs to another run."""


class LedgerError(QsemError):
    """The ledger file is not a sweep ledger, or disagrees with the sweep asked for."""


class HistoryStoreError(QsemError):
    """A history store file cannot be used (foreign, truncated, corrupt, newer schema)."""


def arg_error(name: str, message: str, cls: type[QsemError] = QsemValueError) -> QsemError:
    """Build an error whose message starts with the argument's name.

    >>> str(arg_error("wires", "wire 5 is out of range"))
    "argument 'wires': wire 5 is out of range"
    """
    return cls(f"argument '{name}': {message}")
