"""torch (autograd) == Aer (parameter shift) == PennyLane (parameter shift), DESIGN.md §4.

Random qubit, qutrit and mixed circuits: values and gradients for inputs and
weights agree to ATOL_BACKENDS in exact mode; shot estimates lie within
SHOT_SIGMAS standard errors of the exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import ATOL_BACKENDS, SHOT_SIGMAS

from qsem.circuits import (
    CNOT,
    CRY,
    RX,
    RY,
    RZ,
    TRX,
    TRY,
    TRZ,
    U3,
    Circuit,
    Controlled,
    Depolarizing,
    GellMann,
    Observable,
    ParameterVector,
    PauliString,
    TAdd,
    TShift,
)
from qsem.simulators.aer import AerBackend
from qsem.simulators.bridge import expval_bridge
from qsem.simulators.pennylane_backend import PennyLaneBackend

F64 = torch.float64


@dataclass
class Case:
    name: str
    circuit: Circuit
    observables: list[Observable]
    n_inputs: int
    n_weights: int
    pennylane: str | None  # device that can express the circuit


def qubit_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    n = 3
    x, w = ParameterVector("x", n), ParameterVector("w", 8)
    c = Circuit.qubits(n)
    for i in range(n):
        c.add(RY(x[i], wires=i))
    gates = [
        lambda k, a, b: RX(w[k], wires=a),
        lambda k, a, b: RZ(w[k], wires=a),
        lambda k, a, b: RY(w[k], wires=a),
        lambda k, a, b: CRY(w[k], wires=[a, b]),
        lambda k, a, b: U3(w[k], x[0], w[(k + 1) % 8], wires=a),
    ]
    for k in range(8):
        a, b = (int(v) for v in rng.choice(n, 2, replace=False))
        c.add(gates[int(rng.integers(len(gates)))](k, a, b), CNOT(wires=[a, b]))
    obs = [
        PauliString("Z", wires=[0]),
        PauliString("XY", wires=[1, 2]),
        PauliString("ZZ", wires=[0, 2]),
    ]
    return Case(f"qubit{seed}", c, obs, n, 8, "default.qubit")


def qutrit_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    n = 2
    x, w = ParameterVector("x", n), ParameterVector("w", 6)
    c = Circuit.qutrits(n)
    for i in range(n):
        c.add(TRY(x[i], wires=i, subspace=(0, 1)))
    subspaces = [(0, 1), (0, 2), (1, 2)]
    kinds = [TRX, TRY, TRZ]
    for k in range(6):
        a = int(rng.integers(n))
        kind = kinds[int(rng.integers(3))]
        sub = subspaces[int(rng.integers(3))]
        c.add(kind(w[k], wires=a, subspace=sub))
        if k % 2:
            c.add(TAdd(wires=[a, 1 - a]))
    c.add(TShift(wires=0))
    obs = [GellMann(3, wires=[0]), GellMann(8, wires=[1]), GellMann(1, wires=[1])]
    return Case(f"qutrit{seed}", c, obs, n, 6, "default.qutrit")


def mixed_case(seed: int) -> Case:
    x, w = ParameterVector("x", 2), ParameterVector("w", 4)
    c = Circuit([2, 3, 2]).add(
        RY(x[0], wires=0), TRY(x[1], wires=1, subspace=(1, 2)), RX(w[0], wires=2),
        Controlled(TRY(w[1], wires=1, subspace=(0, 2)), control_wires=[0]),
        Controlled(RY(w[2], wires=2), control_wires=[1], control_values=[2]),
        TRZ(w[3], wires=1, subspace=(0, 1)), CNOT(wires=[2, 0]),
    )  # fmt: skip
    obs = [PauliString("Z", wires=[0]), GellMann(4, wires=[1]), PauliString("X", wires=[2])]
    return Case(f"mixed{seed}", c, obs, 2, 4, None)


CASES = [qubit_case(s) for s in range(3)] + [qutrit_case(s) for s in range(3)] + [mixed_case(0)]


def values(case: Case, batch: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(len(case.name))
    return {
        "x": (2 * torch.rand(batch, case.n_inputs, generator=g, dtype=F64)).requires_grad_(),
        "w": (6 * torch.rand(case.n_weights, generator=g, dtype=F64)).requires_grad_(),
    }


def value_and_grads(case: Case, **kwargs: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
    p = values(case)
    out = expval_bridge(case.circuit, p, case.observables, **kwargs)  # type: ignore[arg-type]
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=F64).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), [p["x"], p["w"]])
    return out.detach(), list(grads)


def backends_for(case: Case) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("aer-statevector", AerBackend(method="statevector"))]
    if case.pennylane is not None:
        out.append((case.pennylane, PennyLaneBackend(device=case.pennylane)))
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_values_and_gradients_agree_across_backends(case: Case) -> None:
    ref_out, ref_grads = value_and_grads(case, backend="torch", diff_method="backprop")
    for name, backend in backends_for(case):
        out, grads = value_and_grads(case, backend=backend)
        np.testing.assert_allclose(out.numpy(), ref_out.numpy(), atol=ATOL_BACKENDS, err_msg=name)
        for g, r in zip(grads, ref_grads, strict=True):
            np.testing.assert_allclose(g.numpy(), r.numpy(), atol=ATOL_BACKENDS, err_msg=name)


def test_density_matrix_backends_agree_with_noise() -> None:
    """Channels: torch density matrix (autograd) vs Aer density_matrix vs default.mixed."""
    x, w = ParameterVector("x", 2), ParameterVector("w", 3)
    c = Circuit.qubits(2).add(
        RY(x[0], wires=0), RY(x[1], wires=1), Depolarizing(0.2, wires=0), CRY(w[0], wires=[0, 1]),
        RX(w[1], wires=1), Depolarizing(0.1, wires=1), RZ(w[2], wires=0), CNOT(wires=[1, 0]),
    )  # fmt: skip
    case = Case("noisy", c, [PauliString("Z", wires=[0]), PauliString("X", wires=[1])], 2, 3, None)
    ref_out, ref_grads = value_and_grads(case, backend="torch", diff_method="backprop")
    for backend in (AerBackend(method="density_matrix"), PennyLaneBackend(device="default.mixed")):
        out, grads = value_and_grads(case, backend=backend)
        np.testing.assert_allclose(out.numpy(), ref_out.numpy(), atol=ATOL_BACKENDS)
        for g, r in zip(grads, ref_grads, strict=True):
            np.testing.assert_allclose(g.numpy(), r.numpy(), atol=ATOL_BACKENDS)


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[-1]], ids=lambda c: c.name)
def test_aer_shot_estimates_within_standard_errors(case: Case) -> None:
    shots = 8000
    exact, _ = value_and_grads(case, backend="torch", diff_method="backprop")
    est, _ = value_and_grads(case, backend=AerBackend(method="statevector"), shots=shots, seed=7)
    # each observable has eigenvalues in [-λ, λ]; var <= λ² - <O>² bounds the standard error
    bound = torch.tensor(
        [
            float(
                np.abs(
                    np.linalg.eigvalsh(o.local_matrix(tuple(case.circuit.dims[w] for w in o.wires)))
                ).max()
            )
            for o in case.observables
        ],
        dtype=F64,
    )
    stderr = torch.sqrt((bound**2 - exact**2).clamp(min=1e-12) / shots)
    assert bool(((est - exact).abs() <= SHOT_SIGMAS * stderr + 1e-9).all())
