"""``qsem run story`` (what ``make run`` runs): a tiny smoke run, config errors, resume
after each stage and inside one, the event agreement against a hand count; the default
run's claims are a slow test."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_report import REPORT_SECTIONS, browser_problems  # the report's headless-Chromium check

from qsem.cli import main
from qsem.edge import HistoryStore
from qsem.experiments import get_experiment
from qsem.experiments._story_stages import DistillRun, DistillStage, Paired, Spread
from qsem.experiments.story import STAGES, emergence_agreement
from qsem.report.collect import load_run
from qsem.runner import ConfigError, run_experiment

PNG = b"\x89PNG\r\n\x1a\n"

TINY = [
    "self_distill.n_seeds=2", "self_distill.epochs=2", "self_distill.n_train_kbs=12",
    "self_distill.n_test_kbs=4", "self_distill.queries_per_kb=8", "self_distill.probe_size=8",
    "self_distill.batch_size=32", "self_distill.distill.probe_every=2",
    "self_distill.distill.adaptive_min_history=2", "self_distill.distill.adaptive_window=4",
    "self_distill.distill.refractory=2", "self_distill.distill.theta_quantum=0.0",
    "self_distill.distill.shots=200", "self_distill.distill.aer_queries=2",
    "heads.n_seeds=2", "heads.epochs=20", "heads.kleene_train_kbs=4", "heads.kleene_test_kbs=2",
    "labels_per_user=10", "personal.steps=20", "personal.steps_per_label=1",
    "personal.probe_size=8", "edge.recovery_steps=5", "edge.latency_queries=20", "edge.hidden=4",
]  # fmt: skip
#: wall-clock keys differ between two runs of the same config
TIMING = {"train_seconds", "wall_seconds", "epoch_seconds", "seconds", "cpu_seconds", "step_ms",
          "latency_ms"}  # fmt: skip


def _strip(x: Any) -> Any:
    if isinstance(x, str):  # a summary line quoting latencies
        return re.sub(r"[0-9.]+ (vs|->) [0-9.]+ ms", "(latencies)", x)
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _lines(out: Path) -> list[dict[str, Any]]:
    return [_strip(json.loads(x)) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _run(out: Path, *, resume: bool = False) -> dict[str, Any]:
    story = get_experiment("story")
    if resume:
        return run_experiment(story, out=out, resume=True, quiet=True).results
    return run_experiment(story, overrides=TINY, out=out, quiet=True).results


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("story") / "run"
    return out, _run(out)


def test_every_stage_writes_sane_outputs(tiny_run) -> None:
    out, res = tiny_run
    assert len(res["summary"]) == 5  # b is read from a's run; d and e are one stage
    assert all(isinstance(s, str) and s for s in res["summary"])
    assert [s[:2] for s in res["summary"]] == ["a.", "b.", "c.", "d.", "e."]
    assert set(res["stages"]) == {name for name, _ in STAGES}
    # a: both arms per seed, accuracies in [0, 1], the paired test present
    rows = res["distill_per_seed"]
    assert [r["seed"] for r in rows] == [0, 1]
    assert all(0 <= r[k] <= 1 for r in rows for k in ("hard_accuracy", "distill_accuracy"))
    assert all(r["slices"] >= 1 for r in rows)
    assert set(res["stages"]["self_distill"]["paired"]) == {"mean_diff", "wilcoxon_p", "ttest_p"}
    # b: theta_quantum = 0, so every probe after the first is a quantum event
    events = {r["detector"]: r for r in res["emergence_events"]}
    assert {"frobenius", "quantum", "quantum_shots", "quantum_aer"} <= set(events)
    assert events["quantum"]["events"] > 0
    assert events["frobenius"]["frobenius_found"] in (1.0, None)  # itself, by construction
    for r in events.values():
        for k in ("frobenius_found", "near_frobenius"):
            assert r[k] is None or 0.0 <= r[k] <= 1.0
    # c: the two heads at matched budgets (parameter counts within 2 %)
    heads = {r["head"]: r for r in res["head_comparison"]}
    assert set(heads) == {"softmax", "qutrit"}
    assert abs(heads["qutrit"]["parameters"] / heads["softmax"]["parameters"] - 1) < 0.02
    # d: two users, ten labels each; accuracies in [0, 1]; the store holds both histories
    users = {r["user"]: r for r in res["personalisation"]}
    assert set(users) == {"open-world", "closed-world"}
    assert all(r["labels"] == 10 for r in users.values())
    for r in users.values():
        for k in ("accuracy", "base_accuracy", "shared_accuracy"):
            assert 0.0 <= r[k] <= 1.0
    with HistoryStore(out / "history.sqlite") as store:
        assert sorted(store.users()) == ["closed-world", "open-world"]
        assert len(store.steps("closed-world")) == 10
    # e: full / narrowed / compressed for the closed-world user; smaller, files on disk
    edge = {r["model"]: r for r in res["edge_models"]}
    assert list(edge) == ["full", "narrowed", "compressed"]
    assert edge["narrowed"]["hidden"] == edge["compressed"]["hidden"] == 4
    assert edge["compressed"]["slices"] == 1
    assert edge["compressed"]["parameters"] < edge["narrowed"]["parameters"]
    assert edge["narrowed"]["parameters"] < edge["full"]["parameters"]
    assert all(r["latency_ms"] > 0 and 0 <= r["accuracy"] <= 1 for r in edge.values())
    for name in edge:
        assert (out / "edge" / f"edge-{name}.pt").stat().st_size == edge[name]["bytes"]
    assert [r["stage"] for r in res["stage_seconds"]] == [n for n, _ in STAGES]
    assert all(r["seconds"] >= 0 for r in res["stage_seconds"])
    for png in ("story.png", "emergence.png", "qutrit_vs_classical.png", "personalise.png"):
        assert (out / png).read_bytes()[:8] == PNG
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in recs} == {name for name, _ in STAGES}


def test_report_has_the_summary_tables_and_figures(tiny_run) -> None:
    """report.html shows the five lines, the story's tables and its figures; it renders in
    headless Chromium (skipped, saying how to install it, where Chromium is missing)."""
    out, res = tiny_run
    page = (out / "report.html").read_text()
    assert all(html.escape(line) in page for line in res["summary"])
    for table in ("distill_per_seed", "emergence_events", "head_comparison", "personalisation",
                  "disagreements", "edge_models", "stage_seconds"):  # fmt: skip
        assert table in page
    assert page.count("data:image/png;base64,") == 4  # story, emergence, heads, personalise
    assert browser_problems(out / "report.html", REPORT_SECTIONS) == []


def test_every_table_column_is_documented(tiny_run) -> None:
    """Each table of the report lists the meaning of each of its columns, and a summary of
    headline lines is not followed by "(no scalar results)"."""
    out, _ = tiny_run
    run = load_run(out)
    assert len(run.tables) >= 7
    for table in run.tables:
        missing = [c for c in table.documented if c not in table.docs]
        assert not missing, f"table {table.title}: undocumented columns {missing}"
    page = (out / "report.html").read_text()
    assert page.count('<dl class="columns">') == len(run.tables)
    assert "answer_tv_to_full</dt><dd>mean total-variation distance" in page
    assert "(no scalar results)" not in page


def _distill_stage(events: dict[str, dict[str, list[int]]]) -> DistillStage:
    """Stage a's typed results with two seeds of 300 steps each and these events."""
    arm = Spread(0.5, 0.0, (0.5, 0.5))
    runs = tuple(DistillRun(s, "distill", 0.5, 1.0, 300, 1) for s in (0, 1))
    return DistillStage((0, 1), arm, arm, Paired(0.0, None, None), runs, events, {}, {}, {})


def test_emergence_agreement_matches_a_hand_count() -> None:
    """Frobenius 20, 80 (seed 0), 30 (seed 1); quantum 20, 90, 200 (seed 0), none (seed 1):
    within one probe (10 steps) 20-20 and 80-90 pair up, so 2 of 3 Frobenius events are
    found and 2 of 3 quantum events lie near one."""
    frobenius = {"0": [20, 80], "1": [30]}
    distill = _distill_stage({"frobenius": frobenius, "quantum": {"0": [20, 90, 200], "1": []}})
    rows = {r["detector"]: r for r in emergence_agreement(distill, probe_every=10, aer_seeds=1)}
    assert rows["quantum"]["events"] == 3
    assert rows["quantum"]["frobenius_found"] == pytest.approx(2 / 3)
    assert rows["quantum"]["near_frobenius"] == pytest.approx(2 / 3)
    assert rows["quantum"]["steps_first_seed"] == "20 90 200"
    assert rows["frobenius"]["frobenius_found"] == rows["frobenius"]["near_frobenius"] == 1.0
    # two probes away is outside the window
    distill = _distill_stage({"frobenius": frobenius, "quantum": {"0": [40], "1": []}})
    rows = {r["detector"]: r for r in emergence_agreement(distill, probe_every=10, aer_seeds=1)}
    assert rows["quantum"]["frobenius_found"] == 0.0
    # the Aer detector is scored on the seeds it ran on only
    distill = _distill_stage({"frobenius": frobenius, "quantum_aer": {"0": [20, 80], "1": []}})
    rows = {r["detector"]: r for r in emergence_agreement(distill, probe_every=10, aer_seeds=1)}
    assert rows["quantum_aer"]["seeds"] == 1 and rows["quantum_aer"]["frobenius_found"] == 1.0


@pytest.mark.parametrize(
    ("override", "key"),
    [("self_distill.seed=3", "self_distill.seed"), ("heads.seed=1", "heads.seed"),
     ("self_distill.distill.detectors=frobenius,l1", "self_distill.distill.detectors"),
     ("bogus=1", "bogus"), ("heads.heads=softmax,cubit", "heads"),
     ("self_distill.save_models=false", "self_distill.save_models"),
     ("edge_user=closed-world", "edge_user"), ("edge.hidden=64", "edge.hidden"),
     ("labels_per_user=0", "labels_per_user")],
)  # fmt: skip
def test_bad_config_raises_config_error_naming_the_key(
    tmp_path: Path, override: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_experiment(get_experiment("story"), overrides=[override], out=tmp_path / "x",
                       quiet=True)  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_resume_continues_after_the_last_finished_stage(
    tmp_path: Path, tiny_run, interrupt_log, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C inside stage a (second seed), then inside stage d (the first user's labels):
    each resumed session keeps the finished stages (their records are not logged twice), a
    stage cut short continues from its last checkpoint, and the run ends exactly like the
    uninterrupted one."""
    ref_out, ref = tiny_run
    out = tmp_path / "run"
    for stage, at_step in (("self_distill", 3), ("personalise", 6)):

        def inside(step: int, v: dict[str, Any], stage: str = stage, at: int = at_step) -> bool:
            # Ctrl-C at the stage's step ``at`` (the second seed in stage a)
            return v.get("stage") == stage and v.get("seed", 1) == 1 and step >= at

        with interrupt_log(inside) as calls, pytest.raises(KeyboardInterrupt):
            _run(out, resume=out.exists())
        assert calls["n"] == 1
        info = json.loads((out / "run_info.json").read_text())
        assert info["status"] == "interrupted" and not (out / "results.json").exists()
        # where it stopped, in the user's terms: a stage and its own steps, no internal offset
        assert info["last_checkpoint"].startswith("stage "), info["last_checkpoint"]
        assert not re.search(r"\d{6}", info["last_checkpoint"]), info["last_checkpoint"]
    capsys.readouterr()
    assert main(["run", "story", "--out", str(out), "--resume"]) == 0
    said = capsys.readouterr()
    finished = next(x for x in said.out.splitlines() if "finished" in x)
    assert finished.startswith("story: finished (resumed after stage personalise, "), finished
    messages = [x for x in said.err.splitlines() if x.strip()]
    assert messages and all(x.startswith("story") for x in messages), messages  # no "kleene:"
    assert not re.search(r"\d{6}", finished + said.err)  # no internal step offsets
    res = json.loads((out / "results.json").read_text())
    assert _strip(res) == _strip(ref)
    assert _lines(out) == _lines(ref_out)
    assert (out / "story.png").read_bytes()[:8] == PNG
    info = json.loads((out / "run_info.json").read_text())
    assert [x["status"] for x in info["sessions"]] == ["interrupted"] * 2 + ["completed"]


@pytest.mark.slow
def test_default_run_claims(tmp_path: Path) -> None:
    """The default run (what `make run` runs): the figures README and docs/story.md quote."""
    res = run_experiment(get_experiment("story"), out=tmp_path / "run", quiet=True).results
    sd = res["stages"]["self_distill"]
    assert len(sd["seeds"]) == 3
    # a: at 10 % labels self-distillation is not significantly better than hard labels alone
    assert sd["paired"]["ttest_p"] >= 0.05
    assert "no significant difference" in res["summary"][0]
    # b: the quantum detector on Ω finds most of the classical (Δφ) events, and the shot
    # intervals cover the exact distance at about their confidence level
    events = {r["detector"]: r for r in res["emergence_events"]}
    assert events["quantum"]["frobenius_found"] >= 0.6
    assert events["quantum"]["near_frobenius"] >= 0.9
    assert sd["shot_agreement"]["quantum_shots"]["coverage"] >= 0.9
    # c: matched budgets; accuracies alike, the qutrit head's NLL significantly lower
    t = res["stages"]["heads"]["tests"]["kleene"]["qutrit_vs_softmax"]
    assert t["accuracy"]["ttest_p"] >= 0.05
    assert t["nll"]["mean_diff"] < 0 and t["nll"]["ttest_p"] < 0.05
    # d: 50 labels per user give each user >= 0.95 on their held-out labels; the model as it
    # is fails the closed-world user on the disputed queries; a shared reading serves one
    users = {r["user"]: r for r in res["personalisation"]}
    assert all(r["labels"] == 50 and r["accuracy"] >= 0.95 for r in users.values())
    assert users["closed-world"]["base_accuracy"] < 0.8
    assert res["stages"]["personalise"]["shared_accuracy"]["disputed"] <= 0.6
    # e: the compressed model keeps the user's accuracy with under half the parameters
    edge = {r["model"]: r for r in res["edge_models"]}
    assert edge["compressed"]["accuracy"] >= edge["full"]["accuracy"] - 0.01
    assert edge["compressed"]["parameters"] < 0.5 * edge["full"]["parameters"]
    assert edge["compressed"]["bytes"] < edge["full"]["bytes"]
    # the run's CPU time (single-threaded, so about its wall time on an idle machine)
    assert sum(r["cpu_seconds"] for r in res["stage_seconds"]) < 300
    assert (tmp_path / "run" / "story.png").exists()
    assert browser_problems(tmp_path / "run" / "report.html", REPORT_SECTIONS) == []


#: the smallest results.json of each stage's experiment that the story reads
_STAGE_RESULTS: dict[str, dict[str, Any]] = {
    "self_distill": {
        "seeds": [0], "paired": {"mean_diff": 0.1, "ttest_p": None, "wilcoxon_p": None},
        "accuracy": {a: {"mean": 0.5, "std": 0.0, "per_seed": [0.5]} for a in ("hard", "distill")},
        "per_run": [{"seed": 0, "arm": a, "test_accuracy": 0.5, "test_nll": 1.0,
                     "optimizer_steps": 3, "slices": 1} for a in ("hard", "distill")],
        "events": {"frobenius": {"0": [2]}}, "slices_appended": {"0": []},
    },
    "heads": {
        "tasks": ["kleene"], "n_seeds": 2,
        "summary": {"kleene": {h: {"hidden": 4, "parameters": 30, **{
            k: {"mean": 0.5, "std": 0.1} for k in ("accuracy", "nll", "ece", "step_ms")}}
            for h in ("softmax", "qutrit")}},
        "tests": {"kleene": {"qutrit_vs_softmax": {
            k: {"mean_diff": 0.0, "ttest_p": 0.5, "wilcoxon_p": 0.5}
            for k in ("accuracy", "nll")}}},
    },
    "personalise": {
        "per_user_accuracy": {"u": 1.0}, "labels_per_user": {"u": 2}, "base_accuracy": {"u": 0.5},
        "shared_accuracy": {"u": 0.5, "disputed": 0.5}, "edge_user": "closed", "users": [],
        "examples": [], "edge_table": [{"model": "full", "hidden": 4, "slices": 1, "rank": None,
                                        "parameters": 10, "bytes": 80, "latency_ms": 0.1,
                                        "accuracy": 0.9}],
    },
}  # fmt: skip


def test_stages_hand_on_typed_outcomes_that_round_trip_through_a_checkpoint() -> None:
    from qsem.experiments.story import StageOutcome, StoryOutcome

    done = {n: StageOutcome.from_state(n, {"results": r, "seconds": 1.5, "cpu_seconds": 2.0})
            for n, r in _STAGE_RESULTS.items()}  # fmt: skip
    story = StoryOutcome.from_stages(done)
    assert isinstance(story.self_distill.result, DistillStage)
    assert story.self_distill.result.run(0, "hard").optimizer_steps == 3
    assert story.heads.result.heads["qutrit"].accuracy == Spread(0.5, 0.1)
    assert story.personalise.result.edge["full"].bytes == 80
    for name, _ in STAGES:  # the checkpoint holds the experiment's results.json unchanged
        state = story.stage(name).as_state()
        assert state == {"results": _STAGE_RESULTS[name], "seconds": 1.5, "cpu_seconds": 2.0}
        assert StageOutcome.from_state(name, state) == story.stage(name)
    with pytest.raises(KeyError):  # a missing stage is not silently empty
        StoryOutcome.from_stages({n: o for n, o in done.items() if n != "heads"})
    with pytest.raises(KeyError, match="mean_diff"):  # a malformed stage is refused
        StageOutcome.from_state("heads", {"results": {**_STAGE_RESULTS["heads"], "tests": {
            "kleene": {"qutrit_vs_softmax": {"accuracy": {}, "nll": {}}}}}, "seconds": 0,
            "cpu_seconds": 0})  # fmt: skip
