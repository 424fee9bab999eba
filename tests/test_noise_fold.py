"""fold_gates_into_channels: the folded circuit simulates to the same state and gradients.

Reference: the unfolded circuit on the same torch engine (each gate and channel applied
on its own), itself checked against Aer in test_noise_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit_aer")

from conftest import ATOL_F64
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qsem.circuits import (
    CNOT,
    RX,
    RZ,
    AmplitudeDamping,
    Circuit,
    Depolarizing,
    H,
    NoiseModel,
    ParameterVector,
    QsemError,
)
from qsem.circuits.noise_fold import FoldedChannel, fold_gates_into_channels
from qsem.simulators import TorchSimulator, probs


def hand_circuit() -> Circuit:
    th = ParameterVector("t", 3)
    nm = NoiseModel().add_error(Depolarizing(0.05, wires=0), H)
    nm.add_error(AmplitudeDamping(0.1, wires=0), RX)
    c = Circuit.qubits(2).add(RZ(th[0], wires=0), H(wires=0), RX(th[1], wires=1))
    c.add(CNOT(wires=[0, 1]), RZ(th[2], wires=1), H(wires=1), H(wires=0), RZ(0.4, wires=0))
    return nm.apply(c, measured=False)


def test_fold_hand_circuit_same_state_and_gradient() -> None:
    c = hand_circuit()
    folded = fold_gates_into_channels(c)
    names = [op.name for op in folded.ops]
    assert names.count("FoldedChannel") == 4 and "CNOT" in names
    assert names[-1] == "RZ"  # a trailing gate with no channel after it stays a gate
    sim = TorchSimulator("density_matrix", dtype=torch.complex128)
    t = torch.tensor(np.random.default_rng(3).uniform(-3, 3, (5, 3)), requires_grad=True)
    ref = sim.run(c, {"t": t}).tensor
    got = sim.run(folded, {"t": t}).tensor
    assert (got - ref).abs().max() < ATOL_F64
    w = torch.arange(4, dtype=torch.float64)
    (g_ref,) = torch.autograd.grad((probs(sim.run(c, {"t": t})) @ w).sum(), t)
    (g_got,) = torch.autograd.grad((probs(sim.run(folded, {"t": t})) @ w).sum(), t)
    assert (g_got - g_ref).abs().max() < ATOL_F64


def test_fold_device_circuit_matches_unfolded() -> None:
    from qsem.experiments.noisy_training import device_circuits

    dev = device_circuits(FakeManilaV2(), 2, 1)
    c = dev["noisy"]
    folded = fold_gates_into_channels(c)
    assert len(folded.ops) < len(c.ops)
    assert any(isinstance(op, FoldedChannel) for op in folded.ops)
    sim = TorchSimulator("density_matrix", dtype=torch.complex128)
    rows = torch.tensor(np.random.default_rng(4).uniform(-3, 3, (6, 2)))
    ws = torch.tensor(np.random.default_rng(5).uniform(-3, 3, (6, 4)))
    binds = {"x": rows, "w": ws}
    assert (sim.run(folded, binds).tensor - sim.run(c, binds).tensor).abs().max() < ATOL_F64


def test_fold_refusals() -> None:
    with pytest.raises(QsemError, match="argument 'circuit'"):
        fold_gates_into_channels("not a circuit")  # type: ignore[arg-type]
    with pytest.raises(QsemError, match="argument 'gates'"):
        FoldedChannel([H(wires=1)], Depolarizing(0.1, wires=0))
