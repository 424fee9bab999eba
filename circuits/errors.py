"""Error types raised by qsem for bad input.

Every message names the offending argument, so a user in a notebook sees at a
glance which value to fix.
"""

from __future__ import annotations


class QsemError(Exception):
    """Base class of every error qsem raises on purpose."""


class QsemValueError(QsemError, ValueError):
    """An argument has the right type but a wrong value (shape, range, dims)."""


class QsemTypeError(QsemError, TypeError):
    """An argument has the wrong type."""


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


def arg_error(name: str, message: str, cls: type[QsemError] = QsemValueError) -> QsemError:
    """Build an error whose message starts with the argument's name.

    >>> str(arg_error("wires", "wire 5 is out of range"))
    "argument 'wires': wire 5 is out of range"
    """
    return cls(f"argument '{name}': {message}")
