"""``qml.device("qsem")``'s device derivatives: qsem's adjoint method behind
``diff_method="adjoint"`` / ``"device"`` / ``"best"``.

The adjoint Jacobians are checked on seeded random pure circuits (qubit, qutrit,
mixed qubit/qutrit; :class:`test_pennylane_device.RandomCircuit`) with several
``expval`` measurements (each term of a random observable and their weighted sum)
against PennyLane 0.45's parameter shift (``default.qubit``), ``lightning.qubit``'s
adjoint, ``default.qutrit.mixed``'s backprop (``default.qutrit`` differentiates no
``THermitian``), and, for mixed dimensions, central finite differences of the NumPy
reference of that module. ``qml.Tracker`` proves which method ran
(``derivative_method``). Unsupported cases: ``"device"`` falls back to autograd
(checked against references), ``"adjoint"`` is refused through PennyLane's
``supports_derivatives`` or in one line naming the reason; shots are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pennylane as qml
import pytest
import torch
from conftest import ATOL_PL_DEVICE, FD_ATOL, FD_STEP
from test_pennylane_device import RandomCircuit

from qsem.circuits.errors import QsemError

pnp = qml.numpy
PURE = ("qubit", "qutrit", "mixed")
SEEDS = range(12)  # 12 x 3 kinds = 36 circuits
CASES = [(k, s) for k in PURE for s in SEEDS]


def _close(a: Any, b: Any, atol: float = ATOL_PL_DEVICE) -> None:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


def _expvals(
    rc: RandomCircuit, device: Any, diff: str, with_sum: bool = True, interface: str = "auto"
) -> Any:
    """QNode -> stacked ``[<Σ c_k T_k>, <T_0>, <T_1>, ...]`` (only the terms without
    ``with_sum``: PennyLane's qutrit devices measure no sums)."""

    def qfunc(params: Any) -> Any:
        rc.apply(params)
        total = [qml.expval(rc.observable())] if with_sum else []
        return (*total, *[qml.expval(rc.term(k)) for k in range(len(rc.obs_spec))])

    qnode = qml.QNode(qfunc, device, diff_method=diff, interface=interface)
    return lambda p: qml.math.stack(qnode(p))


def _with_sum(rc: RandomCircuit, terms_jac: np.ndarray) -> np.ndarray:
    """Prepend the Jacobian row of ``Σ c_k T_k`` to the terms' rows."""
    return np.vstack([np.asarray(rc.coeffs) @ terms_jac, terms_jac])


@pytest.mark.parametrize(("kind", "seed"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_adjoint_jacobian_matches_references(kind: str, seed: int) -> None:
    rc = RandomCircuit(kind, seed)
    if not rc.n_params:
        pytest.skip("no gate angle to differentiate")
    dev = qml.device("qsem", wires=rc.n)
    y = pnp.array(rc.params, requires_grad=True)
    with qml.Tracker(dev) as tracker:
        jac = qml.jacobian(_expvals(rc, dev, "adjoint"))(y)
    assert set(tracker.history["derivative_method"]) == {"adjoint"}
    if kind == "qubit":
        ref = qml.jacobian(_expvals(rc, qml.device("default.qubit", wires=rc.n), "parameter-shift"))
        _close(jac, ref(y))
        lightning = qml.jacobian(_expvals(rc, qml.device("lightning.qubit", wires=rc.n), "adjoint"))
        _close(jac, lightning(y))
    elif kind == "qutrit":
        mixed = qml.device("default.qutrit.mixed", wires=rc.n)
        ref = qml.jacobian(_expvals(rc, mixed, "backprop", with_sum=False))(y)
        _close(jac, _with_sum(rc, ref))
    else:  # mixed dimensions: no PennyLane device runs them; central finite differences
        fd = np.zeros(rc.n_params)
        for i in range(rc.n_params):
            e = np.zeros(rc.n_params)
            e[i] = FD_STEP
            fd[i] = rc.numpy_results(rc.params + e)[0] - rc.numpy_results(rc.params - e)[0]
            fd[i] /= 2 * FD_STEP
        _close(jac[0], fd, FD_ATOL)
    # qsem's own backprop (autograd through the engine, no adjoint code) agrees too
    x = torch.tensor(rc.params, dtype=torch.float64, requires_grad=True)
    backprop = _expvals(rc, dev, "backprop", interface="torch")
    _close(jac, torch.autograd.functional.jacobian(backprop, x))


# -- fallbacks and refusals ----------------------------------------------------------------
def _circuit(x: Any, y: Any) -> None:
    qml.Rot(x, y, 0.3, wires=0)  # decomposed to RZ RY RZ for the adjoint
    qml.CNOT([0, 1])
    qml.IsingXX(y, [0, 1])
    qml.RY(x, 1)


def _noisy(x: Any, y: Any) -> None:
    _circuit(x, y)
    qml.AmplitudeDamping(0.2, 0)


FALLBACKS = {  # name -> (ops, measurements, reference device)
    "var": (_circuit, lambda: (qml.var(qml.Z(0) @ qml.X(1)),), "default.qubit"),
    "probs": (_circuit, lambda: (qml.expval(qml.Z(1)), qml.probs(wires=[0])), "default.qubit"),
    "channel": (_noisy, lambda: (qml.expval(qml.Y(0) @ qml.X(1)),), "default.mixed"),
}


def _fallback_qnode(name: str, device: Any, diff: str) -> Any:
    ops, measure, _ = FALLBACKS[name]

    def qfunc(x: Any, y: Any) -> Any:
        ops(x, y)
        return measure()

    qnode = qml.QNode(qfunc, device, diff_method=diff)
    return lambda x, y: pnp.hstack(qnode(x, y))


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_device_derivatives_fall_back_to_autograd(name: str) -> None:
    """diff_method="device" where the adjoint does not apply: the autograd Jacobian."""
    dev = qml.device("qsem", wires=2)
    args = (pnp.array(0.7, requires_grad=True), pnp.array(-0.4, requires_grad=True))
    with qml.Tracker(dev) as tracker:
        ours = qml.jacobian(_fallback_qnode(name, dev, "device"))(*args)
    assert set(tracker.history["derivative_method"]) == {"autograd"}
    ref_dev = qml.device(FALLBACKS[name][2], wires=2)
    theirs = qml.jacobian(_fallback_qnode(name, ref_dev, "parameter-shift"))(*args)
    for a, b in zip(ours, theirs, strict=True):
        _close(a, b)


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_adjoint_refuses_what_it_cannot_differentiate(name: str) -> None:
    """supports_derivatives says no: PennyLane refuses diff_method="adjoint"."""
    qnode = _fallback_qnode(name, qml.device("qsem", wires=2), "adjoint")
    args = (pnp.array(0.7, requires_grad=True), pnp.array(-0.4, requires_grad=True))
    with pytest.raises(qml.exceptions.QuantumFunctionError, match="does not support adjoint"):
        qml.jacobian(qnode)(*args)


def test_density_matrix_method_falls_back_and_adjoint_refuses() -> None:
    def qfunc(x: Any, y: Any) -> Any:
        _circuit(x, y)
        return qml.expval(qml.Z(0) @ qml.Y(1))

    args = (pnp.array(0.7, requires_grad=True), pnp.array(-0.4, requires_grad=True))
    dev = qml.device("qsem", wires=2, method="density_matrix")
    with qml.Tracker(dev) as tracker:
        ours = qml.grad(qml.QNode(qfunc, dev, diff_method="device"))(*args)
    assert set(tracker.history["derivative_method"]) == {"autograd"}
    ref = qml.grad(qml.QNode(qfunc, qml.device("default.qubit", wires=2)))(*args)
    _close(ours, ref)
    with pytest.raises(qml.exceptions.QuantumFunctionError, match="does not support adjoint"):
        qml.grad(qml.QNode(qfunc, dev, diff_method="adjoint"))(*args)


def test_trainable_observable_coefficient() -> None:
    """A trainable coefficient: "device" differentiates it (autograd); "adjoint" refuses
    in one line naming it."""

    def qfunc(x: Any, c: Any) -> Any:
        qml.RX(x, 0)
        return qml.expval(qml.Hamiltonian([c, 0.5], [qml.Z(0), qml.X(0)]))

    x, c = pnp.array(0.3, requires_grad=True), pnp.array(1.5, requires_grad=True)
    dev = qml.device("qsem", wires=1)
    ours = qml.grad(qml.QNode(qfunc, dev, diff_method="device"))(x, c)
    _close(ours, (-1.5 * np.sin(0.3), np.cos(0.3)))  # d/dx c cos x, d/dc c cos x
    with pytest.raises(QsemError, match=r"adjoint.*(Hamiltonian|LinearCombination)"):
        qml.grad(qml.QNode(qfunc, dev, diff_method="adjoint"))(x, c)


def test_shots_refuse_device_derivatives_and_best_shifts() -> None:
    def qfunc(x: Any) -> Any:
        qml.RX(x, 0)
        return qml.expval(qml.Z(0))

    x = pnp.array(0.3, requires_grad=True)
    dev = qml.device("qsem", wires=1, seed=11)
    for diff in ("adjoint", "device"):
        qnode = qml.set_shots(qml.QNode(qfunc, dev, diff_method=diff), 1000)
        with pytest.raises(qml.exceptions.QuantumFunctionError, match=f"does not support {diff}"):
            qml.grad(qnode)(x)
    best = qml.set_shots(qml.QNode(qfunc, dev, diff_method="best"), 20000)
    with qml.Tracker(dev) as tracker:
        g = qml.grad(best)(x)
    assert "derivative_method" not in tracker.history  # parameter shift, not the device
    assert abs(float(g) + np.sin(0.3)) < 5 * np.sqrt(2 / 20000)  # two shifted estimates


# -- batching ---------------------------------------------------------------------------------
def test_broadcast_adjoint_is_one_batched_call_and_matches_backprop() -> None:
    """A broadcast QNode differentiated by the adjoint: PennyLane splits it into rows
    (its Jacobian products take scalar parameters); qsem runs the rows as ONE batched
    adjoint call, which gives the values with the Jacobian (grad_on_execution)."""

    def qfunc(x: Any, w: Any) -> Any:
        qml.TRY(x, 0, subspace=(0, 1))
        qml.TRX(w, 0, subspace=(1, 2))
        qml.TAdd([0, 1])
        qml.TRY(w, 1, subspace=(0, 2))
        return qml.expval(qml.GellMann(1, 3)), qml.expval(qml.GellMann(0, 8))

    grads = []
    for diff in ("adjoint", "backprop"):
        dev = qml.device("qsem", wires=2)
        x = torch.linspace(0.2, 2.0, 6, dtype=torch.float64, requires_grad=True)
        w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        qnode = qml.QNode(qfunc, dev, interface="torch", diff_method=diff)
        out = torch.stack(qnode(x, w))
        (out * torch.arange(1, 13, dtype=torch.float64).reshape(2, 6)).sum().backward()
        # adjoint: the Jacobian comes with the execution (grad_on_execution), so the
        # adjoint's own forward pass is the only engine run; backprop: one run, autograd
        assert dev.engine_calls == 1
        grads.append((x.grad, w.grad))
    for a, b in zip(*grads, strict=True):
        _close(a, b)


def test_parameter_shift_tapes_run_as_one_engine_call() -> None:
    """parameter-shift's shifted tapes differ only in their angles: one engine call."""

    def qfunc(a: Any) -> Any:
        qml.RX(a[0], 0)
        qml.CRY(a[1], [0, 1])
        qml.TRX(a[2], 2, subspace=(0, 2))
        return qml.expval(qml.Z(1)), qml.expval(qml.GellMann(2, 4) + 0.5 * qml.X(0) @ qml.Z(1))

    a = pnp.array([0.4, 1.1, -0.8], requires_grad=True)
    dev = qml.device("qsem", wires=3)
    qnode = qml.QNode(qfunc, dev, diff_method="parameter-shift")
    jac = qml.jacobian(lambda p: pnp.stack(qnode(p)))(a)
    assert dev.engine_calls == 2  # the forward run, then every shifted tape at once
    fd = qml.QNode(
        qfunc, qml.device("qsem", wires=3), diff_method="finite-diff",
        gradient_kwargs={"h": FD_STEP, "approx_order": 2},
    )  # fmt: skip
    _close(jac, qml.jacobian(lambda p: pnp.stack(fd(p)))(a), FD_ATOL)


def test_torchlayer_trains_with_the_adjoint() -> None:
    """TorchLayer (broadcast inputs) with diff_method="adjoint": the loss and gradients of
    default.qubit's adjoint (lightning.qubit's differ from both by ~1e-8 on this layer)."""
    n = 3

    def qfunc(inputs: Any, weights: Any) -> Any:
        qml.AngleEmbedding(inputs, wires=range(n))
        qml.StronglyEntanglingLayers(weights, wires=range(n))
        return [qml.expval(qml.Z(i)) for i in range(n)]

    torch.manual_seed(4)
    x = torch.rand(5, n, dtype=torch.float64)
    layers = []
    for name in ("qsem", "default.qubit"):
        qnode = qml.QNode(
            qfunc, qml.device(name, wires=n), interface="torch", diff_method="adjoint"
        )
        layer = qml.qnn.TorchLayer(qnode, {"weights": (2, n, 3)}).double()
        with torch.no_grad():
            layer.weights.copy_(torch.linspace(-1, 1, 6 * n, dtype=torch.float64).reshape(2, n, 3))
        loss = (layer(x) ** 2).sum()
        loss.backward()
        layers.append((loss, layer.weights.grad))
    _close(layers[0][0], layers[1][0])
    _close(layers[0][1], layers[1][1])


@pytest.mark.parametrize(
    "module",
    [
        "qsem.simulators.pennylane_derivatives",
        "qsem.simulators.pennylane_device",
        "qsem.simulators.pennylane_prep",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_adjoint_jacobian_of_several_measurements_is_one_sweep() -> None:
    """M measurements: one stacked adjoint call (rows = measurements), not M sweeps."""

    def qfunc(a: Any) -> Any:
        qml.RX(a[0], 0)
        qml.CRY(a[1], [0, 1])
        qml.TRX(a[2], 2, subspace=(0, 2))
        return (qml.expval(qml.Z(1)), qml.expval(qml.GellMann(2, 4) + 0.5 * qml.Y(0)),
                qml.expval(qml.X(0) @ qml.GellMann(2, 1)))  # fmt: skip

    a = pnp.array([0.4, 1.1, -0.8], requires_grad=True)
    dev = qml.device("qsem", wires=3)
    qnode = qml.QNode(qfunc, dev, diff_method="adjoint")
    jac = qml.jacobian(lambda p: pnp.stack(qnode(p)))(a)
    assert dev.engine_calls == 1  # one adjoint call for 3 rows gives values and Jacobian
    assert dev.adjoint_sweeps == 1
    backprop = qml.QNode(qfunc, qml.device("qsem", wires=3), interface="torch")
    x = torch.tensor(np.asarray(a), requires_grad=True)
    _close(jac, torch.autograd.functional.jacobian(lambda p: torch.stack(backprop(p)), x))


def test_device_vjp_is_one_adjoint_sweep_for_a_broadcast_batch() -> None:
    """device_vjp=True: PennyLane asks for vector-Jacobian products; the 5 rows of the
    TorchLayer batch are one adjoint sweep, gradients as default.qubit's adjoint."""
    n = 3

    def qfunc(inputs: Any, weights: Any) -> Any:
        qml.AngleEmbedding(inputs, wires=range(n))
        qml.StronglyEntanglingLayers(weights, wires=range(n))
        return [qml.expval(qml.Z(i)) for i in range(n)]

    torch.manual_seed(4)
    x = torch.rand(5, n, dtype=torch.float64)
    grads = []
    for name, vjp in (("qsem", True), ("default.qubit", False)):
        dev = qml.device(name, wires=n)
        qnode = qml.QNode(qfunc, dev, interface="torch", diff_method="adjoint", device_vjp=vjp)
        layer = qml.qnn.TorchLayer(qnode, {"weights": (2, n, 3)}).double()
        with torch.no_grad():
            layer.weights.copy_(torch.linspace(-1, 1, 6 * n, dtype=torch.float64).reshape(2, n, 3))
        with qml.Tracker(dev) as tracker:
            (layer(x) ** 2).sum().backward()
        grads.append(layer.weights.grad)
        if name == "qsem":
            assert dev.adjoint_sweeps == 1
            assert tracker.totals["vjps"] == 5 and "derivatives" not in tracker.totals
    _close(*grads)


# -- second order ----------------------------------------------------------------------------
SECOND_KINDS = ("qubit", "noisy_qubit", "qutrit", "noisy_qutrit", "mixed")
SECOND_CASES = [(k, s) for k in SECOND_KINDS for s in range(4)]


def _loss_qnode(rc: RandomCircuit, device: Any, interface: str, diff: str) -> Any:
    """``Σ_k c_k <term_k>`` of ``rc`` as one QNode (terms apart: qutrit devices measure no
    sums), differentiable twice (``max_diff=2``)."""

    def qfunc(params: Any) -> Any:
        rc.apply(params)
        return [qml.expval(rc.term(k)) for k in range(len(rc.obs_spec))]

    qnode = qml.QNode(qfunc, device, interface=interface, diff_method=diff, max_diff=2)
    return lambda p: sum(c * o for c, o in zip(rc.coeffs, qnode(p), strict=True))


@pytest.mark.parametrize(("kind", "seed"), SECOND_CASES, ids=[f"{k}-{s}" for k, s in SECOND_CASES])
def test_backprop_hessian_matches_references(kind: str, seed: int) -> None:
    """Second derivatives go through backprop (torch, twice through the engine): the
    Hessian of a random circuit's loss equals PennyLane's own autograd backprop Hessian
    on default.qubit / default.mixed / default.qutrit.mixed, and (mixed dimensions)
    central differences of qsem's first-order gradient. (PennyLane's second-order
    parameter shift is no reference here: it gives 0 for CRY on noisy_qubit-3, where
    both backprops give 0.213.)"""
    rc = RandomCircuit(kind, seed)
    if not rc.n_params:
        pytest.skip("no gate angle to differentiate")
    ours = _loss_qnode(rc, qml.device("qsem", wires=rc.n), "torch", "backprop")
    x = torch.tensor(rc.params, dtype=torch.float64, requires_grad=True)
    hess = torch.autograd.functional.hessian(ours, x).numpy()
    if kind == "mixed":
        fd = np.zeros((rc.n_params, rc.n_params))
        for i in range(rc.n_params):
            e = torch.zeros(rc.n_params, dtype=torch.float64)
            e[i] = FD_STEP
            up = torch.autograd.functional.jacobian(ours, x + e)
            down = torch.autograd.functional.jacobian(ours, x - e)
            fd[i] = ((up - down) / (2 * FD_STEP)).numpy()
        _close(hess, fd, FD_ATOL)
        return
    name = {"qubit": "default.qubit", "noisy_qubit": "default.mixed"}.get(kind)
    device = qml.device(name or "default.qutrit.mixed", wires=rc.n)
    ref = _loss_qnode(rc, device, "autograd", "backprop")
    _close(hess, qml.jacobian(qml.grad(ref))(pnp.array(rc.params, requires_grad=True)))


def test_backprop_hessian_closed_form() -> None:
    """RY(a) ⊗ RX(b), CNOT, <Z0 Y1> = -sin b on two qubits, and TRY(c) on the (0, 1)
    subspace of a qutrit, <λ3> = cos c: the Hessian is diag(0, sin b, -0.3 cos c) (it
    was diag(sin b / 2, -sin b / 2, ...) before the rotations' backward was made
    differentiable)."""
    dev = qml.device("qsem", wires=3)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def f(p: Any) -> Any:
        qml.RY(p[0], 0)
        qml.RX(p[1], 1)
        qml.CNOT([0, 1])
        qml.TRY(p[2], 2, subspace=(0, 1))
        return qml.expval(qml.Z(0) @ qml.Y(1)), qml.expval(qml.GellMann(2, 3))

    p = torch.tensor([0.4, -0.9, 1.3], dtype=torch.float64, requires_grad=True)
    hess = torch.autograd.functional.hessian(lambda t: f(t)[0] + 0.3 * f(t)[1], p)
    b, c = float(p[1]), float(p[2])
    _close(hess, np.diag([0.0, np.sin(b), -0.3 * np.cos(c)]))


def test_second_order_device_derivatives_are_refused_for_backprop_or_shift() -> None:
    """``max_diff=2`` with "adjoint": the device offers first derivatives only, so
    PennyLane refuses it; the docs point to backprop or parameter shift."""
    from pennylane.exceptions import QuantumFunctionError

    dev = qml.device("qsem", wires=1)
    assert not dev.supports_derivatives(
        qml.devices.ExecutionConfig(gradient_method="adjoint", derivative_order=2)
    )
    qnode = qml.QNode(lambda a: (qml.RX(a, 0), qml.expval(qml.Z(0)))[1], dev,
                      diff_method="adjoint", max_diff=2)  # fmt: skip
    with pytest.raises(QuantumFunctionError, match="adjoint"):
        qml.jacobian(qml.grad(qnode))(pnp.array(0.3, requires_grad=True))
