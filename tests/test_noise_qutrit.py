"""Transmon qutrit noise against hand-written Kraus matrices, and on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ATOL_BACKENDS, ATOL_F64

from qsem.circuits import (
    TRY,
    Circuit,
    DimensionError,
    H,
    NoiseModel,
    QsemValueError,
    TAdd,
    THadamard,
)
from qsem.simulators import make_backend, probs, simulate

T1, TPHI, T1Q, T2Q, PLEAK = (20.0, 8.0), 15.0, 0.5, 2.0, 0.05


def model():
    return NoiseModel.transmon_qutrit(t1=T1, t_phi=TPHI, t_1q=T1Q, t_2q=T2Q, p_leak=PLEAK)


def idle(rho: np.ndarray, t: float, leak: bool) -> np.ndarray:
    """One wire's noise after a gate of duration t, written out by hand."""
    g1, g2 = 1 - math.exp(-t / T1[0]), 1 - math.exp(-t / T1[1])
    k = [np.diag([1, math.sqrt(1 - g1), math.sqrt(1 - g2)]).astype(complex)]
    k.append(math.sqrt(g1) * np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=complex))
    k.append(math.sqrt(g2) * np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]], dtype=complex))
    rho = sum(a @ rho @ a.conj().T for a in k)
    j = np.arange(3)
    rho = rho * np.exp(-((j[:, None] - j[None, :]) ** 2) * t / TPHI)
    if leak:
        a0 = np.diag([1, math.sqrt(1 - PLEAK), 1]).astype(complex)
        a1 = np.zeros((3, 3), dtype=complex)
        a1[2, 1] = math.sqrt(PLEAK)
        rho = a0 @ rho @ a0.conj().T + a1 @ rho @ a1.conj().T
    return rho


def on_wire(f, rho: np.ndarray, wire: int) -> np.ndarray:
    """Apply a one-qutrit map f to wire 0 or 1 of a two-qutrit ρ (by its Choi action)."""
    r = rho.reshape(3, 3, 3, 3)  # (a, b, a', b')
    out = np.zeros_like(r)
    for i in range(3):
        for j in range(3):
            e = np.zeros((3, 3), dtype=complex)
            e[i, j] = 1
            fe = f(e)
            if wire == 0:
                out += np.einsum("xy,bc->xbyc", fe, r[i, :, j, :])
            else:
                out += np.einsum("ac,xy->axcy", r[:, i, :, j], fe)
    return out.reshape(9, 9)


def test_one_qutrit_gate_against_hand_written_channels() -> None:
    nc = model().apply(Circuit.qutrits(1).add(THadamard(wires=0)), measured=False)
    psi = np.ones(3, dtype=complex) / math.sqrt(3)
    ref = idle(np.outer(psi, psi.conj()), T1Q, leak=False)
    got = simulate(nc, dtype=torch.complex128).tensor.numpy()
    assert np.abs(got - ref).max() < ATOL_F64


def test_two_qutrit_gate_leaks_into_level_2() -> None:
    c = Circuit.qutrits(2).add(THadamard(wires=0), TAdd(wires=[0, 1]))
    got = simulate(model().apply(c, measured=False), dtype=torch.complex128).tensor.numpy()
    psi = np.ones(3, dtype=complex) / math.sqrt(3)
    rho = np.kron(idle(np.outer(psi, psi.conj()), T1Q, False), np.diag([1, 0, 0]).astype(complex))
    add = np.zeros((9, 9))
    for a in range(3):
        for b in range(3):
            add[3 * a + (a + b) % 3, 3 * a + b] = 1
    rho = add @ rho @ add.T
    for w in (0, 1):
        rho = on_wire(lambda r: idle(r, T2Q, True), rho, w)
    assert np.abs(got - rho).max() < ATOL_F64
    # leakage moves |11> (1/3 of the state after TAdd) to |12>: compare with p_leak = 0
    tight = NoiseModel.transmon_qutrit(t1=T1, t_phi=TPHI, t_1q=T1Q, t_2q=T2Q, p_leak=0.0)
    base = simulate(tight.apply(c, measured=False), dtype=torch.complex128).tensor.numpy()
    extra = got.reshape(9, 9)[5, 5].real - base.reshape(9, 9)[5, 5].real
    assert extra > 0.5 * PLEAK / 3


def test_readout_confusion_3x3() -> None:
    nm = model()
    c = Circuit.qutrits(2).add(THadamard(wires=0), TRY(0.9, wires=1, subspace=(1, 2)))
    state = simulate(nm.apply(c), dtype=torch.complex128)
    m = np.asarray(nm.default_readout.matrix)
    p = probs(state).numpy()
    assert np.abs(probs(state, readout=nm).numpy() - p @ np.kron(m, m)).max() < ATOL_F64
    assert (
        np.abs(probs(state, [1], readout=nm).numpy() - probs(state, [1]).numpy() @ m).max()
        < ATOL_F64
    )


@pytest.mark.parametrize(
    ("backend", "options"),
    [("aer", {}), ("pennylane", {"device": "default.qutrit.mixed"})],
)
def test_every_backend_runs_the_noisy_qutrit_circuit(backend: str, options: dict) -> None:
    pytest.importorskip("qiskit_aer" if backend == "aer" else "pennylane")
    c = Circuit.qutrits(2).add(THadamard(wires=0), TAdd(wires=[0, 1]))
    nc = model().apply(c)
    ref = probs(simulate(nc, dtype=torch.complex128))
    vals = torch.zeros(1, 0, dtype=torch.float64)
    be = make_backend(backend, **options)
    assert torch.allclose(be.probs(nc, vals, [], [0, 1])[0], ref, atol=ATOL_BACKENDS)
    if backend == "aer":  # the encoding's unused level |11> stays empty
        assert float(be.leakage(nc, vals, []).abs().max()) < ATOL_F64


def test_bad_input() -> None:
    with pytest.raises(DimensionError, match=r"argument 'circuit'.*qutrit wires"):
        model().apply(Circuit.qubits(1).add(H(wires=0)))
    with pytest.raises(QsemValueError, match="argument 't1'"):
        NoiseModel.transmon_qutrit(t1=(1.0,))
    with pytest.raises(QsemValueError, match="argument 'p_leak'"):
        NoiseModel.transmon_qutrit(p_leak=2.0)


def test_noise_strength_scales_gate_times_and_readout() -> None:
    from qsem.circuits.noise_qutrit import DEFAULT_READOUT
    from qsem.experiments.qutrit_noise import noise_at

    m = np.asarray(DEFAULT_READOUT)
    for s in (0.0, 1.0, 2.5):
        nm = noise_at(s, 0.5)
        assert nm.t_1q == pytest.approx(0.5 * s)
        assert np.allclose(nm.default_readout.matrix.numpy(), np.eye(3) + s * (m - np.eye(3)))
    assert [op.name for op in noise_at(0.0, 0.5).apply(Circuit.qutrits(1)).ops] == []


def test_noisy_qutrit_head_reads_through_noise_and_confusion() -> None:
    from qsem.experiments.qutrit_noise import NoisyQutritHead, noise_at

    torch.manual_seed(0)
    nm = noise_at(2.0, 0.5)
    head = NoisyQutritHead(4, 3, nm)
    x = torch.rand(5, 4, dtype=torch.float32)
    a = head.to_head(head.extractor(x)).double()
    params = {f"a{i}": a[:, i] for i in range(4)}
    params.update({f"w{i}": head.weights[i].double() for i in range(2)})
    from qsem.experiments.qutrit_vs_classical import qutrit_circuit

    st = simulate(nm.apply(qutrit_circuit()), params, mode="density_matrix", dtype=torch.complex128)
    ref = probs(st, readout=nm)
    assert torch.allclose(head.born(x).double(), ref, atol=1e-6)  # float32 input and output


def test_qutrit_noise_smoke(tmp_path) -> None:
    import json

    from qsem.experiments import qutrit_noise as qn
    from qsem.runner import run_experiment

    tiny = ["n_seeds=2", "epochs=2", "strengths=[0, 2]", "kleene_train_kbs=2", "kleene_test_kbs=2"]
    run_experiment(qn.EXPERIMENT, overrides=tiny, out=tmp_path / "run", quiet=True)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["summary"]) == {"softmax", "qutrit@0", "qutrit@2"}
    assert set(res["tests_qutrit_minus_softmax"]) == {"qutrit@0", "qutrit@2"}
    assert "| qutrit@2 |" in (tmp_path / "run" / "qutrit_noise.md").read_text()
