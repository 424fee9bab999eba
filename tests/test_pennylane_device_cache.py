"""``qml.device("qsem")`` keeps the qsem circuit of each tape structure and rebinds it.

A tape of named gates with scalar (or broadcast) angles is converted once per structure
(operations, measurements, wire labels) and only rebound afterwards; the device counts
the circuits it builds (``tape_conversions``). Checked here: the count, and that the
rebound circuit's values and gradients equal PennyLane 0.45's ``default.qutrit`` (complex128,
``ATOL_PL_DEVICE``) for each new set of angles; float32 angles (a ``TorchLayer``'s
weights and inputs) bind exactly as their float64 values; the measurements are part of
the structure (the same operations measured on a qubit or a qutrit wire are two
circuits, each right against its closed form).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pennylane as qml
import torch
from conftest import ATOL_PL_DEVICE


def _classifier(x: Any, w: Any) -> Any:
    for i in range(2):
        qml.TRY(x[..., i], wires=i, subspace=(0, 1))
        qml.TRY(w[i, 0], wires=i, subspace=(0, 1))
        qml.TRX(w[i, 1], wires=i, subspace=(1, 2))
    qml.TAdd(wires=[0, 1])
    qml.THadamard(wires=1)
    return qml.probs(wires=[1])


def _close(a: torch.Tensor, b: Any) -> None:
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a.detach().numpy(), b, atol=ATOL_PL_DEVICE, rtol=0)


def test_a_tape_structure_is_converted_once_and_rebound() -> None:
    dev = qml.device("qsem", wires=2)
    ours = qml.QNode(_classifier, dev, interface="torch", diff_method="backprop")
    ref = qml.QNode(_classifier, qml.device("default.qutrit", wires=2), diff_method="backprop")
    g = torch.Generator().manual_seed(18)
    x = torch.rand(5, 2, generator=g, dtype=torch.float64)
    for _ in range(3):
        w = torch.rand(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
        w_ref = w.detach().clone().requires_grad_(True)
        p, p_ref = ours(x, w), ref(x, w_ref)
        _close(p, p_ref)
        (p[:, 1] * torch.arange(5.0)).sum().backward()
        (p_ref[:, 1] * torch.arange(5.0)).sum().backward()
        assert w.grad is not None and w_ref.grad is not None
        _close(w.grad, w_ref.grad)
    assert dev.tape_conversions == 1  # three calls, new angles each, one circuit
    assert dev.engine_calls == 3


def test_float32_angles_bind_as_their_float64_values() -> None:
    dev = qml.device("qsem", wires=2)
    qnode = qml.QNode(_classifier, dev, interface="torch", diff_method="backprop")
    g = torch.Generator().manual_seed(19)
    x32 = torch.rand(4, 2, generator=g)
    w32 = torch.rand(2, 2, generator=g, requires_grad=True)
    w64 = w32.detach().double().requires_grad_(True)
    p32, p64 = qnode(x32, w32), qnode(x32.double(), w64)
    assert p32.dtype == torch.float64
    assert torch.equal(p32, p64)  # the same circuit, bound to exactly the same angles
    p32.sum(0)[0].backward()
    p64.sum(0)[0].backward()
    assert w32.grad is not None and w64.grad is not None and w32.grad.dtype == torch.float32
    assert torch.equal(w32.grad, w64.grad.float())


def test_a_preparation_then_named_gates_is_kept() -> None:
    def qfunc(a: Any) -> Any:
        qml.QutritBasisState([1, 2], wires=[0, 1])
        qml.TRY(a, wires=0, subspace=(1, 2))
        qml.TAdd(wires=[0, 1])
        return qml.expval(qml.GellMann(1, 3)), qml.probs(wires=[0])

    dev = qml.device("qsem", wires=2)
    ours = qml.QNode(qfunc, dev, interface="torch")
    ref = qml.QNode(qfunc, qml.device("default.qutrit", wires=2), interface="torch")
    for a in (0.3, -1.1, 2.5):
        t = torch.tensor(a, dtype=torch.float64)
        for r, e in zip(ours(t), ref(t), strict=True):
            _close(r, e)
    assert dev.tape_conversions == 1


def test_the_measurements_are_part_of_the_structure() -> None:
    """Wire 1 carries no operation: measuring it with ``PauliZ`` makes it a qubit, with
    ``GellMann`` a qutrit, so the same operations give two circuits."""

    def qfunc(a: Any, qutrit: bool) -> Any:
        qml.TRY(a, wires=0, subspace=(0, 1))
        return qml.expval(qml.GellMann(1, 8) if qutrit else qml.PauliZ(1)), qml.probs(wires=0)

    dev = qml.device("qsem", wires=2)
    qnode = qml.QNode(qfunc, dev, interface="torch")
    a = 0.7
    probs = torch.tensor([np.cos(a / 2) ** 2, np.sin(a / 2) ** 2, 0.0], dtype=torch.float64)
    for qutrit, value in ((False, 1.0), (True, 1 / np.sqrt(3)), (False, 1.0)):
        ev, p = qnode(torch.tensor(a, dtype=torch.float64), qutrit)
        _close(ev, value)  # <0|λ8|0> = 1/√3 on a qutrit, <0|Z|0> = 1 on a qubit
        _close(p, probs)
    assert dev.tape_conversions == 2
