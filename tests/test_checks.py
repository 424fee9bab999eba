"""The argument rules of qsem.checks: what each accepts, what it refuses, and how.

One rule per kind of value; every refusal names the argument (``argument 'x': ...``)
or, with ``config=True``, the config key (``config key 'x': ...``, a ConfigError).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from qsem.checks import (
    check_int,
    check_probability,
    check_real,
    check_seed,
    check_shots,
    check_wires,
)
from qsem.errors import ConfigError, QsemTypeError, QsemValueError


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: check_int("n", 3), 3),
        (lambda: check_int("n", np.int64(3), 3), 3),
        (lambda: check_int("n", 0, 0, maximum=0), 0),
        (lambda: check_real("x", 2), 2.0),
        (lambda: check_real("x", torch.tensor([0.5])), 0.5),
        (lambda: check_real("x", np.array(0.25)), 0.25),
        (lambda: check_real("x", 0.0, minimum=0.0), 0.0),
        (lambda: check_real("x", 1.0, maximum=1.0), 1.0),
        (lambda: check_probability("p", 0), 0.0),
        (lambda: check_probability("p", 1.0), 1.0),
        (lambda: check_probability("p", 0.999, closed=False), 0.999),
        (lambda: check_shots("shots", 1), 1),
        (lambda: check_shots("shots", np.int32(7)), 7),
        (lambda: check_shots("shots", None, allow_none=True), None),
        (lambda: check_seed("seed", 0), 0),
        (lambda: check_seed("seed", 2**32 - 1), 2**32 - 1),
        (lambda: check_seed("seed", None, allow_none=True), None),
        (lambda: check_wires("wires", 2), (2,)),
        (lambda: check_wires("wires", np.array([0, 3])), (0, 3)),
        (lambda: check_wires("wires", [1, 0], n_wires=2), (1, 0)),
    ],
)
def test_accepted_values(call: Any, expected: Any) -> None:
    got = call()
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: check_int("n", True),
            QsemTypeError,
            "argument 'n': expected an integer, got True",
        ),
        (lambda: check_int("n", 2.0), QsemTypeError, "argument 'n': expected an integer"),
        (lambda: check_int("n", 0, 1), QsemValueError, "argument 'n': must be >= 1, got 0"),
        (lambda: check_int("n", 5, maximum=4), QsemValueError, "argument 'n': must be <= 4, got 5"),
        (lambda: check_real("x", "1"), QsemTypeError, "argument 'x': expected a real number"),
        (lambda: check_real("x", False), QsemTypeError, "argument 'x': expected a real number"),
        (lambda: check_real("x", math.nan), QsemValueError, "argument 'x': must be finite"),
        (lambda: check_real("x", math.inf), QsemValueError, "argument 'x': must be finite"),
        (lambda: check_real("x", 0.0, minimum=0, strict=True), QsemValueError, "must be > 0"),
        (lambda: check_real("x", -0.1, minimum=0), QsemValueError, "must be >= 0"),
        (lambda: check_real("x", 1.5, maximum=1), QsemValueError, "must be <= 1"),
        (lambda: check_real("x", torch.ones(2)), QsemValueError, "expected one number"),
        (lambda: check_real("x", torch.ones(1, dtype=torch.complex64)), QsemTypeError, "complex"),
        (
            lambda: check_probability("p", 1.0001),
            QsemValueError,
            "argument 'p': must lie in [0, 1]",
        ),
        (lambda: check_probability("p", -1e-9), QsemValueError, "must lie in [0, 1]"),
        (lambda: check_probability("p", 1.0, closed=False), QsemValueError, "must lie in [0, 1)"),
        (lambda: check_probability("p", None), QsemTypeError, "expected a number in [0, 1]"),
        (lambda: check_shots("shots", 0), QsemValueError, "argument 'shots': must be a positive"),
        (lambda: check_shots("shots", 1.5), QsemTypeError, "argument 'shots': must be a positive"),
        (lambda: check_shots("shots", None), QsemTypeError, "must be a positive integer, got None"),
        (lambda: check_shots("shots", 0, allow_none=True), QsemValueError, "None (exact) or"),
        (lambda: check_seed("seed", -1), QsemValueError, "argument 'seed': must be an integer"),
        (lambda: check_seed("seed", 2**32), QsemValueError, "0 <= seed < 2**32"),
        (lambda: check_seed("seed", "1"), QsemTypeError, "argument 'seed'"),
        (lambda: check_seed("seed", None), QsemTypeError, "argument 'seed'"),
        (lambda: check_wires("wires", []), QsemValueError, "at least one wire"),
        (lambda: check_wires("wires", [0, 0]), QsemValueError, "distinct"),
        (lambda: check_wires("wires", [-1]), QsemValueError, "non-negative"),
        (lambda: check_wires("wires", "01"), QsemTypeError, "argument 'wires'"),
        (lambda: check_wires("wires", [0.0]), QsemTypeError, "must be integers"),
        (lambda: check_wires("w", [0, 2], n_wires=2), QsemValueError, "argument 'w': wire(s) [2]"),
    ],
)
def test_refused_values(call: Any, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_int("hidden", "8", config=True),
        lambda: check_int("hidden", 0, 1, config=True),
        lambda: check_real("lr", 0, minimum=0, strict=True, config=True),
        lambda: check_probability("noise", 2, config=True),
        lambda: check_shots("hidden", 0, config=True),
        lambda: check_seed("hidden", -3, config=True),
    ],
)
def test_config_values_raise_config_errors_naming_the_key(call: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config key '(hidden|lr|noise)': "):
        call()
