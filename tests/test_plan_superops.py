"""Run-time superoperators of the density-matrix blocks (``plan_superops``).

* the cache of parameter-free superoperators: reused while the operations' values are
  the same (``SuperStep.cached`` counts hits and builds), rebuilt when a circuit of the
  same structure holds other constants or a constant tensor changed in place, and never
  used for a tensor that needs a gradient — each result checked against the
  operation-by-operation Kraus reference of ``test_plan_mutation``;
* :func:`chain_products` against the products taken one by one;
* :func:`unitary_superop` against ``kernels.kron([U, conj(U)])``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ATOL_F64, ATOL_NOISE_AER
from test_adjoint import DIMS, random_circuit
from test_plan_mutation import reference
from test_plan_super import random_kraus, super_step

from qsem.circuits import (
    CNOT,
    RY,
    RZ,
    Circuit,
    Depolarizing,
    Gate,
    Kraus,
    Parameter,
    TShift,
    Unitary,
)
from qsem.simulators import TorchSimulator, kernels
from qsem.simulators.plan import Plan, SimState, run_steps
from qsem.simulators.plan_state import Context
from qsem.simulators.plan_superops import (
    chain_products,
    gate_matrices,
    pair_kron,
    unitary_superop,
)

C128, F64 = torch.complex128, torch.float64


def noisy_circuit(p: float, kraus: torch.Tensor) -> Circuit:
    """A device-like pattern on 3 qubits: ``rz(t) ry`` then a channel on every wire, a
    CNOT chain and its two-qubit channel; ``p`` and ``kraus`` are the constants."""
    t = Parameter("t")
    c = Circuit.qubits(3)
    for w in range(3):
        c.add(RY(0.3 + w, wires=w), Depolarizing(p, wires=w), RZ(t, wires=w))
        c.add(RY(0.7, wires=w), Kraus(kraus, wires=w))
    c.add(CNOT(wires=[0, 1]), Depolarizing(p, wires=1), CNOT(wires=[1, 2]), RZ(t, wires=2))
    return c


VALS = {"t": torch.tensor([0.3, -1.2, 2.5], dtype=F64)}


def run_checked(sim: TorchSimulator, c: Circuit) -> dict[str, int]:
    """Run ``c`` through the blocks, compare with the reference, return the cache counts
    added by this run."""
    step = super_step(sim, c)
    before, pairs = dict(step.cached), step.runs["pair"]
    got = sim.run(c, VALS).density_matrix
    assert step.runs["pair"] == pairs + 1
    assert (got - reference(c, VALS, 3, True)).abs().max() < ATOL_NOISE_AER
    return {k: step.cached[k] - before[k] for k in before}


def test_constant_superoperators_are_built_once_and_reused() -> None:
    rng = np.random.default_rng(0)
    c = noisy_circuit(0.1, torch.as_tensor(random_kraus(rng, 2, 3)))
    sim = TorchSimulator("density_matrix", dtype=C128)
    first = run_checked(sim, c)
    assert first["built"] > 0 and first["hit"] == 0
    again = run_checked(sim, c)
    assert again == {"hit": first["built"], "built": 0}


def test_other_constants_of_the_same_structure_are_not_reused() -> None:
    """Two circuits with one plan (the channel strength is a value, not structure):
    each run rebuilds what the other replaced and matches its own reference; the
    shared Kraus set changed in place is rebuilt too."""
    rng = np.random.default_rng(1)
    ka = torch.as_tensor(random_kraus(rng, 2, 3))
    a, b = noisy_circuit(0.1, ka), noisy_circuit(0.25, ka)
    sim = TorchSimulator("density_matrix", dtype=C128)
    assert super_step(sim, a) is super_step(sim, b)  # one shared plan
    run_checked(sim, a)
    assert run_checked(sim, b)["built"] > 0
    assert run_checked(sim, a)["built"] > 0
    assert run_checked(sim, a)["built"] == 0
    ka.copy_(torch.as_tensor(random_kraus(rng, 2, 3)))  # same tensor, new values
    assert run_checked(sim, a)["built"] > 0
    assert run_checked(sim, a)["built"] == 0


def test_tensors_that_need_a_gradient_are_never_cached() -> None:
    """A constant-looking unitary that requires grad: every run builds its stretch anew
    (nothing kept, not even by a run under ``no_grad``), and its gradient equals the
    one through the ordinary steps."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))
    q, _ = np.linalg.qr(z)
    u = torch.as_tensor(q).requires_grad_(True)
    c = Circuit.qubits(2).add(
        Depolarizing(0.2, wires=0), Unitary(u, wires=0), Depolarizing(0.1, wires=0),
        CNOT(wires=[0, 1]), RZ(Parameter("t"), wires=1),
    )  # fmt: skip
    sim = TorchSimulator("density_matrix", dtype=C128, dm_method="dense")
    step = super_step(sim, c)
    obs = torch.randn(16, dtype=C128, generator=torch.Generator().manual_seed(3))

    def loss(blocks: bool) -> torch.Tensor:
        ctx = Context(c.dims, c.ops, VALS, C128, F64, torch.device("cpu"))
        rho = torch.zeros(3, 16, dtype=C128)
        rho[:, 0] = 1
        s = SimState(rho, "density_matrix")
        out = step.apply(s, ctx) if blocks else run_steps(Plan(step.fallback), s, ctx)
        return (out.tensor @ obs).real.sum()

    with torch.no_grad():  # a run without autograd first: it must not keep the unitary
        loss(True)
    (g_blocks,) = torch.autograd.grad(loss(True), u)
    (g_steps,) = torch.autograd.grad(loss(False), u)
    assert (g_blocks - g_steps).abs().max() < ATOL_NOISE_AER
    assert g_steps.abs().max() > 1e-3
    kept = len(step._consts)
    loss(True)
    assert len(step._consts) == kept  # the unitary's stretch is not kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chain_products_match_one_by_one(seed: int) -> None:
    """Chains of 1-5 factors, batched and not, against the products taken in order."""
    gen = torch.Generator().manual_seed(seed)

    def mat(batched: bool) -> torch.Tensor:
        shape = (4, 3, 3) if batched else (3, 3)
        return torch.randn(*shape, dtype=C128, generator=gen)

    lengths = [1, 5, 2, 3, 4]
    chains = [[mat(bool((k + j + seed) % 2)) for j in range(n)] for k, n in enumerate(lengths)]
    got = chain_products(chains, torch.eye(3, dtype=C128))
    for chain, g in zip(chains, got, strict=True):
        want = chain[0]
        for f in chain[1:]:
            want = f @ want
        assert (g - want.expand_as(g)).abs().max() < 1e-12


@pytest.mark.parametrize("shape", [(2, 2), (5, 2, 2), (4, 6, 3, 3)])
def test_unitary_superop_is_the_kronecker_product(shape: tuple[int, ...]) -> None:
    u = torch.randn(*shape, dtype=C128, generator=torch.Generator().manual_seed(4))
    want = kernels.kron([u, u.conj()])
    got = unitary_superop(u)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-14
    other = torch.randn(3, dtype=C128, generator=torch.Generator().manual_seed(5)).diag()
    assert (pair_kron(u, other) - kernels.kron([u, other])).abs().max() < 1e-14


@pytest.mark.parametrize("kind", ["qubit", "mixed"])
@pytest.mark.parametrize("batch", [None, 3])
def test_gate_matrices_gives_each_one_wire_gate_its_own_matrix(
    kind: str, batch: int | None
) -> None:
    """:func:`gate_matrices` against each gate evaluated alone (``Context.matrix``): every
    one-wire gate among ``idx`` gets its own matrix and superoperator ``U ⊗ conj(U)``
    (stacked parameters, shared parameter-free matrices, qubit and qutrit wires, batched
    angles), and nothing else (multi-wire gates, operations not in ``idx``) is there."""
    circuit, sizes, _ = random_circuit(DIMS[kind], depth=2, seed=3)
    dims = circuit.dims
    for w in range(len(dims)):  # parameter-free gates: one shared formula per wire dimension
        circuit.add(TShift(wires=w) if dims[w] == 3 else RY(0.7, wires=w))
        circuit.add(TShift(wires=w) if dims[w] == 3 else RY(0.7, wires=w))
    g = torch.Generator().manual_seed(5)
    shape = (batch, sizes["x"]) if batch else (sizes["x"],)
    values = {
        "x": torch.rand(shape, generator=g, dtype=F64),
        "w": torch.rand(sizes["w"], generator=g, dtype=F64),
    }
    ctx = Context(dims, circuit.ops, values, C128, F64, torch.device("cpu"))
    skipped = 1  # an operation left out of idx gets nothing
    idx = [i for i in range(len(circuit.ops)) if i != skipped]
    sups: dict[int, torch.Tensor] = {}
    mats = gate_matrices(idx, ctx, sups)
    one_wire = [
        i for i in idx if isinstance(circuit.ops[i], Gate) and len(circuit.ops[i].wires) == 1
    ]
    assert sorted(mats) == sorted(sups) == one_wire
    for i in one_wire:
        want = ctx.matrix(circuit.ops[i])
        got = mats[i]
        assert got.shape[-2:] == want.shape[-2:]
        assert (got - want).abs().max() < ATOL_F64
        assert (sups[i] - kernels.kron([want, want.conj()])).abs().max() < ATOL_F64
