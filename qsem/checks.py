"""Argument checks: one rule per kind of value, each error naming the argument.

Every public entry point of qsem checks its scalar arguments with these rules, so a
value is refused the same way (same type, same message) wherever it is passed:

* :func:`check_int`: an integer (Python or NumPy, never ``bool``) within optional bounds;
* :func:`check_real`: a finite real number (or a one-element tensor / array), bounded;
* :func:`check_probability`: a real number in ``[0, 1]`` (``[0, 1)`` when not ``closed``);
* :func:`check_shots`: an integer ``>= 1`` (``None``, meaning exact, where allowed);
* :func:`check_seed`: an integer with ``0 <= seed < 2**32`` (``None`` where allowed);
* :func:`check_wires`: a wire or a non-empty sequence of distinct non-negative integers.

A wrong type raises :class:`~qsem.errors.QsemTypeError`, a wrong value
:class:`~qsem.errors.QsemValueError`; both read ``argument 'NAME': ...``. With
``config=True`` the same rule checks a configuration value: the error is a
:class:`~qsem.errors.ConfigError` reading ``config key 'NAME': ...``.

>>> check_int("hidden", 8, minimum=1)
8
>>> check_shots("shots", 0)
Traceback (most recent call last):
...
qsem.errors.QsemValueError: argument 'shots': must be a positive integer, got 0
>>> check_real("lr", -1.0, minimum=0, strict=True, config=True)
Traceback (most recent call last):
...
qsem.errors.ConfigError: config key 'lr': must be > 0, got -1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NoReturn, overload

import numpy as np
import torch

from qsem.errors import ConfigError, QsemError, QsemTypeError, QsemValueError

__all__ = [
    "SEED_LIMIT",
    "check_int",
    "check_probability",
    "check_real",
    "check_seed",
    "check_shots",
    "check_wires",
    "fail",
    "is_int",
    "seed_problem",
]

#: Seeds are refused outside ``0 <= seed < SEED_LIMIT`` (NumPy's range).
SEED_LIMIT = 2**32


def fail(name: str, message: str, *, config: bool = False, type_error: bool = False) -> NoReturn:
    """Raise the error for argument (or config key) ``name``."""
    if config:
        raise ConfigError(f"config key '{name}': {message}")
    cls: type[QsemError] = QsemTypeError if type_error else QsemValueError
    raise cls(f"argument '{name}': {message}")


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer; False for ``bool`` (which is an ``int``)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(
    name: str,
    value: Any,
    minimum: int | None = None,
    *,
    maximum: int | None = None,
    config: bool = False,
) -> int:
    """``value`` as an ``int`` with ``minimum <= value <= maximum`` (bounds optional)."""
    if not is_int(value):
        fail(name, f"expected an integer, got {value!r}", config=config, type_error=True)
    v = int(value)
    if minimum is not None and v < minimum:
        fail(name, f"must be >= {minimum}, got {v}", config=config)
    if maximum is not None and v > maximum:
        fail(name, f"must be <= {maximum}, got {v}", config=config)
    return v


def check_real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
    config: bool = False,
) -> float:
    """``value`` as a finite ``float`` (a number, or a one-element tensor / array).

    ``minimum``: the lower bound (excluded when ``strict``); ``maximum``: the upper
    bound (included).
    """
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if (value.size if isinstance(value, np.ndarray) else value.numel()) != 1:
            fail(name, f"expected one number, got shape {tuple(value.shape)}", config=config)
        if isinstance(value, torch.Tensor) and value.is_complex():
            fail(name, "expected a real number, got a complex tensor", config=config,
                 type_error=True)  # fmt: skip
        value = value.item() if isinstance(value, torch.Tensor) else value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        fail(name, f"expected a real number, got {value!r}", config=config, type_error=True)
    v = float(value)
    if not math.isfinite(v):
        fail(name, f"must be finite, got {value!r}", config=config)
    if minimum is not None and (v <= minimum if strict else v < minimum):
        fail(name, f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}", config=config)
    if maximum is not None and v > maximum:
        fail(name, f"must be <= {maximum:g}, got {value!r}", config=config)
    return v


def check_probability(name: str, value: Any, *, closed: bool = True, config: bool = False) -> float:
    """``value`` as a ``float`` in ``[0, 1]`` (``[0, 1)`` when not ``closed``)."""
    hi = "1]" if closed else "1)"
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        fail(name, f"expected a number in [0, {hi}, got {value!r}", config=config, type_error=True)
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0) or (not closed and v >= 1.0):
        fail(name, f"must lie in [0, {hi}, got {value!r}", config=config)
    return v


@overload
def check_shots(
    name: str, value: Any, *, allow_none: Literal[False] = False, config: bool = False
) -> int: ...
@overload
def check_shots(name: str, value: Any, *, allow_none: bool, config: bool = False) -> int | None: ...
def check_shots(
    name: str, value: Any, *, allow_none: bool = False, config: bool = False
) -> int | None:
    """A number of shots: an integer ``>= 1``; ``None`` (exact) where ``allow_none``."""
    if value is None and allow_none:
        return None
    what = "None (exact) or a positive integer" if allow_none else "a positive integer"
    if not is_int(value):
        fail(name, f"must be {what}, got {value!r}", config=config, type_error=True)
    if value < 1:
        fail(name, f"must be {what}, got {value!r}", config=config)
    return int(value)


def seed_problem(value: Any, *, allow_none: bool = False) -> str | None:
    """What is wrong with ``value`` as a seed (``None`` if nothing): the rule of
    :func:`check_seed`, for callers that word the error themselves."""
    if value is None and allow_none:
        return None
    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        what = "an integer with 0 <= seed < 2**32" + (" or None" if allow_none else "")
        return f"must be {what}, got {value!r}"
    return None


@overload
def check_seed(
    name: str, value: Any, *, allow_none: Literal[False] = False, config: bool = False
) -> int: ...
@overload
def check_seed(name: str, value: Any, *, allow_none: bool, config: bool = False) -> int | None: ...
def check_seed(
    name: str, value: Any, *, allow_none: bool = False, config: bool = False
) -> int | None:
    """A seed: an integer with ``0 <= seed < 2**32``; ``None`` (fresh) where ``allow_none``."""
    problem = seed_problem(value, allow_none=allow_none)
    if problem is not None:
        fail(name, problem, config=config, type_error=not is_int(value))
    return None if value is None else int(value)


def check_wires(name: str, wires: Any, *, n_wires: int | None = None) -> tuple[int, ...]:
    """One wire or a non-empty sequence of distinct non-negative integers, as a tuple;
    with ``n_wires``, every wire must also be ``< n_wires``."""
    if isinstance(wires, np.ndarray) and wires.ndim == 1:
        wires = wires.tolist()
    if is_int(wires):
        out: tuple[int, ...] = (int(wires),)
    elif isinstance(wires, Sequence) and not isinstance(wires, str):
        if not all(is_int(w) for w in wires):
            fail(name, f"wires must be integers, got {list(wires)!r}", type_error=True)
        out = tuple(int(w) for w in wires)
        if not out:
            fail(name, "expected at least one wire, got an empty sequence")
    else:
        fail(name, f"expected an int or a sequence of ints, got {wires!r}", type_error=True)
    if any(w < 0 for w in out):
        fail(name, f"wires must be non-negative, got {list(out)}")
    if len(set(out)) != len(out):
        fail(name, f"wires must be distinct, got {list(out)}")
    if n_wires is not None:
        bad = [w for w in out if w >= n_wires]
        if bad:
            fail(name, f"wire(s) {bad} out of range for a register of {n_wires} wires")
    return out
