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
