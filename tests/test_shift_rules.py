"""Parameter-shift rules from generator spectra, checked against autograd derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

from qsem.circuits import (
    CRX,
    CRY,
    CRZ,
    RX,
    RY,
    RZ,
    TRX,
    TRY,
    TRZ,
    U3,
    Circuit,
    Controlled,
    GellMann,
    Hermitian,
    Parameter,
    PhaseShift,
    Unitary,
)
from qsem.circuits.shift import frequencies, shift_rule
from qsem.simulators import TorchSimulator, expval


def test_two_term_rule_for_half_integer_spectrum() -> None:
    rule = shift_rule(np.array([-0.5, 0.5]))
    assert [c for c, _ in rule] == pytest.approx([0.5, -0.5])
    assert [s for _, s in rule] == pytest.approx([math.pi / 2, -math.pi / 2])


def test_frequencies_of_a_subspace_rotation() -> None:
    np.testing.assert_allclose(frequencies(np.array([-0.5, 0.0, 0.5])), [0.5, 1.0])


def test_constant_generator_has_no_terms() -> None:
    assert shift_rule(np.array([0.3, 0.3])) == []


@pytest.mark.parametrize(
    "spectrum",
    [
        [-0.5, 0.5],
        [0.0, 1.0],
        [-0.5, 0.0, 0.5],
        [-1.0, 0.0, 1.0],
        [0.0, 0.3, 1.1],
        [-1.5, -0.5, 0.5, 1.5],
    ],
)
def test_rule_is_exact_on_every_trig_polynomial_of_the_spectrum(spectrum: list[float]) -> None:
    """f(θ) = Σ a_l cos(Ω_l θ) + b_l sin(Ω_l θ): the rule must reproduce f'(θ) exactly."""
    omega = frequencies(np.array(spectrum))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=len(omega)), rng.normal(size=len(omega))

    def f(t: float) -> float:
        return float(np.sum(a * np.cos(omega * t) + b * np.sin(omega * t)))

    def df(t: float) -> float:
        return float(np.sum(omega * (-a * np.sin(omega * t) + b * np.cos(omega * t))))

    rule = shift_rule(np.array(spectrum))
    for t in (0.0, 0.37, -1.3):
        assert sum(c * f(t + s) for c, s in rule) == pytest.approx(df(t), abs=1e-10)


def _gates() -> list[tuple[object, list[int]]]:
    x = Parameter("x")
    return [
        (RX(x, wires=0), [2]),
        (RY(x, wires=0), [2]),
        (RZ(x, wires=0), [2]),
        (PhaseShift(x, wires=0), [2]),
        (TRX(x, wires=0, subspace=(0, 2)), [3]),
        (TRY(x, wires=0, subspace=(1, 2)), [3]),
        (TRZ(x, wires=0, subspace=(0, 1)), [3]),
        (CRX(x, wires=[0, 1]), [2, 2]),
        (CRY(x, wires=[1, 0]), [2, 2]),
        (CRZ(x, wires=[0, 1]), [2, 2]),
        (Controlled(TRY(x, wires=1, subspace=(0, 2)), control_wires=[0]), [2, 3]),
        (Controlled(RX(x, wires=1), control_wires=[0], control_values=[2]), [3, 2]),
    ]


@pytest.mark.parametrize(("gate", "dims"), _gates(), ids=lambda g: getattr(g, "name", str(g)))
def test_gate_shift_rule_matches_autograd(gate: object, dims: list[int]) -> None:
    """Random state in, gate, random Hermitian out: shift rule == autograd derivative."""
    d = math.prod(dims)
    gen = torch.Generator().manual_seed(d)
    raw = torch.randn(d, d, dtype=torch.complex128, generator=gen)
    prep = Unitary(torch.linalg.qr(raw)[0], wires=list(range(len(dims))))
    herm = torch.randn(d, d, dtype=torch.complex128, generator=gen)
    obs = Hermitian(herm + herm.mH, wires=list(range(len(dims))))
    c = Circuit(dims).add(prep, gate)  # type: ignore[arg-type]
    sim = TorchSimulator(dtype=torch.complex128)

    def f(value: float) -> float:
        return float(expval(sim.run(c, {"x": value}), obs))

    theta = torch.tensor(0.731, dtype=torch.float64, requires_grad=True)
    expval(sim.run(c, {"x": theta}), obs).backward()
    rule = gate.shift_rule(0, tuple(dims))  # type: ignore[attr-defined]
    shifted = sum(cf * f(0.731 + s) for cf, s in rule)
    assert shifted == pytest.approx(float(theta.grad), abs=ATOL_F64 * 100)  # type: ignore[arg-type]


def test_u3_rules_for_each_parameter() -> None:
    c0 = Circuit.qubits(1)
    obs = GellMann(1, wires=[0])
    base = [0.4, 1.1, -0.7]
    for i in range(3):
        names = [Parameter(f"p{j}") for j in range(3)]
        c = c0.copy().add(U3(*names, wires=0))
        sim = TorchSimulator(dtype=torch.complex128)
        vals = {
            f"p{j}": torch.tensor(base[j], dtype=torch.float64, requires_grad=True)
            for j in range(3)
        }
        expval(sim.run(c, vals), obs).backward()
        rule = c.ops[0].shift_rule(i, (2,))  # type: ignore[attr-defined]

        def f(shift: float, i: int = i, c: Circuit = c, sim: TorchSimulator = sim) -> float:
            v = {f"p{j}": base[j] + (shift if j == i else 0.0) for j in range(3)}
            return float(expval(sim.run(c, v), obs))

        assert sum(cf * f(s) for cf, s in rule) == pytest.approx(
            float(vals[f"p{i}"].grad), abs=1e-9
        )
