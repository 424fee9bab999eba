"""``qsem run personalise`` (smoke run, resume, config errors) and ``qsem history``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from qsem.cli import main
from qsem.edge import HistoryStore
from qsem.experiments import get_experiment
from qsem.runner import ConfigError, run_experiment

TINY = [
    "n_train_kbs=8", "n_test_kbs=6", "queries_per_kb=8", "epochs=2", "batch_size=32",
    "labels_per_user=10", "personal.steps=10", "personal.steps_per_label=1",
    "personal.probe_size=4", "edge.recovery_steps=3", "edge.latency_queries=5", "edge.batch=8",
]  # fmt: skip
#: measured times differ between two runs of one config
TIMING = {"latency_ms", "seconds", "summary", "train_seconds", "epoch_seconds"}


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("pers") / "run"
    res = run_experiment(get_experiment("personalise"), overrides=TINY, out=out, quiet=True)
    return out, res.results


def test_smoke_run_writes_results_history_and_plot(tiny_run) -> None:
    out, res = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["per_user_accuracy"] == res["per_user_accuracy"]
    for key in ("per_user_accuracy", "shared_accuracy", "labels_per_user", "edge_table",
                "examples", "users", "summary"):  # fmt: skip
        assert key in on_disk
    assert on_disk["labels_per_user"] == {"open-world": 10, "closed-world": 10}
    assert [r["model"] for r in on_disk["edge_table"]] == ["full", "narrowed", "compressed"]
    assert all(isinstance(r, dict) for r in on_disk["edge_table"])
    assert len(on_disk["summary"]) == 5 and all(isinstance(s, str) for s in on_disk["summary"])
    assert (out / "personalise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with HistoryStore(out / "history.sqlite") as store:
        assert store.users() == ["closed-world", "open-world"]
        assert store.integrity_check() == ["ok"]
        assert all(len(store.steps(u)) == 10 for u in store.users())


def test_resume_equals_uninterrupted(tmp_path: Path, tiny_run, interrupt_log) -> None:
    """Killed in the middle of the personalisation stage; the resumed run ends identically."""
    _, ref = tiny_run

    class Boom(Exception):
        pass

    out = tmp_path / "run"

    def closed_world(step: int, v: dict[str, Any]) -> bool:
        return v.get("user") == "closed-world"

    with interrupt_log(closed_world, Boom) as calls, pytest.raises(Boom):
        run_experiment(get_experiment("personalise"), overrides=TINY, out=out, quiet=True)
    res = run_experiment(get_experiment("personalise"), out=out, resume=True, quiet=True)
    assert calls["n"] == 1 and res.resumed_from_step is not None
    assert _strip(res.results) == _strip(ref)
    with HistoryStore(out / "history.sqlite") as store:  # stage 2 redone on a fresh file
        assert all(len(store.steps(u)) == 10 for u in store.users())


@pytest.mark.parametrize(
    ("override", "key"),
    [("edge_user=both", "edge_user"), ("labels_per_user=0", "labels_per_user"),
     ("edge.hidden=64", "edge.hidden"), ("edge.top_p=3", "edge.top_p"),
     ("personal.lr=0", "lr")],
)  # fmt: skip
def test_bad_config_keys_raise_config_error_naming_the_key(
    tmp_path: Path, override: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_experiment(get_experiment("personalise"), overrides=[*TINY, override],
                       out=tmp_path / "r", quiet=True)  # fmt: skip


def test_history_cli(tiny_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = tiny_run
    path = str(out / "history.sqlite")
    assert main(["history", path, "users"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["closed-world", "open-world"]
    assert "steps=10" in lines[0] and "labels=10" in lines[0]
    assert main(["history", path, "show", "closed-world"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["summary"]["steps"] == 10 and shown["schema_version"] == 2
    assert sorted(shown["params"]) == ["calib_logits", "slice_logits"]
    assert main(["history", path, "export", "closed-world", "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    with HistoryStore(path) as store:
        steps = store.steps("closed-world")
    assert [s["label"] for s in exported["steps"]] == [s.label for s in steps]
    assert exported["steps"][3]["phi"] == steps[3].phi.tolist()  # float32 -> JSON: exact
    target = tmp_path / "x.csv"
    assert main(["history", path, "export", "open-world", "--format", "csv",
                 "--out", str(target)]) == 0  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 10 and rows[0]["dphi"] == "" and rows[1]["label"] in "012"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["users"], "no such file"), (["show", "bob"], "no user 'bob'"),
     (["export", "bob", "--format", "csv"], "no user 'bob'")],
)  # fmt: skip
def test_history_cli_errors_are_one_line(
    tiny_run, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out, _ = tiny_run
    path = str(out / "history.sqlite") if argv[0] != "users" else str(tmp_path / "none.sqlite")
    assert main(["history", path, *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and path in err and err.count("\n") == 1
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert main(["history", str(bad), "users"]) == 1
    assert "not an SQLite database" in capsys.readouterr().err


def test_a_given_trained_model_is_personalised_not_trained(tmp_path: Path) -> None:
    """``run(cfg, ctx, model=...)``: stage 1 skipped, the model's weights untouched."""
    import torch

    from qsem.experiments import personalise
    from qsem.experiments.kleene import model_config
    from qsem.models import SemanticModel
    from qsem.runner import Experiment

    defaults = personalise.PersonaliseConfig()
    torch.manual_seed(5)
    model = SemanticModel(model_config(defaults))  # TINY changes no model key
    before = {k: v.clone() for k, v in model.state_dict().items()}
    exp = Experiment(name="personalise-given", description="test", defaults=defaults,
                     run=lambda c, ctx: personalise.run(c, ctx, model=model))  # fmt: skip
    res = run_experiment(exp, overrides=TINY, out=tmp_path / "run", quiet=True).results
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert res["labels_per_user"] == {"open-world": 10, "closed-world": 10}
    assert not [r for r in _metric_lines(tmp_path / "run") if "test_accuracy" in r]  # no fit


def _metric_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
