"""Per-task probe signals and the per-task detector (qsem.emergence.pertask).

References: per-task norms recomputed slice by slice with NumPy; synthetic
multi-task signals with a rise planted in each task's channel at its own step
(seeded), scored by qsem.emergence.benchmark.pooled_score against those steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemTypeError, QsemValueError
from qsem.emergence import PerTask, SelfCalibratingCUSUM, per_task_cusum
from qsem.emergence.benchmark import Run, online_events, pooled_score
from qsem.narrow.transitions import ProbeSignals, SignalBank, task_entropy


def test_per_task_signals_are_the_norms_of_each_tasks_slice():
    gen = torch.Generator().manual_seed(3)
    sig = ProbeSignals(beta=0.5, lag=2, tasks=3)
    phis = [torch.rand(2, 12, 2, generator=gen, dtype=torch.float64) for _ in range(5)]
    outs = [sig.update(p) for p in phis]
    a, b = phis[-1].numpy(), phis[-2].numpy()
    ref = np.linalg.norm((a - b).reshape(2, 3, -1), axis=2)  # task-major: rows 0-3, 4-7, 8-11
    np.testing.assert_allclose(outs[-1]["literal_task"].numpy(), ref, rtol=1e-12)
    for k in ("literal", "ema", "lagged"):  # squares of the slices sum to the pooled square
        np.testing.assert_allclose(
            (outs[-1][f"{k}_task"] ** 2).sum(1).numpy(), (outs[-1][k] ** 2).numpy(), rtol=1e-12
        )
    assert outs[0]["ema_task"].shape == (2, 3) and float(outs[0]["ema_task"].abs().sum()) == 0
    bank = SignalBank(ProbeSignals(lag=1, tasks=3), ProbeSignals(lag=2, tasks=3))
    assert bank.update(phis[0])["ema_slow_task"].shape == (2, 3)
    assert "ema_task" not in ProbeSignals().update(phis[0])  # off by default
    with pytest.raises(QsemValueError, match="phi"):
        ProbeSignals(tasks=5).update(phis[0])  # 12 rows do not split into 5 tasks


def multitask(seed: int, n: int = 3600, tasks: int = 4) -> tuple[np.ndarray, list[int]]:
    """``(n + 1, tasks)`` Δφ-like channels (log-normal noise, slow drift), channel c at
    its own scale 10^(−c/2); channel c rises ×5 for 300 steps at its own start (starts
    700 steps apart in a seeded order). Returns the signal and the sorted starts."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + 1)[:, None]
    log = -0.3 * t / n + 0.25 * rng.normal(size=(n + 1, tasks))
    log += np.log(10.0) * (-np.arange(tasks) / 2)
    starts = 600 + 700 * rng.permutation(tasks) + rng.integers(0, 200, tasks)
    for c, s in enumerate(starts):
        log[s : s + 300, c] += np.log(5.0)
    return np.exp(log), sorted(int(s) for s in starts)


def test_per_task_cusum_finds_every_task_where_the_pooled_signal_misses_most():
    data = [multitask(seed) for seed in range(6)]
    runs = [Run(x, s) for x, s in data]
    det = per_task_cusum(4, drift=1.0, arl=1e5, window=500, warmup=200, refractory=300)
    per = pooled_score([online_events(det, r.signal) for r in runs], runs, max_lag=400)
    assert per["n_transitions"] == 24
    assert per["recall"] >= 0.95 and per["false_alarms_per_1000"] <= 0.1
    assert per["median_lag"] <= 20 and per["p90_lag"] <= 50
    # the same detector on the pooled norm (what one probe-wide Δφ sees) finds only the
    # loud channels' rises: the quiet ones vanish in the sum
    pooled = [Run(np.linalg.norm(x, axis=1), s) for x, s in data]
    one = SelfCalibratingCUSUM(drift=1.0, arl=1e5, window=500, warmup=200, refractory=300)
    ref = pooled_score([online_events(one, r.signal) for r in pooled], pooled, max_lag=400)
    assert ref["recall"] <= 0.6


def test_no_change_in_any_channel_gives_at_most_one_false_alarm_in_ten_runs():
    rng = np.random.default_rng(11)
    det = per_task_cusum(4, drift=1.0, arl=1e5, window=500, warmup=200, refractory=300)
    alarms = 0
    for _ in range(10):
        x = np.exp(0.25 * rng.normal(size=(2001, 4)))
        alarms += len(online_events(det, x))
    assert alarms <= 1


def test_once_retires_a_channel_after_it_fires():
    x = np.ones((700, 2))
    x[200:260, 0] = 50.0  # channel 0 rises twice, channel 1 once
    x[450:510, 0] = 50.0
    x[460:520, 1] = 50.0
    rng = np.random.default_rng(5)
    x *= np.exp(0.05 * rng.normal(size=x.shape))
    kw = {"drift": 1.0, "arl": 1e4, "window": 100, "warmup": 50}
    many, once = per_task_cusum(2, **kw), per_task_cusum(2, once=True, **kw)
    ev_many = [(t, list(many.fired)) for t in range(1, 700) if many.update(t, x[t])]
    ev_once = [(t, list(once.fired)) for t in range(1, 700) if once.update(t, x[t])]
    assert [f for _, f in ev_many] == [[0], [0], [1]]
    assert [f for _, f in ev_once] == [[0], [1]] and once.done == [True, True]


def shared_first_drop(seed: int, n: int = 3000) -> tuple[np.ndarray, list[int]]:
    """4 channels of log-normal noise around 1 (sd 0.1 in log). At step 600 every
    channel moves at once (a shared first drop): channel 0 ×20 for 300 steps (the task
    that drives it), channels 1-3 ×3 for 200 steps (the others' outputs moving with
    it); then channels 1, 2, 3 rise ×5 for 300 steps, each on its own, at 1400,
    2000, 2600 (+ a seeded offset of 0-99 steps). Returns the signal and the starts."""
    rng = np.random.default_rng(seed)
    log = 0.1 * rng.normal(size=(n + 1, 4))
    log[600:900, 0] += np.log(20.0)
    log[600:800, 1:] += np.log(3.0)
    starts = [600]
    for c, s in zip((1, 2, 3), (1400, 2000, 2600), strict=True):
        s += int(rng.integers(0, 100))
        log[s : s + 300, c] += np.log(5.0)
        starts.append(s)
    return np.exp(log), starts


def test_dominant_retires_only_the_channel_that_drives_a_shared_drop():
    """retire="all" loses every later task with the shared first drop; "dominant"
    retires channel 0 alone and finds the later ones (8 seeded runs, 32 transitions)."""
    data = [shared_first_drop(seed) for seed in range(8)]
    runs = [Run(x, s) for x, s in data]
    kw = {"drift": 1.0, "arl": 1e5, "window": 300, "warmup": 100, "once": True, "refractory": 150}
    got = {}
    for retire in ("all", "dominant"):
        ev = [online_events(per_task_cusum(4, retire=retire, **kw), r.signal) for r in runs]
        got[retire] = pooled_score(ev, runs, max_lag=400)
    assert got["all"]["n_transitions"] == 32
    assert got["all"]["recall"] == 0.25  # only the first transition of each run
    assert got["dominant"]["recall"] == 1.0 and got["dominant"]["false_alarms"] == 0
    assert got["dominant"]["median_lag"] <= 5
    x, _ = data[0]
    det = per_task_cusum(4, retire="dominant", **kw)
    for t in range(1, 900):
        det.update(t, x[t])
    assert det.done == [True, False, False, False]  # the group closed: channel 0 retired


def test_rearm_after_a_quiet_period():
    """A channel rises twice, 1000 steps apart: once=True reports it once; rearm=400
    reports both; a channel that keeps firing (a level drifting up all the time) stays
    muted, so re-arming never reports it twice."""
    rng = np.random.default_rng(7)
    n = 3000
    log = 0.1 * rng.normal(size=(n + 1, 2))
    log[500:800, 0] += np.log(5.0)
    log[1500:1800, 0] += np.log(5.0)
    log[500:, 1] += np.linspace(0.0, 8.0 * np.log(10.0), n - 499)  # rises without end
    x = np.exp(log)
    kw = {"drift": 1.0, "arl": 1e5, "window": 300, "warmup": 100}
    runs = {}
    for name, rule in (("many", {}), ("once", {"once": True}),
                       ("rearm", {"once": True, "rearm": 400})):  # fmt: skip
        det = per_task_cusum(2, **kw, **rule)
        runs[name] = [(t, list(det.fired)) for t in range(1, n + 1) if det.update(t, x[t])]
    assert [t for t, f in runs["many"] if f == [0]] == [501, 1501]
    assert len([t for t, f in runs["many"] if f == [1]]) > 20  # the drifting channel fires on
    assert runs["once"] == [(501, [0]), (525, [1])]
    # re-armed after 400 quiet steps, channel 0's second rise is reported; channel 1 never
    # stays quiet that long (it fires every ~120 steps), so it stays muted
    assert runs["rearm"] == [(501, [0]), (525, [1]), (1501, [0])]


def test_strength_is_the_distance_from_the_reference_median():
    rng = np.random.default_rng(3)
    x = np.exp(0.1 * rng.normal(size=400))
    x[300:] *= 10.0
    det = SelfCalibratingCUSUM(drift=1.0, arl=1e4, window=200, warmup=50)
    hist = []
    for t in range(1, 400):
        ref = np.log10(x[max(1, t - 200) : t])
        e = det.update(t, x[t])
        if e is not None:
            assert det.strength(e) == pytest.approx(np.log10(x[t]) - np.median(ref), rel=1e-12)
            hist.append(t)
            break
    assert hist == [301]
    down = SelfCalibratingCUSUM(1.0, 1e4, 200, 50, direction="down", log=False)
    y = np.r_[np.ones(100), np.full(20, 0.5)] + 0.01 * rng.normal(size=120)
    e = next(e for t in range(1, 120) if (e := down.update(t, y[t])))
    assert down.strength(e) == pytest.approx(0.5, abs=0.05)  # a fall of 0.5, counted positive


def test_bonferroni_split_and_fired_channels():
    det = per_task_cusum(4, drift=0.5, arl=1e3, window=50, warmup=20)
    for ch in det.channels:
        assert isinstance(ch, SelfCalibratingCUSUM) and ch.arl == 4e3
    x = np.ones((120, 4)) + 0.01 * np.random.default_rng(0).normal(size=(120, 4))
    x[100:, [1, 3]] *= 100.0
    ev = [(t, list(det.fired)) for t in range(1, 120) if det.update(t, x[t])]
    assert ev == [(101, [1, 3])]  # z is clipped at 4: S passes h (6.2) on the second step


@pytest.mark.parametrize(
    "rule", [{}, {"retire": "dominant", "refractory": 150}, {"retire": "dominant", "rearm": 300}]
)
def test_resume_from_state_dict_gives_the_same_events(rule):
    x, _ = shared_first_drop(4) if rule else multitask(4)
    kw = {"window": 300, "warmup": 100, "once": True, **rule}
    ref = online_events(per_task_cusum(4, **kw), x)
    assert len(ref) >= 3  # the rises are found
    for cut in (150, ref[0] + 1, ref[0] + 60, ref[1] + 50):  # ref[0] + 60: inside a group
        a = per_task_cusum(4, **kw)
        got = [t for t in range(1, cut) if a.update(t, x[t])]
        b = per_task_cusum(4, **kw)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        got += [t for t in range(cut, len(x)) if b.update(t, x[t])]
        assert got == ref


def test_bad_input():
    with pytest.raises(QsemTypeError, match="detectors"):
        PerTask(SelfCalibratingCUSUM())  # type: ignore[arg-type]
    one = SelfCalibratingCUSUM()
    with pytest.raises(QsemValueError, match="detectors"):
        PerTask([one, one])
    with pytest.raises(QsemValueError, match="value"):
        per_task_cusum(3).update(0, [1.0, 2.0])
    with pytest.raises(QsemValueError, match="tasks"):
        per_task_cusum(0)
    with pytest.raises(QsemValueError, match="d"):
        per_task_cusum(3).load_state_dict(per_task_cusum(2).state_dict())
    with pytest.raises(QsemValueError, match="retire"):
        per_task_cusum(2, once=True, retire="first")
    with pytest.raises(QsemValueError, match="rearm"):
        per_task_cusum(2, once=True, rearm=-1)
    with pytest.raises(QsemValueError, match="once"):
        per_task_cusum(2, retire="dominant")


def test_task_entropy_against_numpy():
    gen = torch.Generator().manual_seed(2)
    phi = torch.softmax(torch.randn(2, 9, 3, generator=gen, dtype=torch.float64), -1)
    p = phi.numpy()
    ref = (-(p * np.log2(p)).sum(-1)).reshape(2, 3, 3).mean(-1)
    np.testing.assert_allclose(task_entropy(phi, 3).numpy(), ref, rtol=1e-12)
    with pytest.raises(QsemValueError, match="phi"):
        task_entropy(phi, 2)


@pytest.mark.parametrize("module", ["qsem.emergence.pertask", "qsem.narrow.transitions"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
