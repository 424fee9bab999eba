"""The chained semantic model, its profiles, and ``qsem run kleene`` / ``qsem run profiles``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from qsem.circuits.errors import QsemTypeError, QsemValueError
from qsem.experiments import kleene, profiles
from qsem.models import PROFILES, ModelConfig, SemanticModel, hard_label_loss, profile_config
from qsem.runner import ConfigError, run_experiment
from qsem.tasks.kleene import VOCAB_SIZE, KleeneTaskConfig, make_dataset

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
#: a tiny config that trains in seconds
TINY = [
    "n_train_kbs=8",
    "n_test_kbs=3",
    "queries_per_kb=8",
    "n_entities=10",
    "max_depth=2",
    "epochs=3",
    "batch_size=32",
]


# --------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------


def test_hard_label_loss_masks_absent_labels() -> None:
    logp = torch.log_softmax(torch.randn(5, 3, dtype=torch.float64), -1)
    labels = torch.tensor([0, -1, 2, 1, -1])
    want = -(logp[0, 0] + logp[2, 2] + logp[3, 1]) / 3
    torch.testing.assert_close(hard_label_loss(logp, labels), want)
    none = hard_label_loss(logp.requires_grad_(), torch.full((5,), -1))
    assert float(none.detach()) == 0.0
    none.backward()  # a gradient path exists (all zero)
    assert logp.grad is not None and not logp.grad.any()


@pytest.mark.parametrize(
    ("logp", "labels", "name", "exc"),
    [
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), "logp", QsemValueError),
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), "labels", QsemValueError),
        (torch.zeros(4, 3), torch.zeros(4), "labels", QsemTypeError),
        (torch.zeros(4, 3), torch.tensor([0, 1, 3, 0]), "labels", QsemValueError),
    ],
)
def test_hard_label_loss_bad_input(logp: Any, labels: Any, name: str, exc: type) -> None:
    with pytest.raises(exc, match=f"argument '{name}'"):
        hard_label_loss(logp, labels)


def test_label_fraction_masks_training_labels_only() -> None:
    cfg = kleene.KleeneConfig(n_train_kbs=4, n_test_kbs=2, queries_per_kb=12, label_fraction=0.5)
    train, test = kleene.make_data(cfg)
    full, _ = kleene.make_data(kleene.KleeneConfig(n_train_kbs=4, n_test_kbs=2, queries_per_kb=12))
    kept = train.labels >= 0
    assert 0.25 * len(train) < int(kept.sum()) < 0.75 * len(train)
    assert torch.equal(train.labels[kept], full.labels[kept])
    assert bool((train.labels[~kept] == -1).all()) and bool((test.labels >= 0).all())


# --------------------------------------------------------------------------
# the model and its profiles
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_give_distributions_and_their_axes(name: str) -> None:
    torch.manual_seed(0)
    model = SemanticModel(profile_config(name)).double()
    data, _ = make_dataset(KleeneTaskConfig(n_entities=8, queries_per_kb=6), 2, 0)
    out = model.intermediates(data.tokens)
    n, length = data.tokens.shape
    cfg = model.cfg
    assert out["phi"].shape == (n, length, cfg.s_dim, cfg.c_dim)
    assert out["psi"].shape == (n, 1, cfg.s_dim, cfg.c_dim, cfg.n_slices)
    assert out["lam"].shape == (n, 1, cfg.s_dim, cfg.c_dim, cfg.n_slices, cfg.z_dim)
    torch.testing.assert_close(out["logp"].exp().sum(-1), torch.ones(n, dtype=torch.float64))
    torch.testing.assert_close(
        out["born"].sum(dim=(2, 3, 4)), torch.ones(n, 1, dtype=torch.float64)
    )
    off_diagonal = out["ops"] - torch.diag_embed(torch.diagonal(out["ops"], dim1=-2, dim2=-1))
    assert bool(off_diagonal.abs().max() > 0) == ("O" in PROFILES[name][0].split(","))
    if name == "AGI-D":
        assert model.omega.dims == [2, 2, 2] and cfg.head == "two_qubit"
    if name == "AGI-C":
        assert model.omega.dims == [3]


def test_model_ignores_padding() -> None:
    torch.manual_seed(1)
    model = SemanticModel(ModelConfig()).double()
    tokens = torch.tensor([[2, 9, 5, 1], [3, 6, 1, 0]])
    padded = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded), model(tokens))


def test_bad_model_config_names_the_argument() -> None:
    with pytest.raises(QsemValueError, match="argument 'operator'"):
        ModelConfig(operator="lower")
    with pytest.raises(QsemValueError, match="argument 'head'"):
        ModelConfig(s_dim=2)
    with pytest.raises(QsemValueError, match="argument 'z_dim'"):
        ModelConfig(z_dim=0)
    with pytest.raises(QsemValueError, match="argument 'name'"):
        profile_config("AGI-E")
    with pytest.raises(QsemTypeError, match="argument 'cfg'"):
        SemanticModel({"s_dim": 3})  # type: ignore[arg-type]
    with pytest.raises(QsemValueError, match="argument 'tokens'"):
        SemanticModel(ModelConfig())(torch.tensor([[VOCAB_SIZE]]))


# --------------------------------------------------------------------------
# qsem run kleene / profiles
# --------------------------------------------------------------------------


def test_cli_kleene_tiny_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "qsem", "run", "kleene", *TINY, "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "metrics.jsonl", "training_curve.png", "checkpoint.pt"} <= names
    results = json.loads((out / "results.json").read_text())
    for key in ("test_accuracy", "train_seconds", "per_depth_accuracy", "parameters"):
        assert key in results, key
    assert set(results["per_depth_accuracy"]) == {"0", "1", "2"}
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert results["test_accuracy"] == pytest.approx(records[-1]["test_accuracy"])
    assert sum(map(sum, results["test_confusion_matrix"])) == results["n_test"]
    assert (out / "training_curve.png").read_bytes()[:8] == PNG


class Boom(RuntimeError):
    pass


def test_kleene_resume_equals_uninterrupted(tmp_path: Path, interrupt_log) -> None:
    ref = run_experiment(kleene.EXPERIMENT, overrides=TINY, out=tmp_path / "ref", quiet=True)
    out = tmp_path / "run"
    with interrupt_log(lambda step, v: step == 3, Boom), pytest.raises(Boom):
        run_experiment(kleene.EXPERIMENT, overrides=TINY, out=out, quiet=True)
    resumed = run_experiment(kleene.EXPERIMENT, out=out, resume=True, quiet=True)
    assert resumed.resumed_from_step == 2
    timing = {"train_seconds", "data_seconds", "step_seconds", "epoch_seconds"}

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in timing}

    assert strip(resumed.results) == strip(ref.results)
    lines = [strip(json.loads(x)) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ref_lines = [
        strip(json.loads(x)) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
    ]
    assert lines == ref_lines


def test_profiles_tiny_writes_table_and_plot(tmp_path: Path) -> None:
    over = ["n_train_kbs=6", "n_test_kbs=2", "queries_per_kb=8", "max_depth=2", "epochs=2"]
    res = run_experiment(profiles.EXPERIMENT, overrides=over, out=tmp_path / "p", quiet=True)
    rows = res.results["rows"]
    assert [r["profile"] for r in rows] == ["AGI-A", "AGI-B", "AGI-C", "AGI-D"]
    for r in rows:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["parameters"] > 0 and r["step_ms"] > 0
    md = (tmp_path / "p" / "profiles.md").read_text().splitlines()
    assert md[0].startswith("| profile | kept axes | test accuracy") and len(md) == 2 + 4
    csv = (tmp_path / "p" / "profiles.csv").read_text().splitlines()
    assert csv[0].split(",")[:3] == ["profile", "kept axes", "test accuracy"] and len(csv) == 5
    assert (tmp_path / "p" / "profiles.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("experiment", "override", "key"),
    [
        (kleene.EXPERIMENT, "epochs=0", "epochs"),
        (kleene.EXPERIMENT, "label_fraction=0", "label_fraction"),
        (kleene.EXPERIMENT, "operator=upper", "operator"),
        (kleene.EXPERIMENT, "max_depth=-1", "min_depth"),
        (profiles.EXPERIMENT, "profiles=[AGI-X]", "profiles"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, experiment: Any, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        run_experiment(experiment, overrides=[override], out=tmp_path / "r", quiet=True)


@pytest.mark.slow
def test_default_kleene_reaches_the_target(tmp_path: Path) -> None:
    """The issue's target: >= 95% test accuracy (unseen KBs) within 10 minutes on 2 cores."""
    res = run_experiment(kleene.EXPERIMENT, out=tmp_path / "k", quiet=True)
    assert res.results["test_accuracy"] >= 0.95
    assert res.results["train_seconds"] < 600
