"""The self-calibrating CUSUM detector (qsem.emergence.calibrated).

References: a Monte Carlo simulation of the CUSUM recursion written out here in
NumPy (for Siegmund's ARL approximation); synthetic signals with change points
planted at known steps, scored by qsem.emergence.benchmark.pooled_score.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qsem.circuits.errors import QsemValueError
from qsem.emergence import DETECTORS, FixedThreshold, SelfCalibratingCUSUM
from qsem.emergence.benchmark import Run, online_events, pooled_score
from qsem.emergence.calibrated import cusum_arl, cusum_threshold


def simulated_arl(h: float, drift: float, runs: int, seed: int) -> float:
    """Mean first step with S > h of the upper CUSUM on i.i.d. N(0, 1), by simulation."""
    rng = np.random.default_rng(seed)
    s = np.zeros(runs)
    alive = np.ones(runs, dtype=bool)
    length = np.zeros(runs)
    t = 0
    while alive.any():
        t += 1
        s = np.where(alive, np.maximum(0.0, s + rng.normal(size=runs) - drift), s)
        hit = alive & (s > h)
        length[hit] = t
        alive &= ~hit
    return float(length.mean())


@pytest.mark.parametrize(("arl", "drift"), [(200.0, 0.5), (500.0, 1.0)])
def test_threshold_gives_the_target_arl_by_simulation(arl, drift):
    h = cusum_threshold(arl, drift)
    assert cusum_arl(h, drift) == pytest.approx(arl, rel=1e-9)
    # Siegmund's approximation is within a few per cent of the true ARL here;
    # 2000 runs: standard error of the mean ~ ARL / sqrt(2000) ~ 2 %
    assert simulated_arl(h, drift, 2000, seed=1) == pytest.approx(arl, rel=0.12)


def planted(seed: int, scale: float, n: int = 4000, starts=(1500, 3000)) -> Run:
    """A Δφ-like signal: log-normal noise with a slow drift; after each start the level
    rises ×5 for 300 steps (a transition), then falls back."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + 1)
    log_level = -0.3 * t / n + 0.25 * rng.normal(size=n + 1)
    for s in starts:
        log_level[s : s + 300] += np.log(5.0)
    return Run(scale * np.exp(log_level), list(starts))


def events(det: SelfCalibratingCUSUM, runs: list[Run]) -> list[list[int]]:
    return [online_events(det, r.signal) for r in runs]


def test_planted_change_points_found_with_no_false_alarms():
    runs = [planted(seed, scale) for seed in range(10) for scale in (1e-4, 1.0, 1e3)]
    det = SelfCalibratingCUSUM(drift=1.0, arl=1e5, window=500, warmup=200, refractory=300)
    score = pooled_score(events(det, runs), runs, max_lag=400, before=0)
    assert score["n_transitions"] == 60
    assert score["recall"] >= 0.95
    assert score["false_alarms_per_1000"] <= 0.1
    assert score["median_lag"] <= 10
    assert score["p90_lag"] <= 20


def test_no_change_gives_at_most_one_false_alarm_in_ten_runs():
    runs = [planted(100 + seed, 1.0, n=6000, starts=()) for seed in range(10)]
    det = SelfCalibratingCUSUM(drift=1.0, arl=1e5, window=500, warmup=200, refractory=300)
    ev = events(det, runs)
    assert sum(len(e) for e in ev) <= 1


def test_calibration_is_in_units_of_the_runs_own_noise():
    r = planted(3, 1.0)
    det = SelfCalibratingCUSUM(drift=1.0, arl=1e4, window=500, warmup=100)
    a = online_events(det, r.signal)
    b = online_events(det, 1e6 * r.signal)
    assert a == b and a  # a rescaled signal (other units) gives the same events
    # z-scores against the run's own median and MAD are scale-free with or without the
    # log (a threshold in the signal's units would not be: FixedThreshold fires on one)
    lin = SelfCalibratingCUSUM(drift=1.0, arl=1e4, window=500, warmup=100, log=False)
    assert online_events(lin, 1e6 * r.signal) == online_events(lin, r.signal)
    fixed = FixedThreshold(float(np.median(r.signal)) * 10)
    assert online_events(fixed, 1e6 * r.signal) != online_events(fixed, r.signal)


def test_quiet_during_warmup_and_restarts_after_an_event():
    x = np.r_[np.zeros(50), 10 * np.ones(5), np.zeros(200)] + 1e-3 * np.arange(255) % 0.01
    det = SelfCalibratingCUSUM(drift=0.5, h=2.0, window=60, warmup=40, log=False)
    got = [t for t, v in enumerate(x) if det.update(t, v)]
    assert got == [50]  # one event; the reference restarted (a new 40-value warm-up)
    assert det.baseline() is not None and det.statistic == 0.0
    det2 = SelfCalibratingCUSUM(drift=0.5, h=2.0, window=60, warmup=40, log=False)
    assert [t for t, v in enumerate(x[:45]) if det2.update(t, v)] == []
    assert det2.baseline() is not None


def test_resume_from_state_dict_gives_the_same_events():
    r = planted(5, 1.0)
    full = SelfCalibratingCUSUM(drift=1.0, arl=1e4, window=300, warmup=100)
    ref = [t for t in range(1, len(r.signal)) if full.update(t, r.signal[t])]
    a = SelfCalibratingCUSUM(drift=1.0, arl=1e4, window=300, warmup=100)
    got = [t for t in range(1, 1600) if a.update(t, r.signal[t])]
    state = json.loads(json.dumps(a.state_dict()))
    b = SelfCalibratingCUSUM(drift=1.0, arl=1e4, window=300, warmup=100)
    b.load_state_dict(state)
    got += [t for t in range(1600, len(r.signal)) if b.update(t, r.signal[t])]
    assert got == ref and ref


def test_registered_and_bad_input():
    assert DETECTORS["cusum"] is SelfCalibratingCUSUM
    with pytest.raises(QsemValueError, match="argument 'drift'"):
        SelfCalibratingCUSUM(drift=0.0)
    with pytest.raises(QsemValueError, match="argument 'warmup'"):
        SelfCalibratingCUSUM(window=10, warmup=20)
    with pytest.raises(QsemValueError, match="argument 'arl'"):
        cusum_threshold(0.5, 1.0)
    with pytest.raises(QsemValueError, match="argument 'value'"):
        SelfCalibratingCUSUM().update(0, float("nan"))


def test_docstring_examples_run():
    import doctest

    import qsem.emergence.calibrated as mod

    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


def test_direction_down_is_the_upper_cusum_of_the_reflected_signal():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, 900)
    x[500:] -= 3.0  # a 3σ fall at step 500
    kw = {"drift": 1.0, "arl": 1e4, "window": 200, "warmup": 50, "log": False}
    down = online_events(SelfCalibratingCUSUM(direction="down", **kw), x)
    assert down == online_events(SelfCalibratingCUSUM(**kw), -x)
    assert any(500 <= e <= 505 for e in down)
    up = online_events(SelfCalibratingCUSUM(**kw), x)
    assert not any(500 <= e <= 700 for e in up)  # the rise detector does not see the fall
    with pytest.raises(QsemValueError, match="direction"):
        SelfCalibratingCUSUM(direction="sideways")
