"""``qsem run emergence-quantum``: per-task quantum series against Qiskit, shot series, smoke, slow.

The slow test runs the default study and asserts what it measured (docs/emergence.md,
"The quantum detector on many transitions").
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from qsem.experiments import emergence_quantum as eq
from qsem.experiments import get_experiment
from qsem.narrow.emergence_train import quantum_head, train_hybrid
from qsem.narrow.transitions import find_transition
from qsem.runner import ConfigError, run_experiment
from qsem.simulators import estimate_overlap

# fmt: off
TINY = ["seeds=1", "tune_seeds=1", "hybrid_steps=60", "n_control=2", "n_atoms=2", "k=1",
        "n_task=2", "hybrid_widths=8", "hybrid_per_task=16", "eval_per_task=16",
        "hybrid_probe_per_task=3", "n_qubits=2", "q_layers=1", "lag=10", "slow_lag=10",
        "shot_every=5", "shot_grid=[20,2000]", "onset=3", "plateau=10", "max_lag=30",
        "before=5", "refractory=10", "warmup=10", "timing_reps=1", "log_every=20", "aer=false"]
# fmt: on


def _cfg(**kw: Any) -> eq.EmergenceQuantumConfig:
    base = eq.EmergenceQuantumConfig(
        seeds=1, tune_seeds=1, hybrid_steps=40, n_control=2, n_atoms=2, k=1, n_task=2,
        hybrid_widths=(8,), hybrid_per_task=16, eval_per_task=16, hybrid_probe_per_task=3,
        n_qubits=2, q_layers=1, lag=10, slow_lag=10, shot_every=5, onset=3, plateau=10, warmup=10,
    )  # fmt: skip
    return eq.EmergenceQuantumConfig(**{**base.__dict__, **kw})


@pytest.fixture(scope="module")
def tiny_run() -> tuple[eq.EmergenceQuantumConfig, dict[str, Any]]:
    cfg = _cfg()
    torch.set_num_threads(1)
    return cfg, train_hybrid(cfg, 3, tag="t")


def _qiskit_state(circuit: Any, x: torch.Tensor, w: torch.Tensor) -> np.ndarray:
    from qiskit.quantum_info import Statevector

    from qsem.circuits.qiskit_export import to_qiskit

    qc, pmap = to_qiskit(circuit)
    bound = qc.assign_parameters({pmap["x"]: x.tolist(), pmap["w"]: w.tolist()})
    return np.asarray(Statevector(bound).data)


def test_task_series_against_qiskit_states(tiny_run):
    """task_q_lagged at a kept step: per-task mean of 1 − |⟨Ω_t|Ω_{t−lag}⟩|², Qiskit states."""
    cfg, res = tiny_run
    circuit = quantum_head(cfg.n_qubits, cfg.q_layers)
    px, pw = res["probe_x"], res["probe_w"]
    k = cfg.lag // cfg.shot_every
    n_t, per = 2, cfg.hybrid_probe_per_task
    assert px.shape == (cfg.hybrid_steps // cfg.shot_every + 1, n_t * per, cfg.n_qubits)
    checked = 0
    for i in (k, k + 3, px.shape[0] - 1):
        step = i * cfg.shot_every
        d = np.empty(n_t * per)
        for r in range(n_t * per):
            a = _qiskit_state(circuit, px[i - k, r], pw[i - k])
            b = _qiskit_state(circuit, px[i, r], pw[i])
            d[r] = 1 - abs(np.vdot(a, b)) ** 2
        want = d.reshape(n_t, per).mean(1)
        np.testing.assert_allclose(res["task_q_lagged"][step].numpy(), want, atol=1e-10)
        # the probe-wide series is the mean over every probe input
        np.testing.assert_allclose(float(res["q_lagged"][step]), d.mean(), atol=1e-10)
        checked += 1
    assert checked == 3
    # per-task classical signals: the tasks' columns differ (each sees its own inputs)
    t = res["task_ema_slow"][cfg.lag :]
    assert t.shape[1] == n_t and not torch.allclose(t[:, 0], t[:, 1])


def test_shot_series_intervals_and_pooling(tiny_run):
    cfg, res = tiny_run
    k = cfg.lag // cfg.shot_every
    exact = res["task_q_lagged"][:: cfg.shot_every].numpy()  # distance per kept step
    big = eq.shot_series(res, cfg, 20000, seed=1)
    small = eq.shot_series(res, cfg, 20, seed=1)
    assert big.shape == small.shape == (exact.shape[0], 2, 3)
    np.testing.assert_array_equal(big[:k], 1.0)  # no pair before lag
    f = 1 - exact[k:]
    lo, est, hi = big[k:, :, 1], big[k:, :, 0], big[k:, :, 2]
    assert np.all(lo <= est) and np.all(est <= hi)
    # 60,000 pooled shots per task: the estimate is within 5 binomial SEs of the exact mean
    se = np.sqrt(np.maximum(f * (1 - f), 1e-6) / (20000 * cfg.hybrid_probe_per_task))
    assert np.all(np.abs(est - f) <= 5 * se + 1e-9)
    # wider intervals at fewer shots (on average), and seeded: the same call, the same series
    assert np.mean(small[k:, :, 2] - small[k:, :, 1]) > np.mean(hi - lo)
    np.testing.assert_array_equal(small, eq.shot_series(res, cfg, 20, seed=1))


def test_task_runs_follow_the_onset_rule(tiny_run):
    cfg, res = tiny_run
    runs = eq.task_runs(res, cfg, "task_q_lagged")
    assert len(runs) == 2
    w = cfg.warmup  # the detectors watch steps w..n, counted from w
    for j, r in enumerate(runs):
        t = find_transition(res["losses"][:, j].numpy(), onset=cfg.onset, plateau=cfg.plateau)
        assert r.starts == ([] if t is None else [max(0, t.start - w)])
        np.testing.assert_array_equal(r.signal, res["task_q_lagged"][w:, j].numpy())
        assert r.n_steps == cfg.hybrid_steps - w
    shots = eq.shot_series(res, cfg, 10, seed=0)
    sr = eq.task_runs(res, cfg, shots)
    np.testing.assert_array_equal(sr[1].signal, shots[w // cfg.shot_every :, 1])


def test_tiny_run_end_to_end(tmp_path: Path):
    res = run_experiment(
        get_experiment("emergence-quantum"), overrides=TINY, out=tmp_path / "r", quiet=True
    ).results
    d = res["detectors"]
    assert set(d) == {"quantum exact", "classical frobenius", "classical adaptive",
                      "quantum 20 shots", "quantum 2000 shots"}  # fmt: skip
    n = res["n_transitions"]
    assert n == sum(t is not None for v in res["transitions"].values() for t in v)
    assert all(v["n_transitions"] == n for v in d.values())  # every detector, the same truth
    assert {t["backend"] for t in res["timing"]} == {"torch"}
    assert len(res["timing"]) == 1 + 2 * 2  # exact distance + 2 samplings x 2 shot counts
    assert "| quantum 2000 shots | 2000 |" in res["table"]
    assert (tmp_path / "r" / "table.md").read_text() == res["table"]


class _Boom(Exception):
    pass


def test_resume_equals_uninterrupted(tmp_path: Path, interrupt_log):
    """Stopped inside the scored seed's training (step 40), resumed from its checkpoint: the
    same detectors, transitions and shot counts as an uninterrupted run (timings aside)."""
    exp = get_experiment("emergence-quantum")
    ref = run_experiment(exp, overrides=TINY, out=tmp_path / "ref", quiet=True,
                         checkpoint_every=20)  # fmt: skip
    record = itertools.count(1)  # 4 records per seed (steps 0, 20, 40, 60)
    out = tmp_path / "run"
    with interrupt_log(lambda step, v: next(record) == 7, _Boom), pytest.raises(_Boom):
        run_experiment(exp, overrides=TINY, out=out, quiet=True, checkpoint_every=20)
    resumed = run_experiment(exp, out=out, resume=True, quiet=True, checkpoint_every=20)
    assert resumed.resumed_from_step is not None and resumed.resumed_from_step > 60
    timed = ("timing", "timings_s", "table")  # wall-clock figures
    strip = lambda d: {k: v for k, v in d.items() if k not in timed}  # noqa: E731
    assert strip(resumed.results) == strip(ref.results)
    assert (out / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()


def _planted(cfg: eq.EmergenceQuantumConfig, starts: list[int], seed: int) -> dict[str, Any]:
    """A run whose task j changes its probe states (and its loss and classical signal) over
    the 30 steps after starts[j]; small jitter elsewhere. Series as train_hybrid's."""
    g = np.random.default_rng(seed)
    n, n_t, per = cfg.hybrid_steps, len(starts), cfg.hybrid_probe_per_task
    t = np.arange(n + 1)[:, None]
    ramp = np.clip((t - np.asarray(starts)) / 30, 0, 1)  # (n + 1, T)
    base = g.uniform(0, 3, (n_t * per, cfg.n_qubits))
    x = (
        base
        + 1.5 * np.repeat(ramp, per, axis=1)[..., None]
        + g.normal(0, 3e-3, (n + 1, *base.shape))
    )
    x = torch.as_tensor(x)
    w = torch.full((n + 1, 2 * cfg.n_qubits * cfg.q_layers), 0.4, dtype=torch.float64)
    circuit = quantum_head(cfg.n_qubits, cfg.q_layers)
    d = torch.zeros(n + 1, n_t, dtype=torch.float64)
    for s in range(1, n + 1):
        old = max(0, s - cfg.lag)
        f = estimate_overlap(circuit, {"x": x[old], "w": w[old]}, {"x": x[s], "w": w[s]})
        d[s] = (1 - f).view(n_t, per).mean(1)
    classical = torch.as_tensor(np.abs(np.gradient(ramp, axis=0)) + g.uniform(0, 1e-3, ramp.shape))
    every = cfg.shot_every
    return {
        "losses": torch.as_tensor(1.0 - 0.98 * ramp, dtype=torch.float32),
        "task_q_lagged": d,
        f"task_{cfg.signal}": classical,
        "probe_x": x[::every].clone(),
        "probe_w": w[::every].clone(),
        "seconds": 0.0,
    }


def test_planted_transitions_are_found_per_task():
    """The mechanism on planted runs: each task's detector finds its own task's change."""
    cfg = _cfg(hybrid_steps=400, shot_grid=(3, 2000), max_lag=60, refractory=100, onset=1)
    tune_s, score_s = [100], [0]
    plant = {100: [150, 260], 0: [120, 300]}
    done = {f"hybrid-{s}": _planted(cfg, plant[s], s) for s in (*tune_s, *score_s)}
    for s in plant:  # the onset rule reads the planted starts back (loss leaves 1 at start)
        got = eq.task_runs(done[f"hybrid-{s}"], cfg, "task_q_lagged")
        assert [r.starts for r in got] == [[p - cfg.warmup] for p in plant[s]]
    dets = eq.analyse(done, cfg)
    for name in ("quantum exact", "quantum 2000 shots", "classical frobenius"):
        d = dets[name]
        assert d["n_transitions"] == 2 and d["recall"] == 1.0, (name, d)
        assert d["false_alarms"] == 0 and 0 <= d["median_lag"] <= 30, (name, d)
    # 3 shots per input: the interval cannot clear the tuned threshold as early, or at all
    few = dets["quantum 3 shots"]
    assert few["recall"] < 1.0 or few["median_lag"] > dets["quantum 2000 shots"]["median_lag"]
    need = eq.shots_for_recall(dets, cfg)
    assert need["classical_recall"] == 1.0 and need["exact_recall"] == 1.0
    assert need["shots_for_exact_recall"] == need["shots_per_input"]
    assert need["shots_per_input"] == (3 if few["recall"] == 1.0 else 2000)
    dets["quantum 3 shots"] = {**few, "recall": 0.5}  # the rule, on a recall below the target
    assert eq.shots_for_recall(dets, cfg)["shots_per_input"] == 2000


@pytest.mark.parametrize(
    "override, key",
    [
        ({"lag": 12}, "lag"),
        ({"warmup": 7}, "warmup"),
        ({"shot_grid": ()}, "shot_grid"),
        ({"family": "grok"}, "family"),
        ({"signal": "nope"}, "signal"),
        ({"tune_offset": 0}, "tune_offset"),
        ({"n_task": 1}, "n_task"),
    ],
)
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        _cfg(**override)


def test_hybrid_refuses_a_many_class_family():
    cfg = SimpleNamespace(**{**_cfg().__dict__, "family": "grok", "modulus": 5,
                             "train_frac": 0.5, "split_seed": 0})  # fmt: skip
    with pytest.raises(ValueError, match="family"):
        train_hybrid(cfg, 0, tag="t")


@pytest.mark.slow
def test_default_study(tmp_path: Path):
    """The default run (~19 min here); figures of docs/emergence.md, with margins."""
    res = run_experiment(
        get_experiment("emergence-quantum"), out=tmp_path / "r", quiet=True
    ).results
    assert res["seeds"] == list(range(8)) and res["tune_seeds"] == [100, 101]
    n = res["n_transitions"]
    assert n >= 30  # measured 31 (4 tasks x 8 seeds; seed 7 does not learn its rarest task)
    d = res["detectors"]
    assert all(v["n_transitions"] == n for v in d.values())
    # measured: quantum exact recall 0.81, 0.27 FA / 1000 steps, median lag 67, p90 237
    q = d["quantum exact"]
    assert 0.7 <= q["recall"] <= 0.9 and 0.1 <= q["false_alarms_per_1000"] <= 0.5
    assert q["median_lag"] <= 100
    # measured: classical adaptive (ema_slow, per task) recall 0.97, 0.04 FA, median lag 108
    c = d["classical adaptive"]
    assert c["recall"] >= 0.9 and c["false_alarms_per_1000"] <= 0.1 and c["median_lag"] <= 150
    # measured: shots recall 0.87, 0.84, 0.94, 0.81, 0.94 at 10 ... 1000 shots per input
    assert all(d[f"quantum {k} shots"]["recall"] >= 0.75 for k in (10, 30, 100, 300, 1000))
    # no shot count reaches the classical recall: the exact quantum signal does not either
    need = res["shots_for_classical_recall"]
    assert need["shots_per_input"] is None and need["classical_recall"] > q["recall"]
    assert need["shots_for_exact_recall"] is not None  # measured: 10 shots per probe input
    assert need["shots_for_exact_recall"] <= 100
    t = {(r["backend"], r["sampling"], r["shots"]): r["median_s"] for r in res["timing"]}
    # measured 16 ms (torch, shots from exact probabilities) vs 136 ms (Aer drawing 1000 shots)
    assert t[("torch", "exact", 1000)] < t[("aer", "backend", 1000)]
