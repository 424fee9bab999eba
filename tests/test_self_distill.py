"""``qsem run self-distill``: a smoke run, config errors, resume; the full study is slow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qsem.experiments import get_experiment
from qsem.runner import ConfigError, run_experiment

PNG = b"\x89PNG\r\n\x1a\n"

TINY = [
    "n_seeds=2", "epochs=2", "n_train_kbs=12", "n_test_kbs=4", "queries_per_kb=8",
    "probe_size=8", "batch_size=32", "distill.probe_every=2", "distill.adaptive_min_history=2",
    "distill.adaptive_window=4", "distill.refractory=2", "distill.theta_quantum=0.0",
    "distill.trigger=quantum", "distill.correction_steps=1", "distill.shots=200",
    "distill.aer_queries=2",
]  # fmt: skip
#: wall-clock keys differ between two runs of the same config
TIMING = {"train_seconds", "wall_seconds", "epoch_seconds"}


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _lines(out: Path) -> list[dict[str, Any]]:
    return [_strip(json.loads(x)) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sd") / "run"
    res = run_experiment(get_experiment("self-distill"), overrides=TINY, out=out, quiet=True)
    return out, res.results


def test_smoke_run_writes_results_plot_and_events(tiny_run) -> None:
    out, res = tiny_run
    assert res["seeds"] == [0, 1]
    for arm in ("hard", "distill"):
        accs = res["accuracy"][arm]["per_seed"]
        assert len(accs) == 2 and all(0.0 <= a <= 1.0 for a in accs)
    assert set(res["paired"]) == set(res["paired_nll"]) == {"mean_diff", "wilcoxon_p", "ttest_p"}
    kinds = {"frobenius", "adaptive", "l1", "quantum", "quantum_shots", "quantum_aer"}
    assert set(res["n_events"]) == kinds
    # theta_quantum = 0 and trigger = quantum: every probe after the first is an event,
    # a slice appended at the first of them (refractory 2 steps = one probe)
    assert res["n_events"]["quantum"] > 0
    assert all(len(v) >= 1 for v in res["slices_appended"].values())
    assert all(res["slices"][s] == 1 + len(v) for s, v in res["slices_appended"].items())
    assert res["events"]["quantum_aer"]["1"] == []  # Aer on the first seed only (aer_seeds=1)
    snaps = sorted((out / "snapshots" / "seed-0").glob("step-*.pt"))
    assert len(snaps) == len(res["slices_appended"]["0"])
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    probes = [r for r in recs if r.get("kind") == "probe" and "dphi_fro" in r]
    keys = {"dphi_fro", "dphi_l1", "q_distance", "bures", "nci_avg", "e_pot", "epot_e_norm",
            "epot_theta", "epot_nci", "epot_v_t", "v_t", "q_distance_shots"}  # fmt: skip
    assert probes and all(keys <= set(r) for r in probes)
    assert any("q_distance_aer" in r for r in probes if r["seed"] == 0)
    assert (out / "emergence.png").read_bytes()[:8] == PNG
    agree = res["shot_agreement"]
    assert set(agree) == {"quantum_shots", "quantum_aer"}
    assert all(0.0 <= a["coverage"] <= 1.0 and a["probes"] > 0 for a in agree.values())


@pytest.mark.parametrize(
    ("override", "key"),
    [("bogus=1", "bogus"), ("distill.bogus=1", "distill.bogus"),
     ("distill.temperature=0", "temperature"), ("n_seeds=0", "n_seeds"),
     ("distill.detectors=frobenius,psychic", "detectors")],
)  # fmt: skip
def test_bad_config_keys_raise_config_error_naming_the_key(
    tmp_path: Path, override: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_experiment(get_experiment("self-distill"), overrides=[override],
                       out=tmp_path / "x", quiet=True)  # fmt: skip


class Boom(RuntimeError):
    pass


def test_resume_equals_uninterrupted(tmp_path: Path, tiny_run, interrupt_log) -> None:
    """Killed inside the second seed's distill arm; the resumed run ends identically."""
    ref_out, ref = tiny_run
    out = tmp_path / "run"

    def inside(step: int, v: dict[str, Any]) -> bool:
        return v.get("seed") == 1 and v.get("arm") == "distill" and step >= 4

    with interrupt_log(inside, Boom) as calls, pytest.raises(Boom):
        run_experiment(get_experiment("self-distill"), overrides=TINY, out=out, quiet=True)
    res = run_experiment(get_experiment("self-distill"), out=out, resume=True, quiet=True)
    assert calls["n"] == 1 and res.resumed_from_step is not None
    assert _strip(res.results) == _strip(ref)
    assert _lines(out) == _lines(ref_out)


def test_figure_off_skips_only_the_figure(tmp_path: Path, tiny_run) -> None:
    """figure=false (what the self-distill-curve sweep sets): the same results and
    metrics, no emergence.png."""
    ref_out, ref = tiny_run
    out = tmp_path / "run"
    res = run_experiment(get_experiment("self-distill"), overrides=[*TINY, "figure=false"],
                         out=out, quiet=True)  # fmt: skip
    assert not (out / "emergence.png").exists() and (ref_out / "emergence.png").exists()
    assert _strip(res.results) == _strip(ref)
    assert _lines(out) == _lines(ref_out)


@pytest.mark.slow
def test_default_study(tmp_path: Path) -> None:
    """The default run: 5 seeds, label_fraction 0.1 (minutes on 2 cores)."""
    res = run_experiment(get_experiment("self-distill"), out=tmp_path / "run", quiet=True).results
    assert len(res["seeds"]) == 5
    assert res["paired"]["wilcoxon_p"] is not None
    assert (tmp_path / "run" / "emergence.png").exists()
