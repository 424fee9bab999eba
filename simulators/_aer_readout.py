"""Aer's results read back in qsem's terms (the read-out half of :mod:`qsem.simulators.aer`).

Shot results arrive as hexadecimal ``counts`` over the measured *qubits*; a wire of
dimension ``d`` occupies ``layout.bits[w]`` of them (:class:`QubitLayout`), most
significant first in the order measured. Outcomes at a level ``>= d`` are leakage:
they count in no probability and contribute 0 to every estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qsem.circuits.circuit import Circuit
from qsem.circuits.observables import Observable
from qsem.circuits.qiskit_export import QubitLayout


def measure(qc: Any, layout: QubitLayout, wires: Sequence[int]) -> Any:
    """Append a classical register ``"m"`` measuring the qubits of ``wires`` to ``qc``."""
    from qiskit import ClassicalRegister

    qargs = layout.qargs(wires)
    creg = ClassicalRegister(len(qargs), "m")
    qc.add_register(creg)
    qc.measure(qargs, creg)
    return qc


def count_vector(data: dict[str, Any], m: int) -> np.ndarray:
    """The ``counts`` of one Aer result as a float vector over the ``2**m`` outcomes."""
    counts = np.zeros(1 << m, dtype=np.float64)
    for key, c in data["counts"].items():
        counts[int(key, 16)] += c
    return counts


def obs_key(o: Observable, circuit: Circuit) -> tuple[Any, ...]:
    """A hashable key of an observable (wires and local matrix) for the transpile cache."""
    local = np.ascontiguousarray(o.local_matrix(circuit.wire_dims(o.wires)))
    return (o.wires, local.shape, local.tobytes())


def _levels(keys: np.ndarray, layout: QubitLayout, measured: Sequence[int]) -> dict[int, Any]:
    """The level of each measured wire in each outcome ``keys`` (bits of ``measured``, in order)."""
    shift = sum(layout.bits[w] for w in measured)
    level = {}
    for w in measured:
        shift -= layout.bits[w]
        level[w] = (keys >> shift) & ((1 << layout.bits[w]) - 1)
    return level


def estimate(
    counts: np.ndarray,
    layout: QubitLayout,
    measured: list[int],
    wires: list[int],
    diag: np.ndarray,
) -> float:
    """``Σ_outcomes count · diag[levels of wires]`` (0 where a wire of ``wires`` leaked)."""
    keys = np.nonzero(counts)[0]
    level = _levels(keys, layout, measured)
    ok = np.ones(len(keys), dtype=bool)
    local = np.zeros(len(keys), dtype=np.int64)
    for w in wires:
        ok &= level[w] < layout.dims[w]
        local = local * layout.dims[w] + np.minimum(level[w], layout.dims[w] - 1)
    return float((counts[keys] * np.where(ok, diag[local], 0.0)).sum())


class ShotPlan:
    """How shot expectation values are read: diagonal observables share one measured
    circuit (on ``diag_wires``); each other one is rotated into its eigenbasis
    (``rotated``: index, eigenvalues, eigenvectors) and measured on its own."""

    def __init__(self, circuit: Circuit, obs: Sequence[Observable]) -> None:
        self.obs = list(obs)
        self.diag_items: list[tuple[int, np.ndarray]] = []
        self.rotated: list[tuple[int, np.ndarray, np.ndarray]] = []
        for k, o in enumerate(self.obs):
            dims = circuit.wire_dims(o.wires)
            d = o.diagonal(dims)
            if d is not None:
                self.diag_items.append((k, d.numpy()))
            else:
                lam, vec = np.linalg.eigh(o.local_matrix(dims))
                self.rotated.append((k, lam, vec))
        self.diag_wires = sorted({w for k, _ in self.diag_items for w in self.obs[k].wires})

    def circuits(self, qc: Any, lib: Any, layout: QubitLayout) -> list[Any]:
        """The measured copies of the converted circuit ``qc`` (``lib``: Qiskit's gate library)."""
        out = []
        if self.diag_items:
            out.append(measure(qc.copy(), layout, self.diag_wires))
        for k, _, vec in self.rotated:
            c = qc.copy()
            wires = list(self.obs[k].wires)
            emb = layout.embed(vec.conj().T, wires, 1.0)
            c.append(lib.UnitaryGate(emb, check_input=False), layout.qargs(wires))
            out.append(measure(c, layout, wires))
        return out

    def sums(self, data: list[list[Any]], layout: QubitLayout, n: int) -> np.ndarray:
        """``(n, K)`` sums of eigenvalue × count over the shots (divide by shots for means)."""
        res = np.zeros((n, len(self.obs)))
        c = 0
        if self.diag_items:
            m = sum(layout.bits[w] for w in self.diag_wires)
            for r in range(n):
                counts = count_vector(data[0][r], m)
                for k, diag in self.diag_items:
                    wires = list(self.obs[k].wires)
                    res[r, k] = estimate(counts, layout, self.diag_wires, wires, diag)
            c = 1
        for k, lam, _ in self.rotated:
            wires = list(self.obs[k].wires)
            m = sum(layout.bits[w] for w in wires)
            idx = layout.valid_indices(wires)
            for r in range(n):
                res[r, k] = float(count_vector(data[c][r], m)[idx] @ lam)
            c += 1
        return res


def leakage_rows(
    data: list[Any], circuit: Circuit, layout: QubitLayout, leaky: list[int], shots: int | None
) -> np.ndarray:
    """``(N, L)`` leaked population of each wire of ``leaky``: from the saved probabilities
    ``l{w}`` (exact) or the fraction of shots at a level ``>= dims[w]``."""
    out = np.zeros((len(data), len(leaky)))
    for r, d in enumerate(data):
        if shots is None:
            for i, w in enumerate(leaky):
                out[r, i] = float(np.sum(np.asarray(d[f"l{w}"])[circuit.dims[w] :]))
        else:
            m = sum(layout.bits[w] for w in leaky)
            counts = count_vector(d, m)
            level = _levels(np.arange(1 << m), layout, leaky)
            for i, w in enumerate(leaky):
                out[r, i] = counts[level[w] >= circuit.dims[w]].sum() / shots
    return out
