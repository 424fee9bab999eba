"""``qml.device("qsem")``: registration, every measurement type, broadcasting, shots,
device derivatives, TorchLayer training and one-line errors.

References are PennyLane 0.45's devices (``default.qubit``, ``default.mixed``,
``default.qutrit``, ``default.qutrit.mixed``) in complex128; parametrised over qubit,
qutrit, mixed-dimension and noisy circuits where the measurement allows.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import numpy as np
import pennylane as qml
import pytest
import torch
from conftest import ATOL_PL_DEVICE, SHOT_SIGMAS
from scipy import stats

from qsem.circuits import Circuit, PennyLaneTHadamard
from qsem.circuits.errors import DimensionError, QsemError
from qsem.simulators.pennylane_device import QsemDevice


def _close(a: Any, b: Any, atol: float = ATOL_PL_DEVICE) -> None:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


# -- circuits (one per kind) -----------------------------------------------------------------
def qubit_ops(x: Any) -> None:
    qml.RY(x, 0)
    qml.CNOT([0, 1])
    qml.RX(0.3, 1)
    qml.CRZ(0.7, [1, 0])


def noisy_qubit_ops(x: Any) -> None:
    qubit_ops(x)
    qml.AmplitudeDamping(0.2, 0)
    qml.DepolarizingChannel(0.1, 1)


def qutrit_ops(x: Any) -> None:
    qml.TRY(x, 0, subspace=(0, 1))
    qml.THadamard(1)
    qml.TAdd([0, 1])
    qml.TRX(0.4, 1, subspace=(1, 2))


def noisy_qutrit_ops(x: Any) -> None:
    qutrit_ops(x)
    qml.QutritAmplitudeDamping(0.1, 0.05, 0.2, 0)
    qml.TritFlip(0.05, 0.1, 0.02, 1)


CIRCUITS = {  # kind -> (ops, reference device, measured observable)
    "qubit": (qubit_ops, "default.qubit", lambda: qml.Z(0) @ qml.X(1)),
    "noisy_qubit": (noisy_qubit_ops, "default.mixed", lambda: qml.Z(0) @ qml.X(1)),
    "qutrit": (qutrit_ops, "default.qutrit", lambda: qml.GellMann(0, 3)),
    "noisy_qutrit": (noisy_qutrit_ops, "default.qutrit.mixed", lambda: qml.GellMann(0, 3)),
}
MIXED_REF = {"qubit": "default.mixed", "noisy_qubit": "default.mixed",
             "qutrit": "default.qutrit.mixed", "noisy_qutrit": "default.qutrit.mixed"}  # fmt: skip


def _pair(kind: str, measure: Callable[[], Any], ref: str | None = None) -> tuple[Any, Any]:
    ops, ref_name, _ = CIRCUITS[kind]

    def qfunc(x: Any) -> Any:
        ops(x)
        return measure()

    ours = qml.QNode(qfunc, qml.device("qsem", wires=2))
    theirs = qml.QNode(qfunc, qml.device(ref or ref_name, wires=2))
    return ours, theirs


# -- registration ------------------------------------------------------------------------------
def test_entry_point_registers_the_device() -> None:
    eps = importlib.metadata.entry_points(group="pennylane.plugins")
    assert [e.value for e in eps if e.name == "qsem"] == [
        "qsem.simulators.pennylane_device:QsemDevice"
    ]
    dev = qml.device("qsem", wires=2)
    assert isinstance(dev, QsemDevice) and dev.name == "qsem"
    assert "method='auto'" in repr(dev)


# -- measurements -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CIRCUITS))
@pytest.mark.parametrize(
    "measure",
    ["expval", "var", "probs", "probs_one", "density_matrix", "purity", "vn_entropy"],
)
def test_every_measurement_matches_pennylane(kind: str, measure: str) -> None:
    obs = CIRCUITS[kind][2]
    make = {
        "expval": lambda: qml.expval(obs()),
        "var": lambda: qml.var(obs()),
        "probs": lambda: qml.probs(wires=[0, 1]),
        "probs_one": lambda: qml.probs(wires=[1]),
        "density_matrix": lambda: qml.density_matrix(wires=[1]),
        "purity": lambda: qml.purity(wires=[0]),
        "vn_entropy": lambda: qml.vn_entropy(wires=[0], log_base=2),
    }[measure]
    # default.qutrit has no reduced-state measurements: its mixed sibling is the reference;
    # PennyLane's qutrit devices have no purity / vn_entropy: computed here from their ρ
    reduced = measure in ("density_matrix", "purity", "vn_entropy")
    ours, theirs = _pair(kind, make, MIXED_REF[kind] if reduced else None)
    if "qutrit" in kind and measure in ("purity", "vn_entropy"):
        rho = np.asarray(
            _pair(kind, lambda: qml.density_matrix(wires=[0]), MIXED_REF[kind])[1](0.9)
        )
        if measure == "purity":
            want = np.trace(rho @ rho).real
        else:
            ev = np.clip(np.linalg.eigvalsh(rho), 1e-300, None)
            want = -(ev * np.log2(ev)).sum()
        _close(ours(0.9), want)
        return
    _close(ours(0.9), theirs(0.9))


@pytest.mark.parametrize("kind", list(CIRCUITS))
def test_state_matches_pennylane(kind: str) -> None:
    """``qml.state()``: the statevector (phases included) or, with channels, ρ."""
    ours, theirs = _pair(kind, qml.state)
    _close(ours(0.9), theirs(0.9))
    dev = ours.device
    assert dev.last_method == ("density_matrix" if "noisy" in kind else "statevector")
    assert f"last run: {dev.last_method}" in repr(dev)


def test_sums_products_and_hermitians_on_mixed_wires() -> None:
    """A qubit wire and a qutrit wire in one QNode (no PennyLane device runs it): each
    value against the state of the same circuit on qsem's own engine."""
    h = np.array([[1.0, 0.5j], [-0.5j, -0.3]])

    @qml.qnode(qml.device("qsem", wires=3))
    def f(x: Any) -> Any:
        qml.RY(x, 0)
        qml.TRX(0.8, 1, subspace=(0, 2))
        qml.ControlledQutritUnitary(qml.TShift.compute_matrix(), control_wires=[1], wires=[2])
        return (
            qml.expval(qml.Hermitian(h, 0) @ qml.GellMann(1, 5)),
            qml.var(0.5 * qml.Z(0) + qml.THermitian(np.diag([1.0, 2.0, 3.0]), 2)),
            qml.probs(wires=[0, 2]),
        )

    ev, var, probs = f(0.7)
    c = Circuit.from_pennylane(f.func, 0.7)
    assert c.dims == (2, 3, 3)
    from qsem.simulators import simulate

    psi = simulate(c, dtype=torch.complex128).vector.numpy()
    gm5 = np.zeros((3, 3), complex)
    gm5[0, 2], gm5[2, 0] = -1j, 1j
    op1 = np.kron(np.kron(h, gm5), np.eye(3))
    _close(ev, np.vdot(psi, op1 @ psi).real)
    op2 = 0.5 * np.kron(np.diag([1, -1]), np.eye(9)) + np.kron(np.eye(6), np.diag([1, 2, 3]))
    _close(var, np.vdot(psi, op2 @ op2 @ psi).real - np.vdot(psi, op2 @ psi).real ** 2)
    _close(probs, (np.abs(psi.reshape(2, 3, 3)) ** 2).sum(1).reshape(-1))


# -- broadcasting ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CIRCUITS))
def test_broadcasting_is_one_engine_call(kind: str) -> None:
    obs = CIRCUITS[kind][2]

    def measure() -> Any:
        return qml.expval(obs()), qml.probs(wires=[0, 1])

    ours, theirs = _pair(kind, measure, MIXED_REF[kind])  # mixed refs broadcast natively
    xs = np.linspace(0.1, 2.9, 7)
    before = ours.device.engine_calls
    with qml.Tracker(ours.device) as tracker:
        got = ours(xs)
    assert ours.device.engine_calls == before + 1  # 7 rows, one engine run
    assert tracker.history["batch_size"] == [7]
    assert tracker.history["method"] == ["density_matrix" if "noisy" in kind else "statevector"]
    assert np.asarray(got[0]).shape == (7,)
    for a, b in zip(got, theirs(xs), strict=True):
        _close(a, b)


def test_broadcast_torch_gradient_matches_rows() -> None:
    dev = qml.device("qsem", wires=2)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def f(x: Any, w: Any) -> Any:
        qml.TRY(x, 0, subspace=(1, 2))
        qml.TRY(w, 0, subspace=(0, 1))
        qml.TAdd([0, 1])
        return qml.expval(qml.GellMann(1, 8))

    x = torch.linspace(0.2, 2.0, 5, dtype=torch.float64)
    w = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    f(x, w).sum().backward()
    total = torch.zeros((), dtype=torch.float64)
    w2 = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    ref = qml.QNode(f.func, qml.device("default.qutrit.mixed", wires=2), interface="torch")
    for xi in x:
        total = total + ref(xi, w2)
    total.backward()
    _close(w.grad, w2.grad)


# -- derivatives -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CIRCUITS))
@pytest.mark.parametrize("method", ["device", "parameter-shift", "best"])
def test_autograd_derivatives_match_reference(kind: str, method: str) -> None:
    ops, _, obs = CIRCUITS[kind]

    def qfunc(x: Any) -> Any:
        ops(x)
        return qml.expval(obs())

    x = qml.numpy.array(0.9, requires_grad=True)
    ours = qml.grad(qml.QNode(qfunc, qml.device("qsem", wires=2), diff_method=method))(x)
    ref_dev = qml.device(MIXED_REF[kind], wires=2)
    theirs = qml.grad(qml.QNode(qfunc, ref_dev, diff_method="parameter-shift"))(x)
    _close(ours, theirs)


def test_device_jacobian_of_several_measurements_and_parameters() -> None:
    """diff_method="device" (qsem's autograd Jacobian) with the torch interface."""

    def qfunc(a: Any, b: Any) -> Any:
        qml.RX(a, 0)
        qml.RY(b, 1)
        qml.CNOT([0, 1])
        return qml.expval(qml.Z(1)), qml.probs(wires=[0])

    args = (torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.1, dtype=torch.float64))
    ours = qml.QNode(qfunc, qml.device("qsem", wires=2), interface="torch", diff_method="device")
    ref = qml.QNode(qfunc, qml.device("default.qubit", wires=2), interface="torch")
    jac = torch.autograd.functional.jacobian
    for a, b in zip(jac(ours, args), jac(ref, args), strict=True):
        for u, v in zip(a, b, strict=True):
            _close(u, v)


def test_torchlayer_trains_on_the_device() -> None:
    """A TorchLayer on qsem: the same loss and gradients as on default.qubit, and Adam
    lowers the loss."""
    n = 3

    def qfunc(inputs: Any, weights: Any) -> Any:
        qml.AngleEmbedding(inputs, wires=range(n))
        qml.BasicEntanglerLayers(weights, wires=range(n))
        return [qml.expval(qml.Z(i)) for i in range(n)]

    shapes = {"weights": (2, n)}
    torch.manual_seed(3)
    x = torch.rand(8, n, dtype=torch.float64)
    y = torch.rand(8, n, dtype=torch.float64) * 2 - 1
    layers = []
    for name in ("qsem", "default.qubit"):
        qnode = qml.QNode(qfunc, qml.device(name, wires=n), interface="torch")
        layer = qml.qnn.TorchLayer(qnode, shapes)
        with torch.no_grad():
            layer.weights.copy_(torch.linspace(0, 1, 2 * n, dtype=torch.float64).reshape(2, n))
        layers.append(layer.double())
    losses = []
    for layer in layers:
        loss = ((layer(x) - y) ** 2).mean()
        loss.backward()
        losses.append(loss)
    _close(losses[0], losses[1])
    _close(layers[0].weights.grad, layers[1].weights.grad)
    opt = torch.optim.Adam(layers[0].parameters(), lr=0.1)
    start = float(losses[0].detach())
    for _ in range(10):
        opt.zero_grad()
        loss = ((layers[0](x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < start - 1e-3


# -- shots -------------------------------------------------------------------------------------
def _shot_qnode(kind: str, measure: Callable[[], Any], shots: Any, seed: int) -> Any:
    ops = CIRCUITS[kind][0]

    def qfunc(x: Any) -> Any:
        ops(x)
        return measure()

    return qml.set_shots(qml.QNode(qfunc, qml.device("qsem", wires=2, seed=seed)), shots)


@pytest.mark.parametrize("kind", list(CIRCUITS))
def test_shots_are_seeded_and_reproducible(kind: str) -> None:
    def measure() -> Any:
        return qml.sample(wires=[0, 1])

    a = _shot_qnode(kind, measure, 50, seed=11)(0.9)
    b = _shot_qnode(kind, measure, 50, seed=11)(0.9)
    c = _shot_qnode(kind, measure, 50, seed=12)(0.9)
    assert a.shape == (50, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kind", list(CIRCUITS))
def test_sample_counts_pass_a_chi_square_test(kind: str) -> None:
    """Counts of 20000 shots (seed 5) against the exact probabilities: chi-square p > 1e-3."""
    shots = 20000
    counts = _shot_qnode(kind, lambda: qml.counts(wires=[0, 1], all_outcomes=True), shots, 5)
    exact = qml.QNode(_pair(kind, lambda: qml.probs(wires=[0, 1]))[0].func,
                      qml.device("qsem", wires=2))(0.9)  # fmt: skip
    got = counts(0.9)
    d = 3 if "qutrit" in kind else 2
    keys = [f"{i}{j}" for i in range(d) for j in range(d)]
    assert list(got) == keys
    observed = np.array([got[k] for k in keys])
    expected = np.asarray(exact) * shots
    keep = expected > 0
    assert observed[~keep].sum() == 0
    assert stats.chisquare(observed[keep], expected[keep]).pvalue > 1e-3


@pytest.mark.parametrize("kind", list(CIRCUITS))
def test_shot_expval_and_var_within_standard_errors(kind: str) -> None:
    shots = 4000
    obs = CIRCUITS[kind][2]
    got = _shot_qnode(kind, lambda: (qml.expval(obs()), qml.var(obs())), shots, 21)(0.9)
    exact = _pair(kind, lambda: (qml.expval(obs()), qml.var(obs())))[0](0.9)
    ev, var = float(exact[0]), float(exact[1])
    assert abs(float(got[0]) - ev) <= SHOT_SIGMAS * np.sqrt(var / shots) + 1e-12
    assert abs(float(got[1]) - var) <= 0.1 * max(var, 0.05)


def test_shot_vectors_and_sample_shapes_follow_pennylane() -> None:
    def measure() -> Any:
        return qml.sample(qml.Z(0)), qml.probs(wires=[1]), qml.counts(qml.X(1))

    ours = _shot_qnode("qubit", measure, [10, 20], 3)(0.9)
    ref = qml.set_shots(
        qml.QNode(_pair("qubit", measure)[1].func, qml.device("default.qubit", wires=2)),
        [10, 20],
    )(0.9)
    assert len(ours) == len(ref) == 2
    for o, r in zip(ours, ref, strict=True):
        assert np.shape(o[0]) == np.shape(r[0]) and np.shape(o[1]) == np.shape(r[1])
        assert set(o[2]) <= {-1.0, 1.0} and sum(o[2].values()) == sum(r[2].values())


def test_broadcast_shots_give_one_row_per_parameter() -> None:
    got = _shot_qnode("qutrit", lambda: qml.expval(qml.GellMann(0, 3)), 100, 2)(
        np.array([0.1, 0.5, 3.0])
    )
    assert np.shape(got) == (3,)


# -- state preparation, THadamard --------------------------------------------------------------
def test_state_preparations_at_the_start() -> None:
    vec = np.array([0.6, 0.0, 0.0, 0.8j])

    def qfunc() -> Any:
        qml.StatePrep(vec, wires=[1, 2])
        qml.BasisState(np.array([1]), wires=[0])
        qml.Hadamard(2)
        return qml.state()

    _close(qml.QNode(qfunc, qml.device("qsem", wires=3))(),
           qml.QNode(qfunc, qml.device("default.qubit", wires=3))())  # fmt: skip

    def qutrit() -> Any:
        qml.QutritBasisState([2, 1], wires=[0, 1])
        qml.TAdd([0, 1])
        return qml.probs(wires=[0, 1])

    _close(qml.QNode(qutrit, qml.device("qsem", wires=2))(),
           qml.QNode(qutrit, qml.device("default.qutrit", wires=2))())  # fmt: skip


@pytest.mark.parametrize("subspace", [None, (0, 1), (0, 2), (1, 2)])
def test_thadamard_round_trips_exactly(subspace: Any) -> None:
    def qfunc() -> None:
        qml.THadamard(wires=0, subspace=subspace)
        qml.adjoint(qml.THadamard(wires=1, subspace=subspace))

    c = Circuit.from_pennylane(qfunc)
    assert type(c.ops[0]) is PennyLaneTHadamard and c.ops[0].subspace == subspace
    back = qml.tape.make_qscript(c.to_pennylane())()
    assert back.operations[0].name == "THadamard"
    assert back.operations[0].hyperparameters["subspace"] == subspace
    for op in back.operations:
        want = qml.matrix(qml.tape.make_qscript(qfunc)(), wire_order=[0, 1])
        got = qml.matrix(back, wire_order=[0, 1])
        _close(got, want, 0.0 + 1e-15)
        assert op.name in ("THadamard", "Adjoint(THadamard)")


# -- errors ------------------------------------------------------------------------------------
class _NoMatrix(qml.operation.Operation):
    num_wires = 1


def test_an_operation_qsem_cannot_run_is_named_in_one_line() -> None:
    @qml.qnode(qml.device("qsem", wires=1))
    def f() -> Any:
        _NoMatrix(wires=0)
        return qml.expval(qml.Z(0))

    with pytest.raises(Exception, match="_NoMatrix") as info:
        f()
    assert "\n" not in str(info.value)


def test_a_wire_used_as_qubit_and_qutrit_is_refused_in_one_line() -> None:
    @qml.qnode(qml.device("qsem", wires=1))
    def f() -> Any:
        qml.TShift(0)
        qml.RX(0.2, 0)
        return qml.probs(wires=0)

    with pytest.raises(DimensionError, match=r"TShift.*RX") as info:
        f()
    assert "\n" not in str(info.value)


def test_bad_device_arguments_are_named() -> None:
    with pytest.raises(QsemError, match="seed"):
        qml.device("qsem", wires=1, seed="x")
    with pytest.raises(QsemError, match="method"):
        qml.device("qsem", wires=1, method="mps")
    with pytest.raises(QsemError, match="c_dtype"):
        qml.device("qsem", wires=1, c_dtype=np.float64)


def test_backprop_refuses_an_interface_it_cannot_see() -> None:
    @qml.qnode(qml.device("qsem", wires=1), interface="autograd", diff_method="backprop")
    def f(x: Any) -> Any:
        qml.RX(x, 0)
        return qml.expval(qml.Z(0))

    with pytest.raises(qml.exceptions.QuantumFunctionError, match="backprop"):
        qml.grad(f)(qml.numpy.array(0.1, requires_grad=True))


# -- from_pennylane: every qutrit operation to its named qsem operation -----------------------
def _qutrit_ops() -> list[tuple[Callable[[], Any], type]]:
    from qsem.circuits import channels as CH
    from qsem.circuits import gates as G

    u = qml.matrix(qml.TRY(0.3, wires=0, subspace=(0, 2)))
    k = qml.QutritAmplitudeDamping(0.1, 0.2, 0.3, wires=0).kraus_matrices()
    return [
        (lambda: qml.TShift(0), G.Shift),
        (lambda: qml.TClock(0), G.Clock),
        (lambda: qml.TAdd([0, 1]), G.Add),
        (lambda: qml.TSWAP([0, 1]), G.SWAP),
        (lambda: qml.TRX(0.4, 0, subspace=(1, 2)), G.SubspaceRX),
        (lambda: qml.TRY(0.4, 0, subspace=(0, 2)), G.SubspaceRY),
        (lambda: qml.TRZ(0.4, 0, subspace=(0, 1)), G.SubspaceRZ),
        (lambda: qml.THadamard(0), G.PennyLaneTHadamard),
        (lambda: qml.QutritUnitary(u, wires=0), G.Unitary),
        (
            lambda: qml.ControlledQutritUnitary(
                u, control_wires=[0], wires=[1], control_values="1"
            ),
            G.Controlled,
        ),
        (lambda: qml.QutritDepolarizingChannel(0.2, 0), CH.Depolarizing),
        (lambda: qml.QutritAmplitudeDamping(0.1, 0.0, 0.3, 0), CH.AmplitudeDamping),
        (lambda: qml.QutritAmplitudeDamping(0.1, 0.2, 0.3, 0), CH.Kraus),
        (lambda: qml.TritFlip(0.1, 0.2, 0.05, 0), CH.TritFlip),
        (lambda: qml.QutritChannel(k, wires=0), CH.Kraus),
    ]


@pytest.mark.parametrize("k", range(15))
def test_from_pennylane_maps_each_qutrit_operation_to_its_named_qsem_operation(k: int) -> None:
    """The class is the named one, and the matrix (or Kraus map) is PennyLane's exactly."""
    make, cls = _qutrit_ops()[k]

    def qfunc() -> None:
        qml.TShift(wires=1)  # both wires are qutrits
        make()

    c = Circuit.from_pennylane(qfunc)
    op = c.ops[-1]
    assert type(op) is cls
    pl_op = qml.tape.make_qscript(make)().operations[0]
    dims = c.wire_dims(op.wires)
    if isinstance(pl_op, qml.operation.Channel):
        ours = op.kraus([torch.as_tensor(p, dtype=torch.float64) for p in op.params], dims,
                        dtype=torch.complex128)  # fmt: skip
        # compare the channels through their Choi-like superoperator Σ K ⊗ K*
        sup = sum(np.kron(m, m.conj()) for m in np.asarray(ours))
        ref = sum(np.kron(m, m.conj()) for m in pl_op.kraus_matrices())
        _close(sup, ref, 1e-12)
    else:
        _close(op.concrete_matrix(dims), qml.matrix(pl_op, wire_order=pl_op.wires), 1e-12)


def test_qubit_controlled_qutrit_gates_with_noise() -> None:
    """qml.ctrl(qutrit op, control=qubit) entangles a qubit with a qutrit (PennyLane's own
    matrix of it is 5 x 5: no PennyLane device runs it), with channels on both kinds of
    wire; against a NumPy density-matrix evolution written here."""

    def qfunc(x: Any) -> Any:
        qml.RY(x, 0)
        qml.TRY(0.8, 1, subspace=(0, 2))
        qml.ctrl(qml.TShift(1), control=0)
        qml.ctrl(qml.TRX(0.5, 1, subspace=(1, 2)), control=0, control_values=[0])
        qml.AmplitudeDamping(0.2, 0)
        qml.TritFlip(0.1, 0.05, 0.2, 1)
        return qml.density_matrix(wires=[0, 1]), qml.expval(qml.Z(0) @ qml.GellMann(1, 8))

    dev = qml.device("qsem", wires=2)
    rho, ev = qml.QNode(qfunc, dev)(0.6)
    assert dev.last_method == "density_matrix"

    def embed(m: np.ndarray, wire: int) -> np.ndarray:
        return np.kron(m, np.eye(3)) if wire == 0 else np.kron(np.eye(2), m)

    def ctrl(u: np.ndarray, value: int) -> np.ndarray:
        p = np.diag([1.0, 0.0]) if value == 0 else np.diag([0.0, 1.0])
        return np.kron(p, u) + np.kron(np.eye(2) - p, np.eye(3))

    gates = [
        embed(qml.matrix(qml.RY(0.6, 0)), 0),
        embed(qml.matrix(qml.TRY(0.8, 0, subspace=(0, 2))), 1),
        ctrl(qml.matrix(qml.TShift(0)), 1),
        ctrl(qml.matrix(qml.TRX(0.5, 0, subspace=(1, 2))), 0),
    ]
    want = np.zeros((6, 6), complex)
    want[0, 0] = 1
    for g in gates:
        want = g @ want @ g.conj().T
    for ks, wire in ((qml.AmplitudeDamping(0.2, 0).kraus_matrices(), 0),
                     (qml.TritFlip(0.1, 0.05, 0.2, 0).kraus_matrices(), 1)):  # fmt: skip
        want = sum(embed(k, wire) @ want @ embed(k, wire).conj().T for k in ks)
    _close(rho, want)
    obs = np.kron(np.diag([1.0, -1.0]), qml.matrix(qml.GellMann(0, 8)))
    _close(ev, np.trace(obs @ want).real)


@pytest.mark.parametrize("wires", [None, ["c", "a", "b"], ["a", "b", "c"]])
def test_wire_labels_and_mid_circuit_measurements(wires: Any) -> None:
    """Any wire labels, in any device order; qubit mid-circuit measurements are deferred."""

    def qfunc(x: Any) -> Any:
        qml.Hadamard("a")
        qml.CNOT(["a", "b"])
        qml.RX(x, "c")
        m = qml.measure("a")
        qml.cond(m, qml.RY)(0.4, "c")
        return qml.probs(wires=["b", "c"]), qml.expval(qml.Z("c"))

    ours = qml.QNode(qfunc, qml.device("qsem", wires=None if wires is None else [*wires, "m"]))
    ref = qml.QNode(qfunc, qml.device("default.qubit"))
    for a, b in zip(ours(0.3), ref(0.3), strict=True):
        _close(a, b)
    assert isinstance(ours(0.3)[1], np.floating)
