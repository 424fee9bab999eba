"""``qsem run demo``: the qutrit iris classifier, its circuit, its run directory.

The circuit is checked against a hand-built NumPy reference (subspace rotations
in PennyLane's convention, TAdd as a permutation), gradients against finite
differences, and the whole experiment end to end: the command line, resume
after an interruption, and the accuracy of the defaults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ATOL_F64, FD_ATOL, FD_STEP

from qsem.experiments import demo
from qsem.runner import ConfigError, build_config, layer_config, run_experiment
from qsem.runner.config import defaults_dict

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
F64 = demo.DemoConfig(dtype="complex128")

# --------------------------------------------------------------------------
# an independent reference for the circuit
# --------------------------------------------------------------------------


def ref_try(theta: float, j: int, k: int) -> np.ndarray:
    u = np.eye(3, dtype=complex)
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    u[j, j], u[j, k], u[k, j], u[k, k] = c, -s, s, c
    return u


def ref_trz(theta: float, j: int, k: int) -> np.ndarray:
    u = np.eye(3, dtype=complex)
    u[j, j], u[k, k] = np.exp(-0.5j * theta), np.exp(0.5j * theta)
    return u


def ref_tadd(control: int) -> np.ndarray:
    """|a, b> -> |a, a+b> (control 0) or |a+b, b> (control 1); wire 0 most significant."""
    u = np.zeros((9, 9))
    for a in range(3):
        for b in range(3):
            out = (a, (a + b) % 3) if control == 0 else ((a + b) % 3, b)
            u[3 * out[0] + out[1], 3 * a + b] = 1
    return u


def on(u: np.ndarray, wire: int) -> np.ndarray:
    return np.kron(u, np.eye(3)) if wire == 0 else np.kron(np.eye(3), u)


def reference_probs(
    angles: np.ndarray, weights: np.ndarray, layers: int, reupload: bool
) -> np.ndarray:
    """Born probabilities of qutrit 0 for one sample's encoding angles (4,)."""
    psi = np.zeros(9, dtype=complex)
    psi[0] = 1
    w = iter(weights)
    for layer in range(layers):
        if layer == 0 or reupload:
            for q in range(2):
                psi = on(ref_try(angles[2 * q], 0, 1), q) @ psi
                psi = on(ref_try(angles[2 * q + 1], 1, 2), q) @ psi
        for q in range(2):
            for gate, (j, k) in (
                (ref_try, (0, 1)),
                (ref_try, (1, 2)),
                (ref_trz, (0, 1)),
                (ref_trz, (1, 2)),
            ):
                psi = on(gate(next(w), j, k), q) @ psi
        psi = ref_tadd(1) @ (ref_tadd(0) @ psi)
    return (np.abs(psi.reshape(3, 3)) ** 2).sum(axis=1)


@pytest.mark.parametrize(("layers", "reupload"), [(1, False), (2, False), (2, True), (3, True)])
def test_model_matches_hand_built_reference(layers: int, reupload: bool) -> None:
    cfg = replace(F64, layers=layers, reupload=reupload, init_scale=1.0)
    model = demo.QutritClassifier(cfg).double()
    with torch.no_grad():
        model.scale.copy_(torch.tensor([0.7, -1.1, 1.3, 0.4]))
        model.offset.copy_(torch.tensor([0.1, 0.2, -0.3, 0.5]))
    x = torch.randn(6, 4, dtype=torch.float64)
    with torch.no_grad():
        got = model(x).numpy()  # one batched run
    angles = (x * model.scale + model.offset).detach().numpy()
    weights = model.weights.detach().numpy()
    expected = np.stack([reference_probs(a, weights, layers, reupload) for a in angles])
    np.testing.assert_allclose(got, expected, atol=ATOL_F64, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=ATOL_F64)


def test_circuit_structure() -> None:
    circuit, names = demo.build_circuit(2, reupload=False)
    assert circuit.dims == (3, 3)
    assert sorted(circuit.parameters) == sorted([*names, "x0", "x1", "x2", "x3"])
    assert len(names) == 2 * 2 * 4
    model = demo.QutritClassifier(demo.DemoConfig())
    assert sum(p.numel() for p in model.parameters()) == len(names) + 8


def test_gradients_match_finite_differences() -> None:
    model = demo.QutritClassifier(replace(F64, init_scale=1.0)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    loss = demo._nll(model(x), y)
    (grad,) = torch.autograd.grad(loss, model.weights)
    fd = torch.zeros_like(grad)
    with torch.no_grad():
        for i in range(len(fd)):
            model.weights[i] += FD_STEP
            up = demo._nll(model(x), y)
            model.weights[i] -= 2 * FD_STEP
            down = demo._nll(model(x), y)
            model.weights[i] += FD_STEP
            fd[i] = (up - down) / (2 * FD_STEP)
    torch.testing.assert_close(grad, fd, atol=FD_ATOL, rtol=0)


def test_data_split_is_seeded_stratified_and_standardised() -> None:
    data = demo.load_data(demo.DemoConfig(), torch.device("cpu"))
    assert data["x_train"].shape == (105, 4) and data["x_test"].shape == (45, 4)
    assert torch.bincount(data["y_test"]).tolist() == [15, 15, 15]
    torch.testing.assert_close(data["x_train"].mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        data["x_train"].std(0, unbiased=False), torch.ones(4), atol=1e-5, rtol=0
    )
    again = demo.load_data(demo.DemoConfig(), torch.device("cpu"))
    other = demo.load_data(demo.DemoConfig(seed=1), torch.device("cpu"))
    assert torch.equal(again["x_test"], data["x_test"])
    assert not torch.equal(other["x_test"], data["x_test"])


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("epochs=0", "config key 'epochs': must be >= 1"),
        ("lr=-1", "config key 'lr'"),
        ("layers=0", "config key 'layers'"),
        ("test_size=0.95", "config key 'test_size'"),
        ("dtype=float16", "config key 'dtype': expected one of ['complex128', 'complex64']"),
        ("epochs=ten", "config key 'epochs' (command line): expected an integer"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        run_experiment(demo.EXPERIMENT, overrides=[override], out=tmp_path / "r")
    assert fragment in str(info.value)
    assert not (tmp_path / "r").exists()


def test_defaults_round_trip() -> None:
    assert build_config(demo.DemoConfig(), layer_config(demo.DemoConfig())) == demo.DemoConfig()
    assert defaults_dict(demo.DemoConfig())["epochs"] == demo.DemoConfig().epochs


# --------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------


def test_cli_demo_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "qsem.cli", "run", "demo", "epochs=5", "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name for p in out.iterdir()} == {
        "config.json", "run_info.json", "metrics.jsonl", "results.json", "checkpoint.pt",
        "training_curve.png", "qutrit_readout.png", "report.html",
    }  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config == {**defaults_dict(demo.DemoConfig()), "epochs": 5}
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert set(records[0]) == {
        "step",
        "loss",
        "train_nll",
        "train_accuracy",
        "test_nll",
        "test_accuracy",
    }
    results = json.loads((out / "results.json").read_text())
    for key in ("train_accuracy", "test_accuracy", "test_nll", "num_parameters", "train_seconds"):
        assert key in results, key
    assert results["num_parameters"] == 24 and results["n_test"] == 45
    assert sum(map(sum, results["test_confusion_matrix"])) == 45
    assert results["test_accuracy"] == records[-1]["test_accuracy"]
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "completed"
    assert info["command"] == ["qsem", "run", "demo", "epochs=5", "--out", str(out), "--quiet"]
    for png in ("training_curve.png", "qutrit_readout.png"):
        assert (out / png).read_bytes()[:8] == PNG
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 5


class Boom(RuntimeError):
    pass


def test_demo_resume_equals_uninterrupted(tmp_path: Path, interrupt_log) -> None:
    overrides = ["epochs=8"]
    reference = run_experiment(
        demo.EXPERIMENT, overrides=overrides, out=tmp_path / "ref", checkpoint_every=3, quiet=True
    )
    out = tmp_path / "run"
    with interrupt_log(lambda step, v: step == 7, Boom), pytest.raises(Boom):
        run_experiment(
            demo.EXPERIMENT, overrides=overrides, out=out, checkpoint_every=3, quiet=True
        )
    assert not (out / "results.json").exists()
    resumed = run_experiment(demo.EXPERIMENT, out=out, resume=True, checkpoint_every=3, quiet=True)
    assert resumed.resumed_from_step == 6
    ref_lines = (tmp_path / "ref" / "metrics.jsonl").read_text()
    assert (out / "metrics.jsonl").read_text() == ref_lines  # each epoch once, identical values
    strip = {"train_seconds"}
    assert {k: v for k, v in resumed.results.items() if k not in strip} == {
        k: v for k, v in reference.results.items() if k not in strip
    }


def test_default_demo_reaches_good_accuracy(tmp_path: Path) -> None:
    result = run_experiment(demo.EXPERIMENT, out=tmp_path / "demo", quiet=True)
    assert result.results["test_accuracy"] >= 0.9
    assert result.results["train_accuracy"] >= 0.9
    assert result.results["test_nll"] < 0.4
