"""``qml.device("qsem")``: the simulation method in ``qml.specs`` and the repr, and the
readout errors of ``default.qutrit.mixed`` (``readout_relaxation_probs``,
``readout_misclassification_probs``).

Readout results are checked against PennyLane 0.45's ``default.qutrit.mixed`` with the
same arguments on the same circuits (complex128, ``ATOL_PL_DEVICE``), pure and noisy,
for every measurement it applies to, values and backprop gradients; sampled readout by
a chi-square test (seed stated) against the exact recorded probabilities; a mixed
qubit/qutrit register (no PennyLane device runs one) against the confusion matrix
written out here from the channels' definitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pennylane as qml
import pytest
import torch
from conftest import ATOL_PL_DEVICE, CHI2_ALPHA
from scipy import stats

from qsem.circuits.errors import QsemError

RELAX = [0.1, 0.2, 0.05]  # γ10, γ20, γ21
MISCLASS = [0.03, 0.02, 0.04]  # p01, p02, p12
READOUTS = {
    "relaxation": {"readout_relaxation_probs": RELAX},
    "misclassification": {"readout_misclassification_probs": MISCLASS},
    "both": {"readout_relaxation_probs": RELAX, "readout_misclassification_probs": MISCLASS},
}
H = np.array([[1, 0.3j, 0.2], [-0.3j, -0.5, 0.1], [0.2, 0.1, 0.7]])


def _close(a: Any, b: Any, atol: float = ATOL_PL_DEVICE) -> None:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


def qutrit_ops(x: Any) -> None:
    qml.TRY(x, 0, subspace=(0, 1))
    qml.THadamard(1)
    qml.TAdd([0, 1])
    qml.TRX(0.4, 1, subspace=(1, 2))
    qml.TRY(1.3, 0, subspace=(1, 2))


def noisy_qutrit_ops(x: Any) -> None:
    qutrit_ops(x)
    qml.QutritDepolarizingChannel(0.05, 0)
    qml.TritFlip(0.02, 0.05, 0.01, 1)


MEASUREMENTS: dict[str, Callable[[], Any]] = {
    "expval_diagonal": lambda: qml.expval(qml.GellMann(0, 8)),
    "expval_gellmann": lambda: qml.expval(qml.GellMann(1, 5)),
    "expval_thermitian": lambda: qml.expval(qml.THermitian(H, wires=1)),
    "expval_product": lambda: qml.expval(qml.GellMann(0, 3) @ qml.GellMann(1, 1)),
    "expval_sum": lambda: qml.expval(0.3 * qml.GellMann(0, 2) + qml.GellMann(1, 4)),
    "var": lambda: qml.var(qml.GellMann(1, 4)),
    "probs": lambda: qml.probs(wires=[1, 0]),
    "density_matrix": lambda: qml.density_matrix(wires=[0]),  # not affected
}


def _qnodes(ops: Callable[[Any], None], measure: Callable[[], Any], readout: dict, **kw: Any):
    def qfunc(x: Any) -> Any:
        ops(x)
        return measure()

    ours = qml.QNode(qfunc, qml.device("qsem", wires=2, **readout), **kw)
    ref = qml.QNode(qfunc, qml.device("default.qutrit.mixed", wires=2, **readout), **kw)
    return ours, ref


# -- qml.specs and repr --------------------------------------------------------------------------
def _qubit_ops(x: Any) -> None:
    qml.RX(x, 0)
    qml.CNOT([0, 1])


def _noisy_qubit_ops(x: Any) -> None:
    _qubit_ops(x)
    qml.DepolarizingChannel(0.1, 1)


SPECS = [  # ops, method option, expected simulation
    (_qubit_ops, "auto", "statevector"),
    (_noisy_qubit_ops, "auto", "density_matrix"),
    (qutrit_ops, "auto", "statevector"),
    (noisy_qutrit_ops, "auto", "density_matrix"),
    (_qubit_ops, "density_matrix", "density_matrix"),
    (noisy_qutrit_ops, "density_matrix", "density_matrix"),
]


@pytest.mark.parametrize(("ops", "method", "expected"), SPECS)
def test_specs_and_repr_name_the_simulation_method(ops: Any, method: str, expected: str) -> None:
    dev = qml.device("qsem", wires=2, method=method)
    assert dev.name == "qsem"  # before any circuit

    def qfunc(x: Any) -> Any:
        ops(x)
        return qml.expval(qml.GellMann(0, 3) if ops in (qutrit_ops, noisy_qutrit_ops) else qml.Z(0))

    qnode = qml.QNode(qfunc, dev)
    specs = qml.specs(qnode)(0.4)
    assert specs.device_name == f"qsem ({expected})"
    assert f"Device: qsem ({expected})" in str(specs)
    assert f"planned: {expected}" in repr(dev)
    qnode(0.4)
    assert dev.last_method == expected  # what specs announced is what ran
    assert f"last run: {expected}" in repr(dev)


# -- readout errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("readout", list(READOUTS))
@pytest.mark.parametrize("ops", [qutrit_ops, noisy_qutrit_ops], ids=["pure", "noisy"])
@pytest.mark.parametrize("measure", list(MEASUREMENTS))
def test_readout_matches_default_qutrit_mixed(readout: str, ops: Any, measure: str) -> None:
    ours, ref = _qnodes(ops, MEASUREMENTS[measure], READOUTS[readout])
    _close(ours(0.9), ref(0.9))
    if measure != "density_matrix":  # the readout changes the result
        plain = qml.QNode(ours.func, qml.device("qsem", wires=2))
        assert np.abs(np.asarray(plain(0.9)) - np.asarray(ours(0.9))).max() > 1e-4


@pytest.mark.parametrize("measure", ["expval_gellmann", "expval_sum", "var", "probs"])
def test_readout_backprop_gradients_match(measure: str) -> None:
    ours, ref = _qnodes(qutrit_ops, MEASUREMENTS[measure], READOUTS["both"],
                        interface="torch", diff_method="backprop")  # fmt: skip
    grads = []
    for qnode in (ours, ref):
        x = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
        out = qnode(x)
        (
            out * torch.arange(1, out.numel() + 1, dtype=torch.float64).reshape(out.shape)
        ).sum().backward()
        grads.append(x.grad)
    _close(*grads)


def test_readout_turns_device_derivatives_to_autograd_and_refuses_adjoint() -> None:
    ours, ref = _qnodes(qutrit_ops, MEASUREMENTS["expval_gellmann"], READOUTS["both"])
    ours = qml.QNode(ours.func, ours.device, diff_method="device")
    x = qml.numpy.array(0.9, requires_grad=True)
    with qml.Tracker(ours.device) as tracker:
        got = qml.grad(ours)(x)
    assert tracker.history["derivative_method"] == ["autograd"]
    ref_grad = qml.grad(qml.QNode(ref.func, ref.device, diff_method="backprop"))(x)
    _close(got, ref_grad)
    with pytest.raises(qml.exceptions.QuantumFunctionError, match="does not support adjoint"):
        qml.grad(qml.QNode(ours.func, ours.device, diff_method="adjoint"))(x)


def test_sampled_readout_passes_a_chi_square_test() -> None:
    """20000 shots (seed 7) of counts and of a Gell-Mann observable's eigenvalues against
    the exact recorded probabilities of default.qutrit.mixed."""
    shots = 20000

    def counts() -> Any:
        return qml.counts(wires=[0, 1], all_outcomes=True), qml.sample(qml.GellMann(1, 1))

    ours = qml.set_shots(
        qml.QNode(lambda x: (qutrit_ops(x), counts())[1],
                  qml.device("qsem", wires=2, seed=7, **READOUTS["both"])), shots)  # fmt: skip
    got, samples = ours(0.9)
    _, ref_probs = _qnodes(qutrit_ops, MEASUREMENTS["probs"], READOUTS["both"])
    exact = np.asarray(
        qml.QNode(lambda x: (qutrit_ops(x), qml.probs(wires=[0, 1]))[1], ref_probs.device)(0.9)
    )
    observed = np.array([got[f"{i}{j}"] for i in range(3) for j in range(3)])
    assert stats.chisquare(observed, exact * shots).pvalue > CHI2_ALPHA
    # the Gell-Mann sample: its eigenvalues with the recorded probabilities in PennyLane's
    # eigenbasis (λ1 has eigenvalues 1, -1, 0)
    p_gm = np.asarray(
        qml.QNode(lambda x: (qutrit_ops(x), qml.probs(op=qml.GellMann(1, 1)))[1], ref_probs.device)(
            0.9
        )
    )
    eig = qml.GellMann(1, 1).eigvals()
    observed = np.array([(samples == v).sum() for v in eig])
    assert observed.sum() == shots
    assert stats.chisquare(observed, p_gm * shots).pvalue > CHI2_ALPHA


def test_readout_on_a_mixed_register_affects_qutrit_wires_only() -> None:
    """Qubit wire 0, qutrit wire 1: recorded probs = exact probs · (I_2 ⊗ M), with M the
    confusion of relaxation then misclassification written out here."""
    g10, g20, g21 = RELAX
    p01, p02, p12 = MISCLASS
    m_relax = np.array([[1, 0, 0], [g10, 1 - g10, 0], [g20, g21, 1 - g20 - g21]])
    stay = 1 - p01 - p02 - p12
    m_mis = np.array([[stay + p12, p01, p02], [p01, stay + p02, p12], [p02, p12, stay + p01]])
    confusion = np.kron(np.eye(2), m_relax @ m_mis)

    def qfunc() -> Any:
        qml.Hadamard(0)
        qml.ctrl(qml.TRY(1.1, 1, subspace=(0, 2)), control=0)
        qml.TRX(0.7, 1, subspace=(0, 1))
        return qml.probs(wires=[0, 1])

    exact = np.asarray(qml.QNode(qfunc, qml.device("qsem", wires=2))())
    recorded = np.asarray(qml.QNode(qfunc, qml.device("qsem", wires=2, **READOUTS["both"]))())
    _close(recorded, exact @ confusion)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"readout_relaxation_probs": [0.1, 0.2]}, "readout_relaxation_probs"),
        ({"readout_relaxation_probs": [0.1, 0.7, 0.6]}, "readout_relaxation_probs"),
        ({"readout_misclassification_probs": [0.5, 0.5, 0.5]}, "readout_misclassification_probs"),
    ],
)
def test_bad_readout_arguments_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(QsemError, match=name) as info:
        qml.device("qsem", wires=1, **kwargs)
    assert "\n" not in str(info.value)


def test_interop_page_adjoint_example_runs() -> None:
    """The adjoint example of docs/interop.md runs as written, and its gradient is right."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "interop.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "adjoint" in b]
    ns: dict[str, Any] = {}
    exec(compile(code, "docs/interop.md", "exec"), ns)
    ref = qml.QNode(ns["energy"].func, qml.device("default.qutrit.mixed", wires=2))
    x = qml.numpy.array(0.4, requires_grad=True)
    _close(ns["grad"], qml.grad(qml.QNode(ref.func, ref.device, diff_method="backprop"))(x))


@pytest.mark.parametrize("measure", ["state", "density_matrix", "probs"])
def test_state_measurements_warn_that_readout_does_not_apply(measure: str) -> None:
    """As default.qutrit.mixed: an analytic state/density_matrix with readout errors set
    warns (the same message); probs (which readout affects) and a device without readout
    errors do not."""
    import warnings

    def qfunc(x: Any) -> Any:
        qutrit_ops(x)
        if measure == "state":
            return qml.state()
        return qml.density_matrix(wires=[0]) if measure == "density_matrix" else qml.probs()

    messages = []
    devices = [("qsem", READOUTS["both"]), ("default.qutrit.mixed", READOUTS["both"]), ("qsem", {})]
    for name, readout in devices:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            qml.QNode(qfunc, qml.device(name, wires=2, **readout))(0.9)
        messages.append([str(w.message) for w in caught if "readout" in str(w.message)])
    ours, ref, plain = messages
    assert plain == []
    if measure == "probs":
        assert ours == ref == []
    else:
        assert len(ours) == 1 and "is not affected by readout error" in ours[0]
        assert ours == ref  # the same words, the measurement named as PennyLane prints it
