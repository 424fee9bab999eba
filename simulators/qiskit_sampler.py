r"""Qiskit's Sampler primitive (``BaseSamplerV2``) on qsem's torch engine.

:class:`SamplerV2` runs Qiskit PUBs ``(circuit, parameter_values, shots)`` whose
circuits end in measurements (Qiskit ML's ``SamplerQNN``, ``VQC`` ...):

* the final measurements are taken off (measurements in the middle of the
  circuit, resets and classical control are refused); the rest is simulated
  exactly on :class:`~qsem.simulators.TorchSimulator` (complex128), every PUB of
  one ``run`` call that shares the circuit object in ONE batched engine call on
  its distinct parameter rows;
* each PUB element draws ``shots`` outcomes of the measured qubits from the Born
  probabilities (``torch.multinomial``, a ``torch.Generator`` seeded with
  ``seed`` afresh for each ``run`` call, so a fixed ``seed`` repeats results);
* outcomes go to one ``BitArray`` per classical register, named as the register,
  in Qiskit's bit order: clbit ``i`` of a register is bit ``i`` of the integer
  (``get_counts()`` prints clbit 0 rightmost); clbits never measured read 0.
  ``shots`` come from the PUB, else ``run(shots=...)``, else ``default_shots``;
* ``readout=`` (a :class:`~qsem.circuits.NoiseModel`, e.g.
  ``NoiseModel.from_backend(fake_backend)``, or :class:`~qsem.circuits.noise.ReadoutError`\ s
  on qsem wires, qubit ``q`` = wire ``n - 1 - q``) draws the outcomes from the recorded
  probabilities ``p · (⊗ M)`` (:mod:`qsem.simulators.readout`); the model's quantum errors
  are not applied here (``NoiseModel.apply`` the circuit for those).

>>> from qiskit import QuantumCircuit
>>> qc = QuantumCircuit(2); _ = qc.x(0); _ = qc.measure_all()
>>> SamplerV2(seed=1).run([qc], shots=5).result()[0].data.meas.get_counts()
{'01': 5}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.circuits.errors import QsemValueError, arg_error
from qsem.circuits.qiskit_export import require_qiskit

from .engine import TorchSimulator
from .kernels import marginal_probs
from .qiskit_primitives import check_seed, check_simulator
from .qiskit_program import Program, as_rows
from .readout import apply_readout, check_readout, readout_errors

require_qiskit()

from qiskit.primitives import BaseSamplerV2, DataBin, PrimitiveResult  # noqa: E402
from qiskit.primitives.containers import BitArray, SamplerPubResult  # noqa: E402
from qiskit.primitives.containers.sampler_pub import SamplerPub  # noqa: E402
from qiskit.primitives.primitive_job import PrimitiveJob  # noqa: E402

__all__ = ["SamplerV2", "final_measurements"]


@dataclass(frozen=True)
class Measurements:
    """Final measurements of a circuit: the measured qubits (ascending) and, per
    classical register, for each of its clbits the position of its qubit in
    ``qubits`` (``-1``: never measured)."""

    qubits: tuple[int, ...]
    registers: tuple[tuple[str, tuple[int, ...]], ...]


def final_measurements(qc: Any) -> tuple[Any, Measurements]:
    """``(circuit without its final measurements, what they measured)``.

    A measurement is final when nothing but barriers acts on its qubit or
    writes its clbit afterwards; any other measurement is refused.
    """
    last: dict[int, int] = {}  # qubit -> index of the last non-barrier instruction on it
    for k, inst in enumerate(qc.data):
        if inst.operation.name not in ("barrier", "delay"):
            for q in inst.qubits:
                last[qc.find_bit(q).index] = k
    clbit_qubit: dict[int, int] = {}
    keep = []
    for k, inst in enumerate(qc.data):
        if inst.operation.name != "measure":
            keep.append(inst)
            continue
        q = qc.find_bit(inst.qubits[0]).index
        c = qc.find_bit(inst.clbits[0]).index
        if last[q] != k:
            raise arg_error(
                "pubs",
                f"instruction {k} measures qubit {q} before other gates act on it; only final "
                "measurements are supported",
            )
        clbit_qubit[c] = q
    qubits = tuple(sorted(set(clbit_qubit.values())))
    pos = {q: j for j, q in enumerate(qubits)}
    registers = []
    for creg in qc.cregs:
        idx = [qc.find_bit(b).index for b in creg]
        registers.append((creg.name, tuple(pos.get(clbit_qubit.get(c, -1), -1) for c in idx)))
    stripped = qc.copy_empty_like()
    for inst in keep:
        stripped.append(inst)
    return stripped, Measurements(qubits, tuple(registers))


def _bit_array(outcomes: np.ndarray, m: int, positions: tuple[int, ...]) -> BitArray:
    """Outcomes (integers over the measured qubits, qubit ``qubits[j]`` at bit ``j``)
    ``shape + (shots,)`` -> the ``BitArray`` of one register."""
    num_bits = len(positions)
    bits = np.zeros((*outcomes.shape, num_bits + (-num_bits % 8)), dtype=np.uint8)
    for i, j in enumerate(positions):  # clbit i in column -1 - i (big-endian bytes)
        if j >= 0:
            bits[..., bits.shape[-1] - 1 - i] = (outcomes >> j) & 1
    return BitArray(np.packbits(bits, axis=-1), num_bits)


class SamplerV2(BaseSamplerV2):
    """Qiskit ``BaseSamplerV2`` on qsem's torch engine (see the module docstring).

    Args:
        default_shots: shots of PUBs and ``run`` calls that give none.
        seed: seed (int) or ``numpy.random.Generator`` (its next integer seeds each
            ``run``) of the sampling; ``None`` draws a fresh seed.
        simulator: the :class:`~qsem.simulators.TorchSimulator` to run on.
        readout: readout confusions (module docstring); ``None``: ideal measurement.

    ``engine_calls`` counts the engine calls made so far.
    """

    def __init__(
        self,
        *,
        default_shots: int = 1024,
        seed: int | np.random.Generator | None = None,
        simulator: TorchSimulator | None = None,
        readout: Any = None,
    ) -> None:
        self._default_shots = _check_shots(default_shots, "default_shots")
        self._seed = check_seed(seed)
        self._simulator = check_simulator(simulator)
        self._readout = check_readout(readout)  # its wires are checked per circuit
        self.engine_calls = 0

    @property
    def default_shots(self) -> int:
        return self._default_shots

    @property
    def seed(self) -> int | np.random.Generator | None:
        return self._seed

    def __repr__(self) -> str:
        return f"qsem SamplerV2(default_shots={self._default_shots}, seed={self._seed!r})"

    def run(
        self, pubs: Iterable[Any], *, shots: int | None = None
    ) -> PrimitiveJob[PrimitiveResult[SamplerPubResult]]:
        """Run PUBs ``(circuit[, parameter_values[, shots]])``."""
        shots = self._default_shots if shots is None else _check_shots(shots, "shots")
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        job = PrimitiveJob(self._run, coerced)
        job._submit()
        return job

    def _generator(self) -> torch.Generator:
        seed = self._seed
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2**63 - 1))
        elif seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        return torch.Generator().manual_seed(seed)

    def _run(self, pubs: list[SamplerPub]) -> PrimitiveResult[SamplerPubResult]:
        gen = self._generator()
        groups: dict[int, list[int]] = {}
        for k, pub in enumerate(pubs):
            groups.setdefault(id(pub.circuit), []).append(k)
        results: list[Any] = [None] * len(pubs)
        for members in groups.values():
            for k, res in zip(members, self._sample([pubs[k] for k in members], gen), strict=True):
                results[k] = res
        return PrimitiveResult(results, metadata={"version": 2})

    def _sample(self, pubs: list[SamplerPub], gen: torch.Generator) -> list[SamplerPubResult]:
        """Samples of PUBs sharing one circuit: ONE engine call for all their rows."""
        circuit, meas = final_measurements(pubs[0].circuit)
        prog = Program.cached(circuit)
        n, m = circuit.num_qubits, len(meas.qubits)
        params = list(pubs[0].circuit.parameters)
        flat = [as_rows(p.parameter_values.as_array(params), len(params)) for p in pubs]
        starts = np.cumsum([0] + [f.shape[0] for f in flat])
        rows = np.concatenate(flat)
        if rows.shape[0] == 0:  # every PUB is empty: simulate one row for the shapes
            rows = np.zeros((1, len(params)))
        state, inverse = prog.run(rows, self._simulator)
        self.engine_calls += 1
        # qsem wire n-1-q is qubit q; marginal over wires listed highest qubit first, so the
        # marginal index has qubit meas.qubits[j] at bit j
        wires = [n - 1 - q for q in reversed(meas.qubits)]
        full = state.tensor.abs() ** 2 if state.mode == "statevector" else None
        if full is None:
            full = torch.diagonal(state.tensor, dim1=-2, dim2=-1).real
        if self._readout is not None:
            full = apply_readout(full, state.dims, readout_errors(self._readout, state.dims))
        probs = marginal_probs(full, state.dims, wires).clamp(min=0) if m else None
        out = []
        for k, pub in enumerate(pubs):
            rows_k = inverse[starts[k] : starts[k + 1]]
            if m and rows_k.size:
                p = probs[torch.from_numpy(rows_k)]  # type: ignore[index]
                p = p / p.sum(-1, keepdim=True)
                draws = torch.multinomial(p, pub.shots, replacement=True, generator=gen)
                outcomes = draws.numpy().reshape(*pub.shape, pub.shots)
            else:
                outcomes = np.zeros((*pub.shape, pub.shots), dtype=np.int64)
            data = {name: _bit_array(outcomes, m, pos) for name, pos in meas.registers}
            out.append(
                SamplerPubResult(
                    DataBin(**data, shape=pub.shape),
                    metadata={"shots": pub.shots, "circuit_metadata": pub.circuit.metadata},
                )
            )
        return out


def _check_shots(shots: Any, where: str) -> int:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)):
        raise arg_error(where, f"must be a positive integer, got {shots!r}", QsemValueError)
    if shots < 1:
        raise arg_error(where, f"must be a positive integer, got {shots!r}")
    return int(shots)
