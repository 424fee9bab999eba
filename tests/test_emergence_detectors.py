"""Emergence detectors, change-point baselines, scores and E_pot (DESIGN.md §7).

References: small hand-made signals whose events, thresholds, scores and E_pot
terms are computed by hand below; NumPy medians and variances; scikit-learn's
AUROC on constructed forecasters.
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
    EmergencePotential,
    Event,
    FixedThreshold,
    L1Detector,
    QuantumDetector,
    ZeroDetector,
    epot_auroc,
    offline_changepoints,
    score_events,
)
from qsem.emergence.changepoint import default_penalty
from qsem.emergence.detectors import MAD_SCALE


def run(det: Detector, values, start: int = 0) -> list[Event]:
    return [e for s, v in enumerate(values, start) if (e := det.update(s, v)) is not None]


def step_signal(n: int = 200, at: int = 120, jump: float = 4.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(np.arange(n) >= at, jump, 0.0) + rng.normal(size=n)


# ---------------------------------------------------------------------------------
# threshold detectors
# ---------------------------------------------------------------------------------


def test_fixed_threshold_fires_at_the_step():
    x = [0.0] * 10 + [1.0] + [0.0] * 5
    events = run(FixedThreshold(0.5), x)
    assert [e.step for e in events] == [10]
    assert events[0] == Event(10, 1.0, "frobenius")


def test_refractory_suppresses_the_next_steps():
    x = [1.0] * 8
    assert [e.step for e in run(FixedThreshold(0.5), x)] == list(range(8))
    assert [e.step for e in run(FixedThreshold(0.5, refractory=2), x)] == [0, 3, 6]
    assert [e.step for e in run(FixedThreshold(0.5, refractory=10), x)] == [0]


def test_zero_detector_never_fires():
    assert run(ZeroDetector(), [1e9, -1e9, 0.0]) == []


def test_adaptive_threshold_by_hand():
    det = AdaptiveThreshold(k=2.0, window=5, min_history=5)
    hist = [1.0, 2.0, 4.0, 2.0, 3.0]
    assert run(det, hist) == []
    # median 2, |h - 2| = [1, 0, 2, 0, 1] -> MAD 1; threshold 2 + 2 * 1.4826
    assert det.threshold() == pytest.approx(2 + 2 * MAD_SCALE, abs=1e-12)
    assert MAD_SCALE == pytest.approx(1 / 0.6744897501960817, rel=1e-12)
    assert det.update(5, 4.9) is None  # below 4.965
    # window is now [2, 4, 2, 3, 4.9]: median 3, |h - 3| = [1, 1, 1, 0, 1.9] -> MAD 1
    assert det.threshold() == pytest.approx(3 + 2 * MAD_SCALE, abs=1e-12)
    e = det.update(6, 6.0)
    assert e is not None and e.step == 6 and e.value == 6.0


def test_adaptive_threshold_excludes_the_current_value_and_waits_for_history():
    det = AdaptiveThreshold(k=3.0, window=10, min_history=3)
    assert det.update(0, 100.0) is None and det.update(1, 0.0) is None  # history too short
    det.reset()
    x = [0.0, 0.2, 0.1, 0.0, 0.2, 0.1]
    assert run(det, x) == []
    # previous values only: median 0.1, MAD 0.1 -> 0.1 + 3 * 0.14826 = 0.5448
    assert det.threshold() == pytest.approx(0.1 + 3 * MAD_SCALE * 0.1, abs=1e-12)
    # with 0.55 included the window's MAD would not change but its median would (0.1 -> 0.1);
    # the threshold is the one computed before the value arrived
    assert det.update(6, 0.55) is not None


def test_adaptive_min_spread():
    det = AdaptiveThreshold(k=3.0, window=5, min_history=3, min_spread=1.0)
    assert run(det, [1.0, 1.0, 1.0, 3.9, 1.0]) == []  # threshold 1 + 3 * 1 = 4 for step 3
    det2 = AdaptiveThreshold(k=3.0, window=5, min_history=3)
    assert [e.step for e in run(det2, [1.0, 1.0, 1.0, 1.001])] == [3]


def test_adaptive_on_a_noisy_step():
    events = run(AdaptiveThreshold(k=5.0, window=50, refractory=20), step_signal(jump=8.0))
    assert [e.step for e in events] == [120]


def test_l1_detector_by_hand():
    det = L1Detector(0.3)
    phis = [
        torch.tensor([[0.5, 0.5], [1.0, 0.0]]),
        torch.tensor([[0.6, 0.4], [1.0, 0.0]]),  # L1 = 0.2
        torch.tensor([[0.6, 0.4], [0.8, 0.2]]),  # L1 = 0.4
    ]
    assert det.update(0, phis[0]) is None
    assert det.update(1, phis[1]) is None
    e = det.update(2, phis[2])
    assert e is not None and e.value == pytest.approx(0.4, abs=1e-7)
    with pytest.raises(QsemValueError, match=r"argument .value.*shape"):
        det.update(3, torch.ones(3))
    assert det.update(4, phis[2] + 0.2) is not None  # the previous φ survived the bad call


def test_quantum_detector_fires_only_when_the_interval_clears_theta():
    det = QuantumDetector(0.01)
    est = SimpleNamespace
    # point estimate of d = 0.05 > θ, but 1 - high = 0.005 <= θ: no event
    assert det.update(0, est(estimate=0.95, low=0.90, high=0.995)) is None
    e = det.update(1, est(estimate=0.95, low=0.93, high=0.98))
    assert e is not None
    assert e.value == pytest.approx(0.05) and e.low == pytest.approx(0.02)
    assert e.high == pytest.approx(0.07)
    assert det.update(2, 0.011) is not None and det.update(3, 0.009) is None  # exact distances
    assert det.update(4, torch.tensor(0.5)).value == 0.5
    with pytest.raises(QsemValueError, match=r"argument .value.*low"):
        det.update(5, est(estimate=0.9, low=0.95, high=0.9))


def test_quantum_detector_with_a_swap_test_estimate():
    from qsem.simulators.similarity import estimate_from_counts

    det = QuantumDetector(0.05)
    far = estimate_from_counts(700, 1000)  # F ~ 0.4
    near = estimate_from_counts(990, 1000)  # F ~ 0.98
    assert det.update(0, near) is None
    assert det.update(1, far) is not None


# ---------------------------------------------------------------------------------
# change points
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bocpd_finds_a_mean_change_within_a_few_steps(seed):
    x = step_signal(seed=seed)
    events = run(BOCPD(), x)
    assert len(events) == 1 and 120 <= events[0].step <= 125


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bocpd_is_quiet_on_a_stationary_signal(seed):
    x = np.random.default_rng(100 + seed).normal(size=400) * 1e-3 + 0.02  # any units
    assert run(BOCPD(), x) == []


def test_bocpd_scale_free_with_warmup():
    x = step_signal(seed=3)
    a = [e.step for e in run(BOCPD(), x)]
    b = [e.step for e in run(BOCPD(), 1e-4 * x + 7.0)]
    assert a == b and len(a) == 1


def test_bocpd_posterior_by_hand():
    """Two observations, no warm-up, against the recursion written out by hand."""
    from scipy import stats

    h = 0.1
    det = BOCPD(hazard=h, warmup=0, r_min=1, max_run=10)
    det.update(0, 1.0)
    det.update(1, 3.0)

    def pred(x, mu, kappa, alpha, beta):
        return stats.t.pdf(
            x, 2 * alpha, loc=mu, scale=math.sqrt(beta * (kappa + 1) / (alpha * kappa))
        )

    p0 = pred(1.0, 0, 1, 1, 1)  # first step: one run length (r = 0 before the data)
    j = np.array([p0 * h, p0 * (1 - h)])  # P(r_1 = 0), P(r_1 = 1) (unnormalised)
    # statistics after x = 1: run 0 -> prior, run 1 -> NG update
    post1 = (0.5, 2.0, 1.5, 1 + 1 * 1.0 / 4)
    q = np.array([pred(3.0, 0, 1, 1, 1), pred(3.0, *post1)])
    joint2 = np.array([(j * q).sum() * h, j[0] * q[0] * (1 - h), j[1] * q[1] * (1 - h)])
    np.testing.assert_allclose(det.run_length_posterior, joint2 / joint2.sum(), atol=1e-12)
    assert det.p_short == pytest.approx(joint2[0] / joint2.sum(), abs=1e-12)


def test_bocpd_truncation_keeps_probability():
    det = BOCPD(max_run=20)
    run(det, np.random.default_rng(0).normal(size=100))
    post = det.run_length_posterior
    assert post.shape == (21,) and post.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("method", ["pelt", "binseg"])
def test_offline_changepoints(method):
    x = step_signal(seed=0)
    cps = offline_changepoints(x, method=method)
    assert len(cps) == 1 and abs(cps[0] - 120) <= 2
    quiet = np.random.default_rng(5).normal(size=300)
    assert offline_changepoints(quiet, method=method) == []
    steps = list(range(0, 2 * len(x), 2))
    assert offline_changepoints(x, method=method, steps=steps) == [2 * cps[0]]


def test_offline_two_changes_and_fixed_count():
    x = np.r_[np.zeros(50), np.ones(50) * 3, np.zeros(50)] + 0.1 * np.random.default_rng(1).normal(
        size=150
    )
    assert offline_changepoints(x, method="pelt") == [50, 100]
    assert offline_changepoints(x, method="binseg", n_bkps=2) == [50, 100]


def test_default_penalty_by_hand():
    x = np.array([0.0, 1.0, 3.0, 6.0, 10.0])  # diffs 1, 2, 3, 4: median 2.5, MAD 1
    assert default_penalty(x) == pytest.approx(3 * MAD_SCALE**2 / 2 * math.log(5), rel=1e-12)


# ---------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------


def test_score_events_by_hand():
    # transitions at 100, 400, 700; window [s - 10, s + 50]
    events = [95, 120, 130, 300, 460, 710, 900]
    r = score_events(events, [100, 400, 700], 1000, max_lag=50, before=10)
    # 100 <- 95 (lag -5), 400 <- none (460 is outside), 700 <- 710 (lag 10)
    assert r["detected"] == [True, False, True]
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["lags"] == [-5, 10]
    assert r["median_lag"] == 2.5 and r["p90_lag"] == pytest.approx(-5 + 0.9 * 15)
    # 120, 130 are inside 100's window (duplicates, not false alarms); 300, 460, 900 are not
    assert r["false_alarms"] == 3 and r["false_alarms_per_1000"] == 3.0
    assert r["precision"] == pytest.approx(2 / 7)
    p, rec = 2 / 7, 2 / 3
    assert r["f1"] == pytest.approx(2 * p * rec / (p + rec))
    assert r["n_events"] == 7 and r["n_matched"] == 2


def test_score_events_one_to_one_and_edge_cases():
    # one event between two close transitions serves only the first
    r = score_events([105], [100, 110], 500, max_lag=20)
    assert r["detected"] == [True, False] and r["false_alarms"] == 0
    r = score_events([], [100], 500, max_lag=20)
    assert r["recall"] == 0 and r["precision"] == 0 and r["f1"] == 0
    assert math.isnan(r["median_lag"]) and r["false_alarms_per_1000"] == 0
    r = score_events([3, 4], [], 2000, max_lag=20)
    assert math.isnan(r["recall"]) and r["false_alarms_per_1000"] == 1.0
    r = score_events([Event(100, 1.0, "x")], [100], 200, max_lag=0)
    assert r["recall"] == 1 and r["median_lag"] == 0
    json.dumps(r)


# ---------------------------------------------------------------------------------
# E_pot
# ---------------------------------------------------------------------------------


def test_epot_terms_by_hand():
    ep = EmergencePotential(window=3, alphas=(1.0, 2.0, 3.0, 4.0), theta_epot=10.0)
    out = ep.update(2.0, theta=0.1, nci=0.2)
    assert out["e_norm"] == 1.0 and out["v_t"] == 0.0
    assert out["e_pot"] == pytest.approx(1 + 0.2 + 0.6)
    ep.update(4.0)
    out = ep.update(12.0, theta=0.5, nci=0.3)  # window [2, 4, 12]: median 4, mean 6
    assert out["e_norm"] == pytest.approx(3.0)
    v = ((2 - 6) ** 2 + (4 - 6) ** 2 + (12 - 6) ** 2) / 3
    assert out["v_t"] == pytest.approx(v)
    assert out["terms"] == pytest.approx([3.0, 1.0, 0.9, 4 * v])
    assert out["e_pot"] == pytest.approx(3 + 1 + 0.9 + 4 * v) and out["critical"] is True
    out = ep.update(1.0)  # window [4, 12, 1]: median 4
    assert out["e_norm"] == pytest.approx(0.25)
    rel = EmergencePotential(window=3, relative_variance=True)
    for d in (2.0, 4.0, 12.0):
        o = rel.update(d)
    assert o["v_t"] == pytest.approx(v / 16)


def test_epot_auroc():
    n, starts, w = 300, [100, 220], 10
    perfect = np.zeros(n)
    for s in starts:
        perfect[s - w : s] = 1.0
    assert epot_auroc(perfect, starts, w) == 1.0
    assert epot_auroc(np.ones(n), starts, w) == 0.5
    assert epot_auroc(-perfect, starts, w) == 0.0
    # steps inside transitions are dropped: a spike during the transition does not count
    spiky = perfect.copy()
    spiky[100:110] = 5.0
    assert epot_auroc(spiky, starts, w) == 1.0
    spiky[150] = 5.0  # a spike away from transitions is a false positive
    assert epot_auroc(spiky, starts, w) < 1.0
    # subsampled log
    steps = list(range(0, n, 2))
    assert epot_auroc(perfect[::2], starts, w, steps=steps) == 1.0
    assert epot_auroc(perfect, starts, w, ends=[150, 260]) == 1.0


# ---------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------


def _detectors():
    return [
        lambda: FixedThreshold(1.0, refractory=3),
        lambda: AdaptiveThreshold(k=4.0, window=30, refractory=5),
        lambda: BOCPD(hazard=1 / 100),
        lambda: QuantumDetector(1.5),
        lambda: ZeroDetector(),
    ]


@pytest.mark.parametrize("make", _detectors())
@pytest.mark.parametrize("cut", [5, 60, 130])
def test_state_dict_round_trip_continues_identically(make, cut):
    x = step_signal(n=200, at=90, seed=4)
    whole = run(make(), x)
    a = make()
    first = run(a, x[:cut])
    state = json.loads(json.dumps(a.state_dict()))  # plain data
    b = make()
    b.load_state_dict(state)
    assert first + run(b, x[cut:], start=cut) == whole


def test_l1_and_epot_state_round_trip():
    rng = np.random.default_rng(0)
    phis = [
        torch.softmax(torch.as_tensor(rng.normal(size=(2, 3)), dtype=torch.float32), -1)
        for _ in range(10)
    ]
    whole = run(L1Detector(0.5), phis)
    a = L1Detector(0.5)
    first = run(a, phis[:4])
    b = L1Detector(0.5)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert first + run(b, phis[4:], start=4) == whole
    d = np.abs(rng.normal(size=40))
    full = EmergencePotential(window=7)
    outs = [full.update(v) for v in d]
    part = EmergencePotential(window=7)
    for v in d[:15]:
        part.update(v)
    resumed = EmergencePotential(window=7)
    resumed.load_state_dict(json.loads(json.dumps(part.state_dict())))
    assert [resumed.update(v) for v in d[15:]] == outs[15:]


def test_reset():
    det = AdaptiveThreshold(k=1.0, window=5, min_history=2)
    first = run(det, [0.0, 1.0, 0.0, 5.0])
    det.reset()
    assert run(det, [0.0, 1.0, 0.0, 5.0]) == first


# ---------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name", "cls"),
    [
        (lambda: FixedThreshold("a"), "theta", QsemTypeError),
        (lambda: FixedThreshold(0.1, refractory=-1), "refractory", QsemValueError),
        (lambda: FixedThreshold(0.1).update(0, float("nan")), "value", QsemValueError),
        (lambda: FixedThreshold(0.1).update(0, [1, 2]), "value", QsemTypeError),
        (lambda: FixedThreshold(0.1).update(1.5, 0.0), "step", QsemTypeError),
        (lambda: AdaptiveThreshold(window=0), "window", QsemValueError),
        (lambda: AdaptiveThreshold(window=5, min_history=6), "min_history", QsemValueError),
        (lambda: AdaptiveThreshold(k=-1), "k", QsemValueError),
        (lambda: L1Detector(0.1).update(0, "phi"), "value", QsemTypeError),
        (lambda: L1Detector(0.1).update(0, torch.tensor([float("inf")])), "value", QsemValueError),
        (lambda: BOCPD(hazard=0), "hazard", QsemValueError),
        (lambda: BOCPD(hazard=1.5), "hazard", QsemValueError),
        (lambda: BOCPD(threshold=1), "threshold", QsemValueError),
        (lambda: BOCPD(r_min=0), "r_min", QsemValueError),
        (lambda: offline_changepoints([1.0]), "signal", QsemValueError),
        (lambda: offline_changepoints([1.0, float("nan"), 2.0]), "signal", QsemValueError),
        (lambda: offline_changepoints([0.0] * 10, method="dynp"), "method", QsemValueError),
        (lambda: offline_changepoints([0.0] * 10, n_bkps=1), "n_bkps", QsemValueError),
        (lambda: offline_changepoints([0.0] * 10, model="nope"), "model", QsemValueError),
        (lambda: score_events([1], [2], 0, max_lag=5), "n_steps", QsemValueError),
        (lambda: score_events([1], [2], 10, max_lag=-1), "max_lag", QsemValueError),
        (lambda: score_events("abc", [2], 10, max_lag=1), "event_steps", QsemTypeError),
        (lambda: score_events([1.5], [2], 10, max_lag=1), "event_steps[0]", QsemTypeError),
        (lambda: EmergencePotential(alphas=(1, 2)), "alphas", QsemValueError),
        (lambda: EmergencePotential(window=0), "window", QsemValueError),
        (lambda: EmergencePotential().update(-1.0), "delta_phi", QsemValueError),
        (lambda: epot_auroc([0.0] * 10, [50], 5), "transition_starts", QsemValueError),
        (lambda: epot_auroc([float("nan")] * 10, [5], 2), "e_pot", QsemValueError),
        (lambda: epot_auroc([0.0] * 10, [5], 0), "horizon", QsemValueError),
    ],
)
def test_bad_input_names_the_argument(call, name, cls):
    with pytest.raises(cls) as info:
        call()
    msg = str(info.value)
    assert isinstance(info.value, QsemError)
    assert msg.startswith(f"argument '{name}'") and "\n" not in msg


def test_steps_must_increase_and_state_of_another_detector():
    det = FixedThreshold(0.1)
    det.update(3, 0.0)
    with pytest.raises(QsemValueError, match="argument 'step': must increase"):
        det.update(3, 0.0)
    with pytest.raises(QsemValueError, match="argument 'd'"):
        det.load_state_dict(ZeroDetector().state_dict())


def test_detector_registry():
    from qsem.emergence import DETECTORS

    assert set(DETECTORS) == {
        "frobenius", "adaptive", "l1", "quantum", "zero", "bocpd", "cusum"
    }  # fmt: skip
    assert all(cls.name == name for name, cls in DETECTORS.items())


def test_former_name_fixed_still_finds_and_restores_the_frobenius_detector():
    """FixedThreshold was registered as "fixed": the name still finds the class (with a
    DeprecationWarning) and a checkpoint state saved under it still loads."""
    from qsem.emergence import DETECTORS

    with pytest.warns(DeprecationWarning, match="'fixed' is deprecated: use 'frobenius'"):
        assert DETECTORS["fixed"] is FixedThreshold
    with pytest.raises(KeyError):
        DETECTORS["psychic"]
    old = FixedThreshold(0.5, refractory=3)
    old.update(4, 0.9)
    state = {**old.state_dict(), "name": "fixed"}
    new = FixedThreshold(0.5, refractory=3)
    new.load_state_dict(state)
    assert new.update(5, 0.9) is None  # the refractory period carried over
    assert new.update(10, 0.9) == Event(10, 0.9, "frobenius")
