"""The noisy region of a density-matrix plan as superoperator blocks (``plan_super``).

References, none of which uses the blocks:

* ``test_plan_mutation.reference``: ρ evolved one operation at a time with each
  operation's own matrix or Kraus operators (``K ρ K^†`` summed, no superoperator);
* the SuperStep's own ``fallback`` steps run on a dense ρ (the ordinary plan steps:
  ``U ρ U^†`` on rows then columns, each channel's superoperator on the row-major ρ);
* Qiskit Aer ``density_matrix`` with a fake backend's noise (test_noise_model.py runs
  through the blocks too; one case here checks it with the counter).

Each case asserts through ``SuperStep.runs`` that the pair-ordered path (or the
factored fallback) is the one that ran.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import ATOL_AER_TRUNCATION, ATOL_NOISE_AER
from test_plan_mutation import reference

from qsem.circuits import (
    CNOT,
    CRY,
    RX,
    RY,
    RZ,
    TRY,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Depolarizing,
    H,
    Kraus,
    Parameter,
    PhaseDamping,
    TAdd,
    THadamard,
)
from qsem.simulators import TorchSimulator, probs
from qsem.simulators.plan import Plan, SimState, SuperStep, compile_plan, run_steps
from qsem.simulators.plan_state import Context
from qsem.simulators.plan_super import super_blocks

C128, F64 = torch.complex128, torch.float64


def random_kraus(rng: np.random.Generator, d: int, r: int) -> np.ndarray:
    """``r`` Kraus operators ``(r, d, d)`` of a random channel: the blocks of an isometry."""
    a = rng.normal(size=(r * d, d)) + 1j * rng.normal(size=(r * d, d))
    q, _ = np.linalg.qr(a)
    return q.reshape(r, d, d)


def random_noisy_circuit(dims: list[int], n_ops: int, seed: int) -> Circuit:
    """Gates (1-3 wires, adjacent or not, any wire order) and channels (mixtures and Kraus
    sets on 1 or 2 wires), angles ``t`` (batched) and fixed ones, on wires of ``dims``."""
    rng = np.random.default_rng(seed)
    t = Parameter("t")
    c = Circuit(dims)
    n = len(dims)
    c.add(Depolarizing(0.2, wires=0))  # the region starts at once
    for _ in range(n_ops):
        w = int(rng.integers(n))
        kind = int(rng.integers(7))
        angle = t if rng.random() < 0.5 else float(rng.uniform(-3, 3))
        if kind == 0:
            c.add((RY if dims[w] == 2 else TRY)(angle, wires=w))
        elif kind == 1:
            c.add(RZ(angle, wires=w) if dims[w] == 2 else THadamard(wires=w))
        elif kind == 2:
            a, b = (int(v) for v in rng.choice(n, 2, replace=False))
            if dims[a] == dims[b] == 2:
                c.add(CNOT(wires=[a, b]) if rng.random() < 0.5 else CRY(angle, wires=[a, b]))
            elif dims[a] == dims[b]:
                c.add(TAdd(wires=[a, b]))
            else:
                c.add(Kraus(random_kraus(rng, dims[a] * dims[b], 1), wires=[a, b]))
        elif kind == 3:
            c.add(Depolarizing(float(rng.uniform(0, 0.3)), wires=w))
        elif kind == 4:
            gammas = [float(rng.uniform(0, 0.2)) for _ in range(dims[w] - 1)]
            c.add(AmplitudeDamping(*gammas, wires=w))
        elif kind == 5:
            c.add(Kraus(random_kraus(rng, dims[w], int(rng.integers(1, 4))), wires=w))
        else:
            a, b = (int(v) for v in rng.choice(n, 2, replace=False))
            c.add(Kraus(random_kraus(rng, dims[a] * dims[b], 2), wires=[a, b]))
    return c


def super_step(sim: TorchSimulator, c: Circuit) -> SuperStep:
    step = sim.plan(c).steps[-1]
    assert isinstance(step, SuperStep)
    return step


CASES = [([2, 2, 2, 2], 0), ([2, 3, 2], 1), ([3, 3], 2), ([2, 2, 3, 2], 3), ([2, 2, 2], 4)]


@pytest.mark.parametrize(("dims", "seed"), CASES)
@pytest.mark.parametrize("dm_method", ["auto", "dense"])
def test_blocks_match_operation_by_operation_reference(dims, seed, dm_method) -> None:
    c = random_noisy_circuit(dims, 30, seed)
    vals = {"t": torch.tensor([0.3, -1.2, 2.5], dtype=F64)}
    sim = TorchSimulator("density_matrix", dtype=C128, dm_method=dm_method)
    step = super_step(sim, c)
    before = dict(step.runs)
    got = sim.run(c, vals).density_matrix
    assert step.runs["pair"] == before["pair"] + 1  # the blocks ran
    want = reference(c, vals, 3, True)
    assert (got - want).abs().max() < ATOL_NOISE_AER


def test_blocks_gradient_matches_the_ordinary_steps() -> None:
    """Autograd through the blocks against autograd through the fallback steps, both
    from the same dense start (one of them never forms a superoperator block)."""
    c = random_noisy_circuit([2, 3, 2], 25, 7)
    sim = TorchSimulator("density_matrix", dtype=C128, dm_method="dense")
    step = super_step(sim, c)
    d = c.dim
    w = torch.randn(d, d, dtype=C128, generator=torch.Generator().manual_seed(0))
    obs = (w + w.mH).reshape(-1)

    def loss(t: torch.Tensor, blocks: bool) -> torch.Tensor:
        ctx = Context(c.dims, c.ops, {"t": t}, C128, F64, torch.device("cpu"))
        rho = torch.zeros(2, d * d, dtype=C128)
        rho[:, 0] = 1
        s = SimState(rho, "density_matrix")
        out = step.apply(s, ctx) if blocks else run_steps(Plan(step.fallback), s, ctx)
        return (out.tensor @ obs).real.sum()

    t = torch.tensor([0.4, -2.0], dtype=F64, requires_grad=True)
    (g_blocks,) = torch.autograd.grad(loss(t, True), t)
    (g_steps,) = torch.autograd.grad(loss(t, False), t)
    diff = float((loss(t, True) - loss(t, False)).detach())
    assert diff == pytest.approx(0.0, abs=ATOL_NOISE_AER)
    assert (g_blocks - g_steps).abs().max() < ATOL_NOISE_AER
    assert g_steps.abs().max() > 1e-3  # the gradient is not trivially zero


def test_low_rank_factored_state_runs_the_fallback_and_switches_later() -> None:
    """One small channel: ρ stays factored (fallback only). A later channel that would
    pass rank D: ρ is densified at the region's start when the operations before that
    channel add no block ("early"), else the blocks take over from that channel."""
    t = Parameter("t")
    small = Circuit.qubits(3).add(RY(t, wires=0), BitFlip(0.1, wires=1), CNOT(wires=[0, 2]))
    sim = TorchSimulator("density_matrix", dtype=C128)
    vals = {"t": torch.tensor([0.3, 1.1], dtype=F64)}
    step = super_step(sim, small)
    before = dict(step.runs)
    state = sim.run(small, vals)
    assert step.runs == {**before, "fallback": before["fallback"] + 1}
    assert (state.density_matrix - reference(small, vals, 2, True)).abs().max() < 1e-12
    # two qubits: every operation from the first channel (op 3) on is one block, so the
    # rank-4 ρ after op 3 is never formed: dense at op 3, not at BitFlip (op 6)
    switch = Circuit.qubits(2).add(
        RY(t, wires=0), H(wires=1), CNOT(wires=[0, 1]), Depolarizing(0.3, wires=0),
        RZ(t, wires=1), CNOT(wires=[1, 0]), BitFlip(0.2, wires=1), RY(0.4, wires=0),
    )  # fmt: skip
    step = super_step(sim, switch)
    before = dict(step.runs)
    got = sim.run(switch, vals).density_matrix
    assert step.runs == {**before, "pair": before["pair"] + 1, "early": before["early"] + 1}
    assert len(step.blocks_from(3, switch.ops)) == len(step.blocks_from(6, switch.ops)) == 1
    assert (got - reference(switch, vals, 2, True)).abs().max() < 1e-12
    # three qubits: BitFlip and CNOT(0, 1) before the switch form a block of their own,
    # so ρ stays factored until the second Depolarizing (op 4), where the blocks start
    late = Circuit.qubits(3).add(
        RY(t, wires=0), BitFlip(0.1, wires=0), CNOT(wires=[0, 1]), Depolarizing(0.2, wires=2),
        Depolarizing(0.3, wires=2), RY(t, wires=1),
    )  # fmt: skip
    step = super_step(sim, late)
    before = dict(step.runs)
    got = sim.run(late, vals).density_matrix
    assert step.runs == {**before, "pair": before["pair"] + 1}  # not "early"
    assert len(step.blocks_from(1, late.ops)) > len(step.blocks_from(4, late.ops))
    assert (got - reference(late, vals, 2, True)).abs().max() < 1e-12


def test_chunked_batch_and_strided_pair_conversion() -> None:
    """A batch large enough to run in chunks (no grad, dense), and the conversion to pair
    order by a strided copy (the path of registers whose ρ has too many entries for a
    flat index) instead of the gather."""
    c = random_noisy_circuit([2, 2, 2], 20, 11)
    vals = {"t": torch.linspace(-3, 3, 1200, dtype=F64)}
    sim = TorchSimulator("density_matrix", dtype=C128, dm_method="dense")
    with torch.no_grad():
        got = sim.run(c, vals).density_matrix
    want = reference(c, vals, 1200, True)
    assert (got - want).abs().max() < ATOL_NOISE_AER
    step = super_step(sim, c)
    strided = dataclasses.replace(step, flat_limit=0, runs={"pair": 0, "fallback": 0}, _index={})
    plan = compile_plan(c, "density_matrix")
    plan.steps[-1] = strided
    ctx = Context(c.dims, c.ops, {"t": vals["t"][:3]}, C128, F64, torch.device("cpu"))
    rho = torch.zeros(3, 64, dtype=C128)
    rho[:, 0] = 1
    out = run_steps(plan, SimState(rho, "density_matrix"), ctx).tensor.reshape(3, 8, 8)
    assert strided.runs["pair"] == 1 and not strided._index  # no flat index was built
    assert (out - want[:3]).abs().max() < ATOL_NOISE_AER


def test_blocks_merge_commuting_operations_and_respect_order() -> None:
    """Two-qubit blocks: single-wire operations join the entangler's block; an operation
    is never moved before one it does not commute with."""
    c = Circuit.qubits(3).add(
        Depolarizing(0.1, wires=0), RX(0.2, wires=1), CNOT(wires=[0, 1]),  # one block (0, 1)
        PhaseDamping(0.2, wires=2),  # joins (0, 1)? no: 3 wires > 4; own block, or
        CNOT(wires=[1, 2]),  # ... with this one: block (1, 2) holds ops 3 and 4
        RZ(0.3, wires=0),  # commutes past (1, 2): back into block (0, 1)
        RY(0.1, wires=1),  # after CNOT(1, 2): into block (1, 2)
    )  # fmt: skip
    blocks = super_blocks(c.ops, 0, c.dims)
    assert [(b.wires, b.ops) for b in blocks] == [([0, 1], [0, 1, 2, 5]), ([1, 2], [3, 4, 6])]


def test_device_noise_through_blocks_matches_aer() -> None:
    """A circuit transpiled to FakeManilaV2 with its noise (unfolded: gates and channels
    as separate operations) through the blocks, against Aer density_matrix."""
    pytest.importorskip("qiskit_aer")
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qsem.experiments.noisy_training import device_circuits

    dev = device_circuits(FakeManilaV2(), 3, 1)
    tq, nm = dev["qiskit"], dev["noise"]
    noisy = nm.apply(tq)
    rng = np.random.default_rng(5)
    values = {k: torch.tensor(rng.uniform(0, 6, (2, int(n or 1)))) for k, n in
              noisy.parameter_lengths.items()}  # fmt: skip
    sim = TorchSimulator("density_matrix", dtype=C128)
    step = super_step(sim, noisy)
    before = step.runs["pair"]
    got = probs(sim.run(noisy, values))
    assert step.runs["pair"] >= before + 1
    qc = tq.copy()
    qc.save_probabilities(label="p")
    qp = {p.name: p for p in qc.parameters}
    binds = [{qp[f"{k}[{i}]"]: v[:, i].tolist() for k, v in values.items()
              for i in range(v.shape[1])}]  # fmt: skip
    aer = AerSimulator(method="density_matrix", noise_model=dev["aer_noise"])
    res = aer.run(qc, parameter_binds=binds).result()
    want = torch.tensor(np.stack([res.data(i)["p"] for i in range(2)]))
    assert (got - want).abs().max() < ATOL_AER_TRUNCATION
