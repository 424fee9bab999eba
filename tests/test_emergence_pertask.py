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


def test_bonferroni_split_and_fired_channels():
    det = per_task_cusum(4, drift=0.5, arl=1e3, window=50, warmup=20)
    for ch in det.channels:
        assert isinstance(ch, SelfCalibratingCUSUM) and ch.arl == 4e3
    x = np.ones((120, 4)) + 0.01 * np.random.default_rng(0).normal(size=(120, 4))
    x[100:, [1, 3]] *= 100.0
    ev = [(t, list(det.fired)) for t in range(1, 120) if det.update(t, x[t])]
    assert ev == [(101, [1, 3])]  # z is clipped at 4: S passes h (6.2) on the second step


def test_resume_from_state_dict_gives_the_same_events():
    x, _ = multitask(4)
    ref = online_events(per_task_cusum(4, window=300, warmup=100, once=True), x)
    assert len(ref) >= 3  # the rises are found
    for cut in (150, ref[0] + 1, ref[1] + 50):
        a = per_task_cusum(4, window=300, warmup=100, once=True)
        got = [t for t in range(1, cut) if a.update(t, x[t])]
        b = per_task_cusum(4, window=300, warmup=100, once=True)
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
