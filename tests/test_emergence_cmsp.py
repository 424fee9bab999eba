"""``qsem run emergence-cmsp``: ground-truth rule, signals, pooled scores, smoke, resume, slow.

The slow test runs the default study (10 scored seeds, 3 tuning seeds, the
hybrid) and asserts what it measured (docs/emergence.md, "Ground truth on CMSP").
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qsem.emergence import FixedThreshold
from qsem.emergence.benchmark import Run, merge_starts, online_events, pooled_score, tune
from qsem.experiments import emergence_cmsp, get_experiment
from qsem.narrow.transitions import ProbeSignals, Transition, find_transition, transitions_of
from qsem.runner import ConfigError, run_experiment

PNG = b"\x89PNG\r\n\x1a\n"
# fmt: off
TINY = ["seeds=2", "tune_seeds=1", "steps=30", "n_task=8", "k=2", "widths=8", "per_task=8",
        "eval_per_task=16", "probe_per_task=4", "lag=5", "max_lag=20", "merge_gap=10", "before=5",
        "refractory=10", "horizon=10", "epot_windows=5", "onset=3", "plateau=10",
        "hybrid_seeds=1", "hybrid_steps=12", "hybrid_per_task=4", "hybrid_probe_per_task=2",
        "hybrid_widths=4", "n_qubits=2", "q_layers=1", "shots=20", "shot_every=4",
        "log_every=5"]
# fmt: on


# --------------------------------------------------------------------------
# the transition rule, merging, signals and pooled scores (hand-made inputs)
# --------------------------------------------------------------------------


def test_transition_rule_on_a_hand_made_curve():
    #            0    1    2     3    4    5     6    7     8
    loss = [1.0, 1.0, 0.95, 0.92, 0.7, 0.4, 0.08, 0.5, 0.01]
    # learned = first step < 0.1 (6); start = last step > 0.9 before it (3)
    assert find_transition(loss) == Transition(3, 6)
    assert find_transition(loss, high=0.96) == Transition(1, 6)
    assert find_transition(loss, low=0.05) == Transition(3, 8)
    assert find_transition([1.0, 0.5, 0.3]) is None  # never learned
    assert find_transition([0.5, 0.05]) is None  # never above 0.9 before
    assert find_transition(loss, steps=[10 * i for i in range(9)]) == Transition(30, 60)
    curves = np.array([loss, [1.0] * 9]).T
    assert transitions_of(curves) == [Transition(3, 6), None]
    with pytest.raises(ValueError, match="low"):
        find_transition(loss, high=0.1, low=0.5)


def test_onset_rule_on_a_hand_made_curve():
    loss = [1.0, 1.0, 0.95, 0.92, 0.7, 0.4, 0.08, 0.5, 0.01]
    # cross = 3; plateau level = median(1, 1, 0.95, 0.92) = 0.975; last step <= 3 at or above it: 1
    assert find_transition(loss, onset=1) == Transition(1, 6)
    # running means (width 3, edge-padded): 1, 0.983, 0.957, 0.857 -> last >= 0.975 is step 1
    assert find_transition(loss, onset=3) == Transition(1, 6)
    # plateau of 2 steps before cross: median(1, 0.95, 0.92) = 0.95 -> step 2
    assert find_transition(loss, onset=1, plateau=2) == Transition(2, 6)
    # a plateau above the threshold (a confidently wrong composite at ~1.05 bits)
    curve = np.r_[np.full(50, 1.125), [1.0, 0.96, 0.93, 0.8, 0.6, 0.3, 0.05]]
    # cross = 52; level 1.125; 4-step means over [i-2, i+1]: 1.125 up to step 48, then less
    assert find_transition(curve) == Transition(52, 56)
    assert find_transition(curve, onset=4) == Transition(48, 56)


def test_merge_starts_and_ground_truth_groups():
    assert merge_starts([900, 300, 350, 420, 3000], gap=100) == [300, 420, 900, 3000]
    assert merge_starts([300, 350, 420], gap=500) == [300]
    cfg = emergence_cmsp.EmergenceCMSPConfig(merge_gap=100)
    steps = 40
    losses = np.ones((steps, 3))
    losses[10:, 0] = 0.05  # start 9, learned 10
    losses[12:, 1] = 0.5
    losses[15:, 1] = 0.05  # start 11, learned 15 -> merged with task 0
    gt = emergence_cmsp.ground_truth(losses, cfg)
    assert gt["starts"] == [9] and gt["ends"] == [15]
    assert gt["per_task"] == [[9, 10], [11, 15], None]


def test_probe_signals_by_hand():
    sig = ProbeSignals(beta=0.5, lag=2)
    phis = [
        torch.tensor([[[0.0, 1.0]]]),
        torch.tensor([[[1.0, 0.0]]]),
        torch.tensor([[[1.0, 0.0]]]),
        torch.tensor([[[0.0, 1.0]]]),
    ]
    outs = [sig.update(p) for p in phis]
    # EMA: e0 = (0,1), e1 = (0.5,0.5), e2 = (0.75,0.25), e3 = (0.375,0.625)
    s2 = math.sqrt(2)
    assert [float(o["literal"][0]) for o in outs] == pytest.approx([0, s2, 0, s2])
    ema = [0, 0.5 * s2, 0.75 * s2, math.sqrt(2 * 0.125**2)]  # vs e0, e0, e0 (lag 2), e1
    assert [float(o["ema"][0]) for o in outs] == pytest.approx(ema)
    assert [float(o["lagged"][0]) for o in outs] == pytest.approx([0, s2, s2, s2])
    fresh = ProbeSignals(beta=0.5, lag=2)
    fresh.load_state_dict(sig.state_dict())
    nxt = torch.tensor([[[0.5, 0.5]]])
    assert torch.equal(fresh.update(nxt)["ema"], sig.update(nxt)["ema"])
    with pytest.raises(ValueError, match="beta"):
        ProbeSignals(beta=1.0)


def test_pooled_score_by_hand():
    runs = [Run(np.zeros(1001), [100, 600]), Run(np.zeros(1001), [200])]
    events = [[110, 300, 640], [150]]
    s = pooled_score(events, runs, max_lag=50, before=0)
    # run 0: 110 -> 100 (lag 10), 640 -> 600 (lag 40), 300 false; run 1: 150 before 200: false
    assert (s["n_matched"], s["n_events"], s["false_alarms"]) == (2, 4, 2)
    assert s["recall"] == pytest.approx(2 / 3) and s["precision"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["false_alarms_per_1000"] == pytest.approx(1000 * 2 / 2000)
    assert s["median_lag"] == pytest.approx(25.0)
    s = pooled_score(events, runs, max_lag=50, before=60)  # now 150 matches 200 (lag -50)
    assert s["n_matched"] == 3 and sorted(s["per_run"][1]["lags"]) == [-50]


def test_tune_picks_the_best_f1_on_the_tuning_runs():
    x = np.r_[np.zeros(50), np.ones(5), np.zeros(45)] + 0.1 * np.sin(np.arange(100))
    runs = [Run(x, [50])]

    def detect(p, r):
        return online_events(FixedThreshold(p["theta"], refractory=100), r.signal)

    best, table = tune(detect, [{"theta": 0.05}, {"theta": 0.5}, {"theta": 2.0}], runs, max_lag=5)
    assert best == {"theta": 0.5} and len(table) == 3
    assert [row["f1"] for row in table][1] == 1.0


# --------------------------------------------------------------------------
# the experiment: config errors, smoke, resume
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("seeds=0", "seeds"),
        ("signal=foo", "signal"),
        ("low_bits=0.95", "low_bits"),
        ("tune_offset=0", "tune_offset"),
        ("k=9", "n_task"),
        ("ema_beta=1.0", "ema_beta"),
        ("widths=0", "widths"),
        ("hybrid_lr=-1", "hybrid_lr"),
        ("confidence=1.5", "confidence"),
        ("no_such_key=1", "no_such_key"),
    ],
)
def test_bad_config_names_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key):
        run_experiment(
            get_experiment("emergence-cmsp"), overrides=[override], out=tmp_path / "r", quiet=True
        )


def test_smoke_tiny(tmp_path):
    r = run_experiment(
        get_experiment("emergence-cmsp"), overrides=TINY, out=tmp_path / "r", quiet=True
    )
    res = json.loads((r.out_dir / "results.json").read_text())
    assert (r.out_dir / "detections.png").read_bytes()[:8] == PNG
    assert (r.out_dir / "table.md").read_text().startswith("| model")
    assert res["seeds"] == [0, 1] and res["tune_seeds"] == [100] and res["hybrid_seeds"] == [0]
    for name in ("frobenius", "adaptive", "l1", "bocpd", "pelt", "binseg", "zero", "quantum exact"):
        d = res["detectors"][name]
        for key in ("recall", "false_alarms_per_1000", "median_lag", "p90_lag", "f1", "params"):
            assert key in d
    assert res["detectors"]["zero"]["n_events"] == 0
    assert {"mlp", "hybrid", "window"} <= set(res["epot_auroc"])
    assert res["signal"] in ("literal", "lagged", "ema") and "transition_rule" in res
    assert set(res["timings_s"]) == {"mlp-tune", "mlp-score", "hybrid-tune-100", "hybrid-0"}
    lines = (r.out_dir / "metrics.jsonl").read_text().splitlines()
    assert {json.loads(x)["phase"] for x in lines} == set(res["timings_s"])


class _Boom(Exception):
    pass


@pytest.mark.parametrize("die_at", [3, 9])  # inside the scored MLP phase, inside the hybrid
def test_resume_equals_uninterrupted(tmp_path, interrupt_log, die_at):
    exp = get_experiment("emergence-cmsp")
    ref = run_experiment(exp, overrides=TINY, out=tmp_path / "ref", quiet=True, checkpoint_every=5)
    record = itertools.count(1)  # 7 records in the tuning phase (steps 0, 5, ..., 30)
    out = tmp_path / "run"
    with interrupt_log(lambda step, v: next(record) == 7 + die_at, _Boom), pytest.raises(_Boom):
        run_experiment(exp, overrides=TINY, out=out, quiet=True, checkpoint_every=5)
    resumed = run_experiment(exp, out=out, resume=True, quiet=True, checkpoint_every=5)
    assert resumed.resumed_from_step is not None and resumed.resumed_from_step > 0

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in ("timings_s",)}

    assert strip(resumed.results) == strip(ref.results)
    assert (out / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()


# --------------------------------------------------------------------------
# the default study (make studies)
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_default_study(tmp_path: Path):
    """The default run (776 s of CPU; 20-41 min on 2 shared cores); figures of
    docs/emergence.md (round seven's run, labels of the E_pot AUROC fixed), with margins."""
    res = run_experiment(get_experiment("emergence-cmsp"), out=tmp_path / "r", quiet=True).results
    assert res["seeds"] == list(range(10)) and res["tune_seeds"] == [100, 101, 102, 103, 104]
    assert res["hybrid_seeds"] == [0, 1, 2] and res["hybrid_tune_seeds"] == [100]
    assert res["signal"] == "ema_slow"  # chosen on the tuning seeds (measured F1 0.95)
    assert res["signal_tuned_f1"]["literal"] < res["signal_tuned_f1"]["ema_slow"]
    d = res["detectors"]
    assert d["zero"]["recall"] == 0.0 and d["zero"]["n_events"] == 0
    assert d["adaptive"]["n_transitions"] == 19
    # measured: adaptive recall 0.79, 0.03 FA/1000, median lag 166, F1 0.81
    assert d["adaptive"]["recall"] >= 0.7 and d["adaptive"]["false_alarms_per_1000"] <= 0.2
    # measured: L1 recall 1.00, 0.02 FA/1000, median lag 199 (the lag target of 150 is missed)
    assert d["l1"]["recall"] >= 0.9 and d["l1"]["false_alarms_per_1000"] <= 0.2
    assert d["l1"]["median_lag"] > 150
    # the best qsem detector beats both change-point baselines on F1 (0.81 vs 0.41 / 0.42)
    best = max(d[n]["f1"] for n in ("frobenius", "adaptive", "l1"))
    assert best > d["pelt"]["f1"] + 0.2 and best > d["binseg"]["f1"] + 0.2
    # the literal step-to-step Δφ does worse than the chosen signal (F1 0.51 vs 0.81)
    assert d["adaptive (literal Δφ)"]["f1"] < d["adaptive"]["f1"]
    # quantum detector on the hybrid (3 atom transitions): recall 1.0 exact and with shots
    assert d["quantum exact"]["recall"] == 1.0 and d["quantum shots"]["recall"] == 1.0
    assert d["quantum shots"]["false_alarms_per_1000"] <= 0.2
    # E_pot AUROC, each run labelled on its own steps: MLP 0.675, hybrid 0.791 (the 0.8 target
    # missed by both; before the labelling fix the docs said 0.67 / 0.81). After the first 200
    # steps both are near chance (0.528 on 1762 positive steps, 0.586 on 179); the Bures term
    # adds nothing (0.793 without it)
    ep = res["epot_auroc"]
    assert 0.62 <= ep["mlp"] < 0.75 and 0.74 <= ep["hybrid"] < 0.84
    assert ep["mlp_positives"] == 2721 and ep["hybrid_positives"] == 578
    assert ep["mlp_positives_after_horizon"] == 1762 and ep["hybrid_positives_after_horizon"] == 179
    assert ep["mlp_after_horizon"] < 0.6 and ep["hybrid_after_horizon"] < 0.65
    assert abs(ep["hybrid_no_bures"] - ep["hybrid"]) < 0.02
    # quantum exact on Omega_t vs Omega_{t-100}: 1 false alarm in round seven (2 in the first run)
    assert d["quantum exact"]["false_alarms_per_1000"] <= 0.2
