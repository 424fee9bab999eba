"""Small argument checks shared by the narrowing modules (errors name the argument)."""

from __future__ import annotations

import math
from typing import Any

from qsem.circuits.errors import QsemTypeError, QsemValueError, arg_error


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int (not a bool), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise arg_error(name, f"expected an integer, got {value!r}", QsemTypeError)
    if minimum is not None and value < minimum:
        raise arg_error(name, f"must be >= {minimum}, got {value}")
    return int(value)


def check_fraction(name: str, value: Any, *, closed: bool = True) -> float:
    """``value`` as a float in [0, 1] (or [0, 1) when not ``closed``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise arg_error(name, f"expected a number in [0, 1], got {value!r}", QsemTypeError)
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0) or (not closed and v >= 1.0):
        hi = "1]" if closed else "1)"
        raise arg_error(name, f"must lie in [0, {hi}, got {value!r}")
    return v


def check_positive(name: str, value: Any) -> float:
    """``value`` as a positive finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise arg_error(name, f"expected a positive number, got {value!r}", QsemTypeError)
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise arg_error(name, f"must be a positive finite number, got {value!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` as a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise arg_error(name, f"expected a number >= 0, got {value!r}", QsemTypeError)
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise arg_error(name, f"must be a finite number >= 0, got {value!r}")
    return v


__all__ = [
    "QsemTypeError",
    "QsemValueError",
    "check_fraction",
    "check_int",
    "check_nonnegative",
    "check_positive",
]
