"""PennyLane measurements on a qsem :class:`~qsem.simulators.state.State`.

Used by the ``qsem`` PennyLane device (:mod:`qsem.simulators.pennylane_device`).
Observables become qsem observables term by term (:func:`observable_terms`): Pauli
words -> :class:`~qsem.circuits.PauliString`, everything else (``Hermitian``,
``GellMann``, ``THermitian``, ``Hadamard``, products on several wires, on qubits,
qutrits or both) -> :class:`~qsem.circuits.Hermitian` of its matrix on its wires;
sums and scalar products keep their (possibly trainable) coefficients. Then

* exact: ``expval = Σ_k c_k <O_k>``; ``var = <M²> - <M>²`` with ``M`` the observable's
  matrix on its wires; ``probs``, ``state``, ``density_matrix``, ``purity``,
  ``vn_entropy`` from qsem's measurement functions (differentiable by autograd);
* shots: an observable ``M = Σ_j λ_j |v_j><v_j|`` is sampled in its eigenbasis:
  ``p_j = <v_j|ρ|v_j>`` from the reduced state, eigen-indices drawn from the device's
  seeded generator; ``expval``/``var`` are the sample mean / variance of ``λ``,
  ``probs`` the histogram of basis samples, ``counts`` keys are level strings
  (``"021"``) or eigenvalues, as on PennyLane's devices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from qsem.circuits.errors import arg_error
from qsem.circuits.observables import Hermitian, Observable, PauliString
from qsem.simulators import measure as M
from qsem.simulators.state import State

__all__ = ["expvals", "measure_all_exact", "measure_exact", "measure_shots", "observable_terms"]

_PAULI = {"PauliX": "X", "PauliY": "Y", "PauliZ": "Z", "Identity": "I"}
Term = tuple[Any, Observable | None]  # (coefficient, observable on its wires; None: identity)


def _dense(obs: Any, index: dict[Any, int], dims: tuple[int, ...]) -> np.ndarray:
    """The matrix of a leaf observable on its own wires (complex128 NumPy)."""
    import pennylane as qml

    mat = qml.matrix(obs, wire_order=list(obs.wires))
    return np.asarray(qml.math.unwrap(mat) if not isinstance(mat, torch.Tensor) else mat.detach())


def observable_terms(obs: Any, index: dict[Any, int], dims: tuple[int, ...]) -> list[Term]:
    """``obs`` as ``[(c_k, O_k)]`` with ``obs = Σ_k c_k O_k`` (``O_k`` on qsem wires)."""
    name = obs.name
    if name in ("Sum", "LinearCombination"):
        if name == "LinearCombination":
            coeffs, ops = obs.terms()
            return [
                (c * cc, o)
                for c, op in zip(coeffs, ops, strict=True)
                for cc, o in observable_terms(op, index, dims)
            ]
        return [t for op in obs.operands for t in observable_terms(op, index, dims)]
    if name == "SProd":
        return [(obs.scalar * c, o) for c, o in observable_terms(obs.base, index, dims)]
    wires = [index[w] for w in obs.wires]
    if name == "Identity":
        return [(1.0, None)]
    if name in _PAULI:
        return [(1.0, PauliString(_PAULI[name], wires=wires))]
    if name == "Prod":
        factors = [observable_terms(f, index, dims) for f in obs.operands]
        if all(len(f) == 1 and isinstance(f[0][1], PauliString) for f in factors):
            ws = [w for f in factors for w in f[0][1].wires]  # type: ignore[union-attr]
            if len(set(ws)) == len(ws):
                coeff: Any = 1.0
                for f in factors:
                    coeff = coeff * f[0][0]
                word = "".join(f[0][1].paulis for f in factors)  # type: ignore[union-attr]
                return [(coeff, PauliString(word, wires=ws))]
        return [(1.0, Hermitian(_prod_matrix(obs, index, dims), wires=wires))]
    return [(1.0, Hermitian(_dense(obs, index, dims), wires=wires))]


def _prod_matrix(obs: Any, index: dict[Any, int], dims: tuple[int, ...]) -> np.ndarray:
    """Matrix of a product of observables on any wire dimensions (wire order of ``obs``)."""
    wires = list(obs.wires)
    if all(dims[index[w]] == 2 for w in wires):
        return _dense(obs, index, dims)
    out = np.eye(math.prod(dims[index[w]] for w in wires), dtype=np.complex128)
    for f in obs.operands:
        out = _embed(observable_matrix(f, index, dims), [index[w] for w in f.wires],
                     [index[w] for w in wires], dims) @ out  # fmt: skip
    return out


def _embed(mat: np.ndarray, sub: list[int], full: list[int], dims: tuple[int, ...]) -> np.ndarray:
    """``mat`` on wires ``sub`` as a matrix on wires ``full`` (identity elsewhere)."""
    rest = [w for w in full if w not in sub]
    big = np.kron(mat, np.eye(math.prod(dims[w] for w in rest), dtype=np.complex128))
    order = sub + rest
    shape = [dims[w] for w in order]
    t = big.reshape(shape + shape)
    perm = [order.index(w) for w in full]
    t = t.transpose(perm + [len(full) + p for p in perm])
    n = math.prod(shape)
    return t.reshape(n, n)


def observable_matrix(obs: Any, index: dict[Any, int], dims: tuple[int, ...]) -> np.ndarray:
    """The matrix of ``obs`` on its wires (in ``obs.wires`` order), any wire dimensions."""
    full = [index[w] for w in obs.wires]
    n = math.prod(dims[w] for w in full)
    out = np.zeros((n, n), dtype=np.complex128)
    for c, o in observable_terms(obs, index, dims):
        cv = complex(c.detach() if isinstance(c, torch.Tensor) else np.asarray(c))
        if o is None:
            out += cv * np.eye(n)
        else:
            local = o.local_matrix(tuple(dims[w] for w in o.wires))
            out += cv * _embed(local, list(o.wires), full, dims)
    return out


def expvals(state: State, observables: list[Any], index: dict[Any, int]) -> list[torch.Tensor]:
    """``<O>`` of several PennyLane observables with ONE qsem ``expval`` call over all
    their terms (diagonal terms are read from the probabilities together)."""
    per_obs = [observable_terms(obs, index, state.dims) for obs in observables]
    listed = [o for terms in per_obs for _, o in terms if o is not None]
    vals = M.expval(as_batched(state), listed) if listed else None
    real = torch.float64 if _cdtype(state) == torch.complex128 else torch.float32
    ones = torch.ones(state.batch_size, dtype=real)
    out = []
    j = 0
    for terms in per_obs:
        total: Any = 0.0
        for c, o in terms:
            if o is None:
                total = total + c * ones
            else:
                total = total + c * vals[:, j]  # type: ignore[index]
                j += 1
        out.append(state.unbatch(torch.as_tensor(total)))
    return out


def _cdtype(state: State) -> torch.dtype:
    src = state.factor if state.factor is not None else state.tensor
    return src.dtype


def as_batched(state: State) -> State:
    """``state`` with its batch axis kept by measurements."""
    return State(state._tensor, state.dims, state.mode, True, factor=state.factor,
                 weights=state.weights)  # fmt: skip


def _var(state: State, obs: Any, index: dict[Any, int]) -> torch.Tensor:
    mat = observable_matrix(obs, index, state.dims)
    wires = [index[w] for w in obs.wires]
    both = M.expval(
        as_batched(state), [Hermitian(mat, wires=wires), Hermitian(mat @ mat, wires=wires)]
    )
    return state.unbatch(both[:, 1] - both[:, 0] ** 2)


def measure_all_exact(
    mps: list[Any], state: State, index: dict[Any, int], phase: Any = None, readout: Any = None
) -> list[Any]:
    """Every measurement of a tape, analytic; the expectation values in one engine read.
    ``readout``: the device's :class:`~qsem.simulators.pennylane_readout.Readout` (or
    ``None``), which measures the measurements it affects."""
    if readout is not None:
        return [
            readout.exact(mp, state, index) if readout.applies(mp)
            else measure_exact(mp, state, index, phase)
            for mp in mps
        ]  # fmt: skip
    ev_at = [k for k, mp in enumerate(mps) if type(mp).__name__ == "ExpectationMP"]
    evs = dict(zip(ev_at, expvals(state, [mps[k].obs for k in ev_at], index), strict=True))
    return [
        evs[k] if k in evs else measure_exact(mp, state, index, phase) for k, mp in enumerate(mps)
    ]


def measure_exact(mp: Any, state: State, index: dict[Any, int], phase: Any = None) -> Any:
    """The analytic value of one PennyLane measurement process (torch, autograd kept)."""
    kind = type(mp).__name__
    wires = [index[w] for w in mp.wires] if mp.wires else list(range(len(state.dims)))
    if kind == "ExpectationMP":
        return expvals(state, [mp.obs], index)[0]
    if kind == "VarianceMP":
        return _var(state, mp.obs, index)
    if kind == "ProbabilityMP":
        if mp.obs is not None:
            raise arg_error("tape", f"qsem cannot measure probs of the observable {mp.obs.name}")
        return M.probs(state, wires)
    if kind == "StateMP" and mp.wires and len(mp.wires) != len(state.dims):
        return M.reduced_density_matrix(state, wires)  # qml.density_matrix(wires)
    if kind == "StateMP":
        if state.mode == "density_matrix":
            return state.density_matrix
        vec = state.vector
        return vec if phase is None else vec * phase
    if kind == "DensityMatrixMP":
        return M.reduced_density_matrix(state, wires)
    if kind == "PurityMP":
        return M.purity(state, wires)
    if kind == "VnEntropyMP":
        base = mp.log_base
        return M.entropy(state, wires, base=math.e if base is None else base)
    raise arg_error("tape", f"qsem cannot compute the measurement {kind} without shots")


# ---------------------------------------------------------------------------------------------
# Finite shots
# ---------------------------------------------------------------------------------------------
def _eigen_samples(
    state: State, obs: Any, index: dict[Any, int], shots: int, gen: torch.Generator
) -> torch.Tensor:
    """``(B, shots)`` eigenvalues of ``obs`` drawn with Born probabilities in its eigenbasis."""
    mat = observable_matrix(obs, index, state.dims)
    wires = [index[w] for w in obs.wires]
    evals, vecs = np.linalg.eigh(mat)
    rho = M.reduced_density_matrix(as_batched(state), wires).detach().to(torch.complex128)
    v = torch.from_numpy(vecs)
    p = torch.einsum("ij,bik,kj->bj", v.conj(), rho, v).real.clamp(min=0)
    idx = torch.multinomial(p / p.sum(-1, keepdim=True), shots, replacement=True, generator=gen)
    return torch.from_numpy(evals)[idx]


def _basis_samples(
    state: State, wires: list[int], shots: int, gen: torch.Generator
) -> torch.Tensor:
    return M.sample(as_batched(state), shots, wires, generator=gen)  # (B, shots, k)


def _counts(values: np.ndarray, keys: list[Any] | None) -> dict[Any, int]:
    uniq, n = np.unique(values, return_counts=True)
    out = {k: 0 for k in keys} if keys is not None else {}
    out.update(
        {u.item() if hasattr(u, "item") else u: int(c) for u, c in zip(uniq, n, strict=True)}
    )
    return out


def measure_shots(
    mp: Any,
    state: State,
    index: dict[Any, int],
    shots: int,
    gen: torch.Generator,
    readout: Any = None,
) -> Any:
    """One PennyLane measurement process estimated from ``shots`` seeded samples (NumPy);
    ``readout`` (a :class:`~qsem.simulators.pennylane_readout.Readout`) samples the
    recorded outcomes."""
    kind = type(mp).__name__
    dims = state.dims
    wires = [index[w] for w in mp.wires] if mp.wires else list(range(len(dims)))
    if mp.obs is not None and kind in ("ExpectationMP", "VarianceMP", "SampleMP", "CountsMP"):
        draw = readout.eigen_samples if readout is not None else _eigen_samples
        ev = draw(state, mp.obs, index, shots, gen).numpy()  # (B, shots)
        if kind == "ExpectationMP":
            res: Any = ev.mean(-1)
        elif kind == "VarianceMP":
            res = ev.var(-1)
        elif kind == "SampleMP":
            res = ev
        else:
            res = [_counts(row, None) for row in ev]
        return res if state.batched else res[0]
    if kind in ("SampleMP", "CountsMP", "ProbabilityMP"):
        basis = readout.basis_samples if readout is not None else _basis_samples
        levels = basis(state, wires, shots, gen).numpy()  # (B, shots, k)
        if kind == "SampleMP":
            res = levels
        elif kind == "ProbabilityMP":
            sub = [dims[w] for w in wires]
            flat = np.ravel_multi_index(tuple(np.moveaxis(levels, -1, 0)), sub)
            res = np.stack([np.bincount(r, minlength=math.prod(sub)) / shots for r in flat])
        else:
            keys = None
            if mp.all_outcomes:
                grids = np.indices([dims[w] for w in wires]).reshape(len(wires), -1).T
                keys = ["".join(map(str, g)) for g in grids]
            res = [_counts(np.array(["".join(map(str, s)) for s in row]), keys) for row in levels]
        return res if state.batched else res[0]
    raise arg_error("tape", f"qsem cannot estimate the measurement {kind} from shots")


def result_row(result: Any, g: int) -> Any:
    """Row ``g`` of a broadcast result (a NumPy scalar for 0-d rows)."""
    return to_numpy(np.asarray(result)[g])


def uses_torch(tape: Any) -> bool:
    """True when any of the tape's parameters is a torch tensor (results stay torch)."""
    return any(isinstance(p, torch.Tensor) for p in tape.get_parameters(trainable_only=False))


def to_numpy(r: Any) -> Any:
    """NumPy results as PennyLane's devices give them (a NumPy scalar for 0-d values)."""
    out = r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else r
    return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out
