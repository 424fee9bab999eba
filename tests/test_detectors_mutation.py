"""Edge cases of the online detectors that mutation testing found untested.

Each test pins documented behaviour against values worked out by hand: the
strict ``>`` at every threshold (checked exactly at the threshold and one ulp
above it), the refractory bookkeeping of a resumed detector, the documented
defaults and setting limits, list / ndarray / tensor inputs, the refusals (whose
one-line messages users read) and the checkpoint format. See docs/testing.md.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemError, QsemTypeError, QsemValueError
from qsem.emergence import (
    BOCPD,
    AdaptiveThreshold,
    Detector,
    Event,
    FixedThreshold,
    L1Detector,
    QuantumDetector,
    ZeroDetector,
)


def run(det: Detector, values, start: int = 0) -> list[int]:
    return [e.step for s, v in enumerate(values, start) if (e := det.update(s, v)) is not None]


def above(x: float) -> float:
    """The next float after ``x``."""
    return math.nextafter(x, math.inf)


# ---------------------------------------------------------------------------------
# equality at every threshold: the rule is a strict ">"
# ---------------------------------------------------------------------------------


def test_fixed_threshold_is_strict():
    assert FixedThreshold(0.5).update(0, 0.5) is None
    assert FixedThreshold(0.5).update(0, above(0.5)) is not None


def test_adaptive_threshold_is_strict():
    # constant history: MAD 0, so the spread is min_spread: threshold 1 + 2 * 0.5 = 2 exactly
    det = AdaptiveThreshold(k=2.0, window=3, min_history=3, min_spread=0.5)
    assert run(det, [1.0, 1.0, 1.0]) == []
    assert det.threshold() == 2.0
    assert det.update(3, 2.0) is None
    det = AdaptiveThreshold(k=2.0, window=3, min_history=3, min_spread=0.5)
    run(det, [1.0, 1.0, 1.0])
    assert det.update(3, above(2.0)) is not None


def test_l1_threshold_is_strict():
    # |0.75 - 0.5| + |0.25 - 0.5| = 0.5 exactly in binary floating point
    det = L1Detector(0.5)
    assert det.update(0, [0.5, 0.5]) is None
    assert det.update(1, [0.75, 0.25]) is None
    det = L1Detector(math.nextafter(0.5, 0.0))  # the float just below 0.5
    det.update(0, [0.5, 0.5])
    assert det.update(1, [0.75, 0.25]).value == 0.5


def test_quantum_threshold_is_strict_on_the_interval_and_on_exact_distances():
    est = SimpleNamespace
    det = QuantumDetector(0.25)
    assert det.update(0, est(estimate=0.5, low=0.25, high=0.75)) is None  # 1 - high = 0.25
    assert det.update(1, 0.25) is None  # exact distance equal to θ
    e = det.update(2, est(estimate=0.5, low=0.25, high=math.nextafter(0.75, 0.0)))
    assert e is not None and e.low > 0.25
    assert det.update(3, above(0.25)) is not None


def test_quantum_accepts_a_zero_width_interval():
    e = QuantumDetector(0.1).update(0, SimpleNamespace(estimate=0.5, low=0.5, high=0.5))
    assert e == Event(0, 0.5, "quantum", 0.5, 0.5)


# ---------------------------------------------------------------------------------
# refractory bookkeeping and resume
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedThreshold(0.5, refractory=3),
        lambda: L1Detector(0.5, refractory=3),
        lambda: QuantumDetector(0.5, refractory=3),
    ],
)
def test_resumed_detector_keeps_its_refractory_period(make):
    # the signal fires at every step: events at 1, 5, 9 (each followed by 3 quiet steps)
    l1 = isinstance(make(), L1Detector)
    values = [[0.0], *[[float(i % 2)] for i in range(1, 12)]] if l1 else [0.0] + [1.0] * 11
    assert run(make(), values) == [1, 5, 9]
    a = make()
    assert run(a, values[:2]) == [1]  # cut right after an event
    b = make()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert run(b, values[2:], start=2) == [5, 9]


def test_resumed_detector_still_refuses_an_old_step():
    a = FixedThreshold(0.5)
    run(a, [0.0, 0.0, 0.0])
    b = FixedThreshold(0.5)
    b.load_state_dict(a.state_dict())
    with pytest.raises(QsemValueError, match=r"^argument 'step': must increase: got 2 after 2$"):
        b.update(2, 0.0)


def test_checkpoint_format():
    """The state is plain data with these keys: checkpoints written today stay readable."""
    f = FixedThreshold(0.5, refractory=1)
    run(f, [1.0, 0.0])
    assert f.state_dict() == {"name": "frobenius", "last_step": 1, "last_event": 0}
    a = AdaptiveThreshold(k=1.0, window=2, min_history=1)
    # step 1: threshold 1 + 1 * 0 = 1 < 2; step 2: 1.5 + 1.4826 * 0.5 = 2.24 < 3
    assert run(a, [1.0, 2.0, 3.0]) == [1, 2]
    assert a.state_dict() == {
        "name": "adaptive",
        "last_step": 2,
        "last_event": 2,
        "history": [2.0, 3.0],
    }
    l1 = L1Detector(0.5)
    assert l1.state_dict() == {
        "name": "l1",
        "last_step": None,
        "last_event": None,
        "prev": None,
        "shape": None,
    }
    l1.update(4, np.array([[1, 2, 3], [4, 5, 6]]))
    assert l1.state_dict() == {
        "name": "l1",
        "last_step": 4,
        "last_event": None,
        "prev": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "shape": [2, 3],
    }
    assert ZeroDetector().state_dict() == {"name": "zero", "last_step": None, "last_event": None}


def test_l1_resumed_from_a_fresh_state_and_after_reset():
    b = L1Detector(0.1)
    b.load_state_dict(L1Detector(0.1).state_dict())  # nothing seen yet
    assert b.update(0, [1.0]) is None  # first φ: stored, never fires
    assert b.update(1, [2.0]).value == 1.0
    b.reset()
    assert b.update(2, [5.0]) is None
    assert b.update(3, [5.5]).value == 0.5


# ---------------------------------------------------------------------------------
# documented defaults and setting limits
# ---------------------------------------------------------------------------------


def test_documented_defaults():
    det = AdaptiveThreshold()
    assert (det.k, det.window, det.min_history, det.refractory, det.min_spread) == (
        5.0,
        50,
        10,
        0,
        0.0,
    )
    for d in (FixedThreshold(0.1), L1Detector(0.1), QuantumDetector(0.1), ZeroDetector()):
        assert d.refractory == 0
    # no refractory period by default: an event at every step that crosses
    assert run(FixedThreshold(0.5), [1.0, 1.0]) == [0, 1]
    assert run(L1Detector(0.5), [[0.0], [1.0], [0.0]]) == [1, 2]
    assert run(AdaptiveThreshold(min_history=1, window=1), [0.0, 1.0, 2.0]) == [1, 2]


def test_adaptive_waits_for_min_history_by_default_and_keeps_window_values():
    det = AdaptiveThreshold(min_spread=0.1)
    assert run(det, [0.0] * 9 + [100.0]) == []  # 9 values before: the default needs 10
    assert det.update(10, 100.0) is not None
    det = AdaptiveThreshold(min_spread=0.1)
    run(det, [5.0] + [0.0] * 50)  # the 5.0 has left the default window of 50
    assert det.state_dict()["history"] == [0.0] * 50


def test_smallest_settings_are_accepted():
    det = AdaptiveThreshold(k=0.0, window=1, min_history=1, min_spread=0.0)
    assert (det.k, det.window, det.min_history, det.min_spread) == (0.0, 1, 1, 0.0)
    assert run(det, [1.0, 1.0, above(1.0)]) == [2]  # k = 0: anything above the median
    assert AdaptiveThreshold(k=0.5).k == 0.5


@pytest.mark.parametrize(
    ("call", "cls", "message"),
    [
        (lambda: AdaptiveThreshold(k=-0.5), QsemValueError, "argument 'k': must be >= 0, got -0.5"),
        (
            lambda: AdaptiveThreshold(window=0),
            QsemValueError,
            "argument 'window': must be >= 1, got 0",
        ),
        (
            lambda: AdaptiveThreshold(window=3, min_history=0),
            QsemValueError,
            "argument 'min_history': must be >= 1, got 0",
        ),
        (
            lambda: AdaptiveThreshold(window=3, min_history=4),
            QsemValueError,
            "argument 'min_history': must be <= window (3), got 4",
        ),
        (
            lambda: AdaptiveThreshold(min_spread=-1.0),
            QsemValueError,
            "argument 'min_spread': must be >= 0, got -1.0",
        ),
        (
            lambda: AdaptiveThreshold(min_spread="x"),
            QsemTypeError,
            "argument 'min_spread': expected a real number, got 'x'",
        ),
        (
            lambda: AdaptiveThreshold(window=3, min_history=1.5),
            QsemTypeError,
            "argument 'min_history': expected an integer, got 1.5",
        ),
        (
            lambda: FixedThreshold(0.1, refractory=-1),
            QsemValueError,
            "argument 'refractory': must be >= 0, got -1",
        ),
        (
            lambda: FixedThreshold(0.1, refractory=True),
            QsemTypeError,
            "argument 'refractory': expected an integer, got True",
        ),
        (
            lambda: FixedThreshold(math.inf),
            QsemValueError,
            "argument 'theta': must be finite, got inf",
        ),
        (
            lambda: L1Detector("a"),
            QsemTypeError,
            "argument 'theta': expected a real number, got 'a'",
        ),
        (
            lambda: QuantumDetector(None),
            QsemTypeError,
            "argument 'theta': expected a real number, got None",
        ),
        (lambda: BOCPD(hazard=0.0), QsemValueError, "argument 'hazard': must be > 0, got 0.0"),
    ],
)
def test_settings_refused_with_one_line_naming_the_argument(call, cls, message):
    with pytest.raises(QsemError) as info:
        call()
    assert type(info.value) is cls
    assert str(info.value) == message


# ---------------------------------------------------------------------------------
# inputs: numbers, one-element arrays and tensors, lists, refusals
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        0.75,
        1,
        np.float32(0.75),
        np.int64(1),
        np.array(0.75),
        np.array([0.75]),
        np.array([[0.75]]),
        torch.tensor(0.75),
        torch.tensor([[0.75]], dtype=torch.float64),
    ],
    ids=lambda v: type(v).__name__ + str(getattr(v, "shape", "")),
)
def test_scalar_inputs_of_every_kind(value):
    for det in (FixedThreshold(0.5), QuantumDetector(0.5)):
        e = det.update(0, value)
        assert e is not None and e.value == float(np.asarray(value).reshape(-1)[0])
        assert type(e.value) is float


@pytest.mark.parametrize(
    ("value", "cls", "message"),
    [
        (np.array([]), QsemValueError, "argument 'value': expected one number, got shape (0,)"),
        (
            np.array([0.1, 0.9]),
            QsemValueError,
            "argument 'value': expected one number, got shape (2,)",
        ),
        (
            torch.zeros(2, 1),
            QsemValueError,
            "argument 'value': expected one number, got shape (2, 1)",
        ),
        (
            torch.tensor(1 + 0j),
            QsemTypeError,
            "argument 'value': expected a real number, got a complex tensor",
        ),
        (
            np.array([1 + 0j]),
            QsemTypeError,
            "argument 'value': expected a real number, got np.complex128(1+0j)",
        ),
        ("0.7", QsemTypeError, "argument 'value': expected a real number, got '0.7'"),
        (np.bool_(True), QsemTypeError, "argument 'value': expected a real number, got np.True_"),
        (math.nan, QsemValueError, "argument 'value': must be finite, got nan"),
    ],
)
def test_scalar_refusals(value, cls, message):
    for det in (FixedThreshold(0.5), AdaptiveThreshold(), QuantumDetector(0.5)):
        with pytest.raises(QsemError) as info:
            det.update(0, value)
        assert type(info.value) is cls
        assert str(info.value) == message


def test_l1_takes_lists_tuples_arrays_and_tensors():
    inputs = [[0.5, 0.5], (0.9, 0.1), np.array([0.5, 0.5]), torch.tensor([0.9, 0.1])]
    det = L1Detector(0.5)
    events = [det.update(s, v) for s, v in enumerate(inputs)]
    assert events[0] is None
    assert [e.value for e in events[1:]] == pytest.approx([0.8, 0.8, 0.8], abs=1e-7)
    one = L1Detector(0.1)  # a single-entry φ
    assert one.update(0, [0.5]) is None and one.update(1, [0.75]).value == 0.25


def test_l1_compares_integer_arrays_in_float64():
    # uint8 arithmetic would wrap: |0 - 200| + |200 - 0| = 400, not (56 + 200) mod 256
    det = L1Detector(300.0)
    det.update(0, np.array([200, 0], dtype=np.uint8))
    assert det.update(1, np.array([0, 200], dtype=np.uint8)).value == 400.0


@pytest.mark.parametrize(
    ("value", "cls", "message"),
    [
        (
            torch.tensor([1 + 0j]),
            QsemValueError,
            "argument 'value': expected a real tensor φ, got a complex one",
        ),
        ("phi", QsemTypeError, "argument 'value': expected a tensor or array φ, got str"),
        (None, QsemTypeError, "argument 'value': expected a tensor or array φ, got NoneType"),
        ([], QsemValueError, "argument 'value': φ must be non-empty and finite"),
        ([0.0, math.inf], QsemValueError, "argument 'value': φ must be non-empty and finite"),
    ],
)
def test_l1_refusals(value, cls, message):
    with pytest.raises(QsemError) as info:
        L1Detector(0.5).update(0, value)
    assert type(info.value) is cls
    assert str(info.value) == message


def test_quantum_refusals_name_the_field():
    est = SimpleNamespace
    det = QuantumDetector(0.1)
    cases = [
        (
            est(estimate="a", low=0.1, high=0.2),
            "argument 'value.estimate': expected a real number, got 'a'",
        ),
        (
            est(estimate=0.1, low="b", high=0.2),
            "argument 'value.low': expected a real number, got 'b'",
        ),
        (
            est(estimate=0.1, low=0.1, high="c"),
            "argument 'value.high': expected a real number, got 'c'",
        ),
        ("d", "argument 'value': expected a real number, got 'd'"),
        (
            est(
                estimate=torch.tensor([0.9, 0.8]),
                low=torch.tensor([0.8, 0.7]),
                high=torch.tensor([1.0, 0.9]),
            ),
            "argument 'value': a batch of 2 estimates; pass one (e.g. est.pooled(), the mean "
            "overlap from the pooled counts)",
        ),
    ]
    for step, (value, message) in enumerate(cases):
        with pytest.raises(QsemError) as info:
            det.update(step, value)
        assert str(info.value) == message
    # a one-element tensor estimate is one estimate
    one = est(estimate=torch.tensor([0.5]), low=torch.tensor([0.4]), high=torch.tensor([0.6]))
    assert det.update(10, one) == Event(10, 0.5, "quantum", pytest.approx(0.4), pytest.approx(0.6))


def test_load_state_dict_refusals():
    det = FixedThreshold(0.1)
    with pytest.raises(QsemTypeError) as info:
        det.load_state_dict([("name", "fixed")])
    assert str(info.value) == "argument 'd': expected a dict, got list"
    with pytest.raises(QsemValueError) as info:
        det.load_state_dict(ZeroDetector().state_dict())
    assert str(info.value) == "argument 'd': a state of 'zero', this detector is 'frobenius'"


# ---------------------------------------------------------------------------------
# Event
# ---------------------------------------------------------------------------------


def test_event_as_dict_is_json_ready():
    e = QuantumDetector(0.01).update(7, SimpleNamespace(estimate=0.5, low=0.25, high=0.75))
    d = e.as_dict()
    assert d == {"step": 7, "value": 0.5, "detector": "quantum", "low": 0.25, "high": 0.75}
    assert json.loads(json.dumps(d)) == d
    assert FixedThreshold(0.0).update(1, 2.0).as_dict() == {
        "step": 1,
        "value": 2.0,
        "detector": "frobenius",
        "low": None,
        "high": None,
    }
