"""``qsem run self-distill-curve``: the label-fraction study through two sweeps.

Fast: a tiny config (two seeds, one fraction, trials in-process) whose table is
recomputed here from the trials' own ``results.json`` and metrics; the curve's
arithmetic on hand-made rows. Slow: the default study and its documented figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qsem.experiments import get_experiment
from qsem.experiments.self_distill_curve import SelfDistillCurveConfig, _verdict, curve_rows
from qsem.report import load_run
from qsem.runner import ConfigError, run_experiment

PNG = b"\x89PNG\r\n\x1a\n"
TINY = [
    "n_seeds=2", "label_fractions=[0.25]", "workers=0", "bootstrap=200", "control=true",
    'task=["n_train_kbs=12","n_test_kbs=4","queries_per_kb=8","epochs=2","batch_size=32"]',
    'loop=["probe_size=8","distill.probe_every=2","distill.temperature=3.0",'
    '"distill.labelled_batch=4","distill.detectors=[\\"frobenius\\"]","aer_seeds=0"]',
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sdc") / "run"
    res = run_experiment(get_experiment("self-distill-curve"), overrides=TINY, out=out, quiet=True)
    return out, res.results


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_tiny_table_is_recomputed_from_the_sweep_trials(tiny) -> None:
    out, res = tiny
    sd = out / "sweeps" / "self-distill" / "label_fraction=0.25"
    full = out / "sweeps" / "kleene"
    hard, dist, ref = [], [], []
    for s in (0, 1):
        trial = _json(sd / f"seed-{s}" / "results.json")
        assert trial["seeds"] == [s] and trial["label_fraction"] == 0.25
        hard.append(trial["accuracy"]["hard"]["per_seed"][0])
        dist.append(trial["accuracy"]["distill"]["per_seed"][0])
        ref.append(_json(full / f"seed-{s}" / "results.json")["test_accuracy"])
        # every label in the reference, the same task in both sweeps
        kcfg, scfg = (_json(d / f"seed-{s}" / "config.json") for d in (full, sd))
        assert kcfg["label_fraction"] == 1.0 and kcfg["n_train_kbs"] == scfg["n_train_kbs"] == 12
        assert scfg["distill"]["temperature"] == 3.0  # the loop overrides reach the trials
    (row,) = res["table"]
    assert row["hard"] == pytest.approx(np.mean(hard))
    assert row["distill"] == pytest.approx(np.mean(dist))
    assert row["full"] == pytest.approx(np.mean(ref)) == res["full_accuracy"]
    gap = np.mean(ref) - np.mean(hard)
    want = (np.mean(dist) - np.mean(hard)) / gap if gap > 1e-12 else None
    assert row["recovered"] == (pytest.approx(want) if want is not None else None)
    assert [(r["seed"], r["hard"], r["distill"]) for r in res["per_seed"]] == list(
        zip((0, 1), hard, dist, strict=True)
    )
    assert (out / "self-distill-curve.png").read_bytes()[:8] == PNG
    report = load_run(out)  # the report shows the curve first and the table per fraction
    assert report.figures[0].name == "self-distill-curve.png"
    (table,) = [t for t in report.tables if t.title == "table"]
    assert table.columns[:2] == ["label_fraction", "seeds"] and len(table.rows) == 1


def test_tiny_distill_arm_trained_on_the_soft_term(tiny) -> None:
    """The distill trials ran the library's loop: soft-term steps on unlabelled batches."""
    out, _ = tiny
    recs = [
        json.loads(x)
        for x in (out / "sweeps/self-distill/label_fraction=0.25/seed-0/metrics.jsonl")
        .read_text()
        .splitlines()
    ]
    probes = [r for r in recs if r.get("kind") == "probe" and r.get("arm") == "distill"]
    assert probes and all(r["loss_soft"] > 0 for r in probes[1:])
    assert not [r for r in recs if r.get("arm") == "hard" and "loss_soft" in r]


def test_tiny_control_arm_is_the_loop_without_its_soft_term(tiny) -> None:
    """control=true: a third arm, the same loop (here with a labelled batch per step) at
    w_soft = 0; the table's control columns are recomputed from its trials."""
    out, res = tiny
    sd = out / "sweeps" / "self-distill" / "label_fraction=0.25"
    ctl, dist = [], []
    for s in (0, 1):
        trial = _json(sd / f"seed-{s}" / "results.json")
        ctl.append(trial["accuracy"]["control"]["per_seed"][0])
        dist.append(trial["accuracy"]["distill"]["per_seed"][0])
        assert _json(sd / f"seed-{s}" / "config.json")["distill"]["labelled_batch"] == 4
        recs = [
            json.loads(x) for x in (sd / f"seed-{s}" / "metrics.jsonl").read_text().splitlines()
        ]
        probes = [r for r in recs if r.get("kind") == "probe" and r.get("arm") == "control"]
        assert probes and all(r["loss_soft"] == 0.0 for r in probes)
    (row,) = res["table"]
    assert row["control"] == pytest.approx(np.mean(ctl))
    assert row["diff_vs_control"] == pytest.approx(np.mean(dist) - np.mean(ctl))
    assert [r["control"] for r in res["per_seed"]] == ctl


def _rows(hard: list[float], sd: list[float], full: float, f: float) -> list[dict[str, Any]]:
    return [
        {"fraction": f, "seed": s, "hard": h, "distill": d, "full": full}
        for s, (h, d) in enumerate(zip(hard, sd, strict=True))
    ]


def test_curve_rows_by_hand() -> None:
    cfg = SelfDistillCurveConfig(label_fractions=(0.01, 0.1), bootstrap=500)
    hard = [0.5, 0.6, 0.55, 0.52, 0.58, 0.61]
    sd = [h + 0.3 + 0.01 * i for i, h in enumerate(hard)]  # always better: Wilcoxon p = 0.031
    rows = _rows(hard, sd, 0.95, 0.01) + _rows(hard, hard[::-1], 0.95, 0.1)
    low, high = curve_rows(rows, cfg)
    want = (np.mean(sd) - np.mean(hard)) / (0.95 - np.mean(hard))
    assert low["recovered"] == pytest.approx(want)
    assert low["recovered_low"] <= low["recovered"] <= low["recovered_high"]
    assert low["wilcoxon_p"] == pytest.approx(0.03125) and low["helps"]
    assert (low["wins"], low["losses"]) == (6, 0)
    assert high["recovered"] == pytest.approx(0.0) and not high["helps"]
    verdict = _verdict([low, high], cfg)
    assert verdict == {
        "no_longer_helps_from": 0.1,
        "best_recovered_at_target": pytest.approx(want),
        "target_met": want >= 0.85,
    }
    # helping at the largest fraction: it never stops helping within the range
    assert _verdict([low, {**high, "helps": True}], cfg)["no_longer_helps_from"] is None
    # no gap (hard already at the reference): nothing to recover
    flat = curve_rows(_rows([0.9, 0.9], [0.9, 0.91], 0.9, 0.01), cfg)[0]
    assert flat["recovered"] is None


@pytest.mark.parametrize(
    ("override", "key"),
    [("label_fractions=[0.1,0.05]", "label_fractions"),
     ("label_fractions=[1.0]", "label_fractions"), ("n_seeds=1", "n_seeds"),
     ("alpha=0", "alpha"), ('task=["epochs"]', "task")],
)  # fmt: skip
def test_bad_config_names_the_key(tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        run_experiment(get_experiment("self-distill-curve"), overrides=[override],
                       out=tmp_path / "x", quiet=True)  # fmt: skip


@pytest.mark.slow
def test_default_study(tmp_path: Path) -> None:
    """The default run (10 seeds × 1, 2, 5, 10 % labels, three arms; 990 s of CPU, 34-35
    minutes on 2 loaded cores, ~8-9 estimated on 2 idle ones): the figures docs/distill.md
    gives for round two, reproduced exactly in round seven."""
    out = tmp_path / "run"
    res = run_experiment(get_experiment("self-distill-curve"), out=out, quiet=True).results
    assert res["seeds"] == list(range(10))
    assert [r["label_fraction"] for r in res["table"]] == [0.01, 0.02, 0.05, 0.1]
    assert all(r["seeds"] == 10 for r in res["table"])
    assert (out / "self-distill-curve.png").read_bytes()[:8] == PNG
    assert res["full_accuracy"] == pytest.approx(DOC_FULL, abs=2e-3)
    got = [v for r in res["table"] for v in (r["hard"], r["control"], r["distill"])]
    assert got == pytest.approx([v for row in DOC_TABLE for v in row], abs=2e-3)
    assert res["target_met"] is DOC_TARGET_MET
    assert res["no_longer_helps_from"] == DOC_STOP
    recovered = [r["recovered"] for r in res["table"]]
    assert recovered == pytest.approx([0.38, 0.70, 0.81, 0.83], abs=0.01)
    soft_part = [r["diff_vs_control"] for r in res["table"]]
    assert soft_part == pytest.approx([-0.028, 0.024, 0.012, 0.003], abs=2e-3)


#: docs/distill.md, "Measured (round two)": full-label accuracy, (hard, control, distill)
#: per fraction, the goal and the fraction from which on it no longer helps
DOC_FULL = 0.9822
DOC_TABLE = [
    (0.4485, 0.6812, 0.6532),
    (0.5193, 0.8205, 0.8448),
    (0.7503, 0.9270, 0.9390),
    (0.8953, 0.9652, 0.9677),
]
DOC_TARGET_MET = False
DOC_STOP: float | None = 0.1


def test_resume_after_ctrl_c_inside_the_sweep(tmp_path: Path, tiny) -> None:
    """Ctrl-C (SIGINT to the process group) while the self-distill sweep runs: exit 130,
    then --resume keeps the finished trials and ends as the uninterrupted run."""
    _, ref = tiny
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "qsem", "run", "self-distill-curve", *TINY, "--out", str(out)]
    first = out / "sweeps/self-distill/label_fraction=0.25/seed-0/results.json"
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err
    assert not (first.parent.parent / "seed-1" / "results.json").exists()
    stamp = first.stat().st_mtime_ns
    res = run_experiment(get_experiment("self-distill-curve"), out=out, resume=True, quiet=True)
    assert res.resumed_from_step == 0 and first.stat().st_mtime_ns == stamp  # not run again
    drop = {"wall_seconds"}
    assert {k: v for k, v in res.results.items() if k not in drop} == {
        k: v for k, v in ref.items() if k not in drop
    }
