"""``qsem run qutrit-vs-classical``: loaders, heads, budgets, metrics and a smoke run.

References: hand-written gate matrices (PennyLane's TRY/TRZ conventions, Qiskit's
RY/RZ), a hand computation of ECE, brute-force parity labels for the
CMSP-undefined task, and scikit-learn's own data sets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ATOL_F32, ATOL_F64

from qsem.experiments import qutrit_vs_classical as qvc
from qsem.runner import run_experiment
from qsem.tasks import three_class as tc
from qsem.tasks.kleene import KleeneTaskConfig, make_dataset

PNG = b"\x89PNG\r\n\x1a\n"

# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------


def test_ece_against_hand_computation() -> None:
    p = np.array(
        [
            [0.95, 0.03, 0.02],  # conf 0.95 -> bin 9, correct
            [0.05, 0.91, 0.04],  # conf 0.91 -> bin 9, wrong (label 0)
            [0.60, 0.30, 0.10],  # conf 0.60 -> bin 5 (0.5, 0.6], correct
            [0.20, 0.35, 0.45],  # conf 0.45 -> bin 4, wrong (label 1)
            [0.40, 0.40, 0.20],  # conf 0.40 -> bin 3 (0.3, 0.4], argmax 0, correct
        ]
    )
    y = np.array([0, 0, 0, 1, 0])
    # bin 9: acc 1/2, conf 0.93 -> 2/5 * 0.43; bin 5: 1/5 * 0.4; bin 4: 1/5 * 0.45;
    # bin 3: 1/5 * 0.6
    hand = 2 / 5 * 0.43 + 1 / 5 * 0.40 + 1 / 5 * 0.45 + 1 / 5 * 0.60
    assert qvc.expected_calibration_error(p, y) == pytest.approx(hand, abs=ATOL_F64)


def test_ece_perfectly_calibrated_and_worst_case() -> None:
    p = np.tile([1.0, 0.0, 0.0], (4, 1))
    assert qvc.expected_calibration_error(p, np.zeros(4, int)) == pytest.approx(0.0)
    assert qvc.expected_calibration_error(p, np.ones(4, int)) == pytest.approx(1.0)


# --------------------------------------------------------------------------
# heads: circuits against hand-written matrices, renormalisation, budgets
# --------------------------------------------------------------------------


def _try(t: float, j: int, k: int) -> np.ndarray:
    u = np.eye(3, dtype=complex)
    c, s = math.cos(t / 2), math.sin(t / 2)
    u[j, j], u[j, k], u[k, j], u[k, k] = c, -s, s, c
    return u


def _trz(t: float, j: int, k: int) -> np.ndarray:
    u = np.eye(3, dtype=complex)
    u[j, j], u[k, k] = np.exp(-0.5j * t), np.exp(0.5j * t)
    return u


def _ry(t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -s], [s, c]], dtype=complex)


def _rz(t: float) -> np.ndarray:
    return np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])


_CNOT = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=complex)


def _ref_born(head: str, a: np.ndarray, w: np.ndarray) -> np.ndarray:
    if head == "qutrit":
        u = (
            _try(w[1], 1, 2) @ _try(w[0], 0, 1) @ _trz(a[3], 1, 2) @ _trz(a[2], 0, 1)
            @ _try(a[1], 1, 2) @ _try(a[0], 0, 1)
        )  # fmt: skip
        psi = u[:, 0]
    else:
        u = (
            np.kron(_ry(w[0]), _ry(w[1])) @ _CNOT @ np.kron(_rz(a[2]), _rz(a[3]))
            @ np.kron(_ry(a[0]), _ry(a[1]))
        )  # fmt: skip
        psi = u[:, 0]
    return np.abs(psi) ** 2


def _model(head: str, n_features: int = 5, hidden: int = 4, seed: int = 0) -> qvc.HeadModel:
    torch.manual_seed(seed)
    m = qvc.HeadModel(head, n_features, hidden, dtype="complex128").double()
    with torch.no_grad():
        if head != "softmax":
            m.weights.copy_(torch.tensor([0.7, -1.3], dtype=torch.float64))
            m.to_head.weight.mul_(3.0)  # spread the angles
    return m


@pytest.mark.parametrize("head", ["qutrit", "two_qubit"])
def test_circuit_born_probabilities_against_reference(head: str) -> None:
    m = _model(head)
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = m.to_head(m.extractor(x)).numpy()
        born = m.born(x).numpy()
    w = m.weights.detach().numpy()
    ref = np.stack([_ref_born(head, a[i], w) for i in range(len(x))])
    np.testing.assert_allclose(born, ref, atol=ATOL_F64)


def test_two_qubit_head_drops_11_and_renormalises() -> None:
    m = _model("two_qubit")
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        p = m.born(x).numpy()
        out = m(x).exp().numpy()
    assert (p[:, 3] > 1e-3).all()  # the discarded |11> mass is really there
    np.testing.assert_allclose(out, p[:, :3] / p[:, :3].sum(axis=1, keepdims=True), atol=ATOL_F64)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=ATOL_F64)


def test_qutrit_head_reads_the_three_levels() -> None:
    m = _model("qutrit")
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        np.testing.assert_allclose(m(x).exp().numpy(), m.born(x).numpy(), atol=ATOL_F64)


@pytest.mark.parametrize("head", qvc.HEADS)
def test_heads_start_at_uniform_predictions(head: str) -> None:
    torch.manual_seed(0)
    m = qvc.HeadModel(head, 5, 4)
    with torch.no_grad():
        if head == "softmax":
            m.to_head.weight.zero_()
            m.to_head.bias.zero_()
        else:
            m.to_head.weight.zero_()
        p = m(torch.randn(4, 5)).exp()
    np.testing.assert_allclose(p.numpy(), np.full((4, 3), 1 / 3), atol=ATOL_F32)


@pytest.mark.parametrize("head", qvc.HEADS)
@pytest.mark.parametrize(("n_features", "hidden"), [(4, 8), (13, 8), (84, 8), (9, 3)])
def test_parameter_count_is_the_models(head: str, n_features: int, hidden: int) -> None:
    m = qvc.HeadModel(head, n_features, hidden)
    assert sum(p.numel() for p in m.parameters()) == qvc.parameter_count(head, n_features, hidden)


@pytest.mark.parametrize(("n_features", "hidden"), [(4, 8), (13, 8), (84, 8), (9, 8), (9, 2)])
def test_matched_widths_minimise_the_budget_gap(n_features: int, hidden: int) -> None:
    widths = qvc.matched_widths(list(qvc.HEADS), n_features, hidden)
    budget = qvc.parameter_count("softmax", n_features, hidden)
    assert widths["softmax"] == hidden
    for head in ("qutrit", "two_qubit"):
        gap = abs(qvc.parameter_count(head, n_features, widths[head]) - budget)
        best = min(abs(qvc.parameter_count(head, n_features, h) - budget) for h in range(1, 200))
        assert gap == best
        # one unit of width is worth n_features + 5 parameters: within half of that
        assert gap <= (n_features + 5) / 2 + 3


# --------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------


def _same(a: tc.ThreeClassData, b: tc.ThreeClassData) -> bool:
    return all(
        torch.equal(getattr(a, k), getattr(b, k))
        for k in ("x_train", "y_train", "x_test", "y_test")
    )


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "n_features"),
    [("iris", 105, 45, 4), ("wine", 124, 54, 13), ("cmsp_undefined", 600, 600, 9)],
)
def test_loader_shapes_labels_determinism(
    name: str, n_train: int, n_test: int, n_features: int
) -> None:
    d = tc.load_task(name, 3)
    assert d.x_train.shape == (n_train, n_features) and d.x_test.shape == (n_test, n_features)
    assert d.y_train.shape == (n_train,) and d.y_test.shape == (n_test,)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    for y in (d.y_train, d.y_test):
        assert set(y.tolist()) == {0, 1, 2}
    assert _same(d, tc.load_task(name, 3))
    assert not _same(d, tc.load_task(name, 4))


@pytest.mark.parametrize("name", ["iris", "wine"])
def test_sklearn_loaders_are_the_datasets_split_and_standardised(name: str) -> None:
    from sklearn import datasets

    _, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    d = tc.load_task(name, 0)
    assert len(d.y_train) + len(d.y_test) == len(y)
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([d.y_train.numpy(), d.y_test.numpy()])), np.bincount(y)
    )
    np.testing.assert_allclose(d.x_train.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(d.x_train.std(0, unbiased=False).numpy(), 1.0, atol=1e-5)


def test_kleene_loader_one_hot_matches_the_task() -> None:
    cfg = KleeneTaskConfig(max_depth=2, max_side=1)
    d = tc.load_kleene(5, n_train_kbs=3, n_test_kbs=2, cfg=cfg)
    train, _ = make_dataset(cfg, 3, 5, split="train")
    test, _ = make_dataset(cfg, 2, 5, split="test")
    length = 2 + 2 * 2
    assert d.x_train.shape == (len(train), length * 14)
    assert d.x_test.shape == (len(test), length * 14)
    assert torch.equal(d.y_train, train.labels) and torch.equal(d.y_test, test.labels)
    hot = d.x_train.reshape(len(train), length, 14)
    padded = torch.nn.functional.pad(train.tokens, (0, length - train.tokens.shape[1]))
    assert torch.equal(hot.sum(dim=2), (padded > 0).float())  # one token per real position
    ids = hot.argmax(dim=2) + 1  # back to token ids at real positions
    assert torch.equal(ids[padded > 0], padded[padded > 0])
    assert _same(d, tc.load_kleene(5, 3, 2, cfg))


def _brute_cmsp_label(row: list[float], n_atoms: int, k: int, undefined: set) -> int:
    bits = [round((v + 1) / 2) for v in row]  # loader gives {-1, +1}
    control, task = bits[:n_atoms], bits[n_atoms:]
    atoms = tuple(a for a in range(n_atoms) if control[a])
    if atoms in undefined:
        return 2
    total = 0
    for a in atoms:
        for j in range(a * k, (a + 1) * k):
            total += task[j]
    return total % 2


@pytest.mark.parametrize(
    ("n_atoms", "k", "undefined"),
    [(3, 2, ((0, 1),)), (4, 2, ((0, 1), (1, 2, 3))), (2, 3, ((0, 1),))],
)
def test_cmsp_undefined_labels_against_brute_force(n_atoms: int, k: int, undefined: tuple) -> None:
    d = tc.load_cmsp_undefined(7, 300, 200, n_atoms=n_atoms, k=k, undefined=undefined)
    und = {tuple(sorted(t)) for t in undefined}
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        brute = [_brute_cmsp_label(r, n_atoms, k, und) for r in x.tolist()]
        assert y.tolist() == brute
        assert torch.equal(tc.cmsp_undefined_labels((x + 1) / 2, n_atoms, k, undefined), y)
        # every control pattern is a single atom (defined) or a designated undefined one
        patterns = {tuple(a for a in range(n_atoms) if r[a] > 0) for r in x.tolist()}
        assert patterns <= {(a,) for a in range(n_atoms)} | und
        frac_u = float((y == 2).double().mean())
        assert 0.2 < frac_u < 0.47


def test_cmsp_undefined_rejects_single_atom_patterns() -> None:
    with pytest.raises(ValueError, match="undefined"):
        tc.load_cmsp_undefined(0, 10, 10, undefined=((1,),))


# --------------------------------------------------------------------------
# the experiment end to end
# --------------------------------------------------------------------------

TINY = [
    "n_seeds=2",
    "epochs=3",
    "hidden=3",
    "kleene_train_kbs=2",
    "kleene_test_kbs=1",
    "cmsp_n_train=40",
    "cmsp_n_test=40",
]


def test_smoke_run_writes_results_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment(qvc.EXPERIMENT, overrides=TINY, out=out, quiet=True)
    results = json.loads((out / "results.json").read_text())
    assert results["n_seeds"] == 2 and results["seeds"] == [0, 1]
    assert set(results["summary"]) == set(tc.TASKS)
    for task, per_head in results["summary"].items():
        assert set(per_head) == set(qvc.HEADS)
        budget = per_head["softmax"]["parameters"]
        for s in per_head.values():
            for m in ("accuracy", "nll", "ece", "step_ms"):
                assert set(s[m]) == {"mean", "std"} and math.isfinite(s[m]["mean"])
            assert 0 <= s["accuracy"]["mean"] <= 1
            assert abs(s["parameters"] - budget) <= s["parameters"] * 0.25
        assert set(results["tests"][task]) == {"qutrit_vs_softmax", "qutrit_vs_two_qubit"}
        for comp in results["tests"][task].values():
            assert set(comp) == {"accuracy", "nll", "ece"}
    table = (out / "qutrit_vs_classical.md").read_text()
    assert "| iris | qutrit |" in table and "Wilcoxon" in table and "|11>" in table
    assert (out / "qutrit_vs_classical.png").read_bytes()[:8] == PNG
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(tc.TASKS) * len(qvc.HEADS)
