r"""Readout error: confusion matrices applied to Born probabilities.

A readout error on wires ``w`` is a stochastic matrix ``M[i, j] = P(record j | state i)``
(:class:`~qsem.circuits.noise.ReadoutError`). The recorded distribution of a register
whose confusions act on disjoint wire groups is

.. math:: p'(j) = \sum_i p(i) \prod_g M_g[i_g, j_g],

one contraction per group over the full probability tensor (``(B, d_0, ..., d_{n-1})``),
then the marginal on the measured wires. Linear in ``p``, so autograd passes through it.

Every place that records through a confusion uses this module: the state measurements
(:func:`qsem.simulators.probs`, ``sample``, ``expval``), the backends' ``probs``,
``expval`` and ``counts`` (``readout=``), :class:`~qsem.simulators.QuantumLayer` and the
Qiskit primitives. Shot counts are confused shot by shot (:func:`confuse_counts`), Pauli
expectation values measured in rotated bases through per-qubit factors
(:func:`pauli_readout_matrix`).

>>> import torch
>>> from qsem.circuits.noise import ReadoutError
>>> p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
>>> apply_readout(p, (2,), [ReadoutError([[0.9, 0.1], [0.2, 0.8]], wires=0)])
tensor([[0.9000, 0.1000]], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.noise import NoiseModel, ReadoutError

__all__ = [
    "apply_readout",
    "check_readout",
    "confuse_counts",
    "diagonal_expvals",
    "marginal_readout",
    "pauli_readout_matrix",
    "readout_errors",
]


def check_readout(readout: Any) -> Any:
    """``readout`` if it is ``None``, a :class:`NoiseModel`, a :class:`ReadoutError` or a
    list of them; anything else is refused naming the argument."""
    ok = (
        readout is None
        or isinstance(readout, (NoiseModel, ReadoutError))
        or (
            isinstance(readout, (list, tuple)) and all(isinstance(r, ReadoutError) for r in readout)
        )
    )
    if not ok:
        raise arg_error(
            "readout",
            "expected a NoiseModel, a ReadoutError or a list of them, got "
            f"{type(readout).__name__}",
            QsemTypeError,
        )
    return readout


def readout_errors(readout: Any, dims: Sequence[int]) -> list[ReadoutError]:
    """``readout`` (``None``, a :class:`NoiseModel`, a :class:`ReadoutError` or a list of
    them) as readout errors on disjoint wires of a register of ``dims``."""
    readout = check_readout(readout)
    if readout is None:
        return []
    if isinstance(readout, NoiseModel):
        errs = readout.readout_errors(dims)
    elif isinstance(readout, ReadoutError):
        errs = [readout]
    else:
        errs = list(readout)
    seen: set[int] = set()
    for e in errs:
        bad = [w for w in e.wires if w >= len(dims)]
        if bad:
            raise arg_error("readout", f"{e!r} uses wire(s) {bad} of a {len(dims)}-wire register")
        if seen & set(e.wires):
            raise arg_error(
                "readout", f"readout errors overlap on wire(s) {sorted(seen & set(e.wires))}"
            )
        seen |= set(e.wires)
        e.check_dims([dims[w] for w in e.wires])
    return errs


def _group_last(n: int, wires: Sequence[int]) -> list[int]:
    """Axis order of a ``(batch, *dims)`` array of ``n`` wires that keeps the batch first
    and moves ``wires`` (in their order) last, where one confusion matrix acts."""
    rest = [a for a in range(n) if a not in wires]
    return [0] + [1 + a for a in rest] + [1 + a for a in wires]


def apply_readout(
    p: torch.Tensor, dims: Sequence[int], errors: Sequence[ReadoutError]
) -> torch.Tensor:
    """Recorded probabilities ``(B, D)`` from exact ones ``(B, D)`` on the full register."""
    if not errors:
        return p
    n = len(dims)
    x = p.reshape(p.shape[0], *dims)
    for e in errors:
        order = _group_last(n, e.wires)
        y = x.permute(order)
        shape = y.shape
        m = e.matrix.to(dtype=p.dtype, device=p.device)
        y = (y.reshape(-1, m.shape[0]) @ m).reshape(shape)
        x = y.permute(torch.argsort(torch.tensor(order)).tolist())
    return x.reshape(p.shape[0], -1)


def marginal_readout(errors: Sequence[ReadoutError], wires: Sequence[int]) -> list[ReadoutError]:
    """The readout errors of the measured ``wires``, renumbered to their positions there.

    A confusion spanning measured and unmeasured wires is refused (its marginal is not
    a confusion of the measured wires alone).
    """
    pos = {w: i for i, w in enumerate(wires)}
    out = []
    for e in errors:
        inside = [w in pos for w in e.wires]
        if all(inside):
            out.append(e.on([pos[w] for w in e.wires]))
        elif any(inside):
            raise arg_error(
                "readout", f"{e!r} spans measured wires {list(wires)} and unmeasured ones"
            )
    return out


def confuse_counts(
    counts: np.ndarray,
    dims: Sequence[int],
    errors: Sequence[ReadoutError],
    rng: np.random.Generator,
) -> np.ndarray:
    """Recorded counts ``(N, D)`` from counts of the true outcomes ``(N, D)`` (integers).

    Each shot with true outcome ``i`` on a group's wires is recorded as ``j`` with
    probability ``M[i, j]``, independently per shot and per group: per group, the
    ``c`` shots of each true value are split by one multinomial draw ``Mult(c, M[i])``.
    In distribution this is sampling ``shots`` outcomes of ``p · (⊗ M)``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if not errors:
        return counts
    n = len(dims)
    x = counts.reshape(counts.shape[0], *dims)
    for e in errors:
        order = _group_last(n, e.wires)
        y = x.transpose(order)
        shape = y.shape
        m = e.matrix.numpy()
        flat = y.reshape(-1, m.shape[0])  # (rows, true value)
        drawn = rng.multinomial(flat, m)  # (rows, true value, recorded value)
        y = drawn.sum(1).reshape(shape)
        x = y.transpose(np.argsort(order))
    return x.reshape(counts.shape[0], -1)


def diagonal_expvals(
    p: torch.Tensor, dims: Sequence[int], diagonals: Sequence[tuple[torch.Tensor, Sequence[int]]]
) -> torch.Tensor:
    """``(N, K)``: ``sum_i p(i) d_k(i)`` for diagonal observables ``(d_k, positions)`` whose
    local diagonals act on the given positions of a register of ``dims`` with
    (recorded) probabilities ``p`` ``(N, prod dims)``."""
    cols = []
    for diag, pos in diagonals:
        local = diag.to(torch.float64).reshape([dims[a] for a in pos])
        order = np.argsort(list(pos))
        local = local.permute(*order.tolist())
        shape = [dims[a] if a in pos else 1 for a in range(len(dims))]
        cols.append(local.reshape(shape).expand(*dims).reshape(-1))
    return p.to(torch.float64) @ torch.stack(cols, -1).to(p.device)


def pauli_readout_matrix(
    labels: Sequence[str], errors: Sequence[ReadoutError]
) -> tuple[list[str], np.ndarray]:
    r"""Recorded Pauli expectation values as a linear map of exact ones.

    A Pauli string is measured by rotating each qubit of its support into the ``Z``
    basis; the recorded parity of qubit ``q`` with confusion ``M_q`` has
    ``E[(-1)^{j} | i] = a_q + c_q (-1)^i`` with ``a_q = M_q[1,0] - M_q[0,1]`` and
    ``c_q = 1 - M_q[0,1] - M_q[1,0]``, so

    .. math:: \langle P \rangle_{rec} = \sum_{S \subseteq supp P}
        \prod_{q \in S} c_q \prod_{q \in supp P \setminus S} a_q \langle P_S \rangle,

    ``P_S`` the string with the qubits outside ``S`` set to ``I``. ``labels`` are Qiskit
    labels (rightmost character on qubit 0, qsem wire ``n - 1 - q``); ``errors`` act on
    single qubit wires (a correlated confusion is refused). Returns the labels the
    recorded values need and ``T`` ``(len(labels), len(needed))``: recorded = ``T @ exact``.

    >>> from qsem.circuits.noise import ReadoutError
    >>> pauli_readout_matrix(["Z"], [ReadoutError([[0.9, 0.1], [0.3, 0.7]], wires=0)])
    (['Z', 'I'], array([[0.6, 0.2]]))
    """
    factors: dict[int, tuple[float, float]] = {}
    for e in errors:
        if len(e.wires) != 1 or e.matrix.shape != (2, 2):
            raise arg_error(
                "readout",
                f"Pauli expectation values take one 2x2 confusion per qubit; got {e!r}",
            )
        m = e.matrix.numpy()
        factors[e.wires[0]] = (float(m[1, 0] - m[0, 1]), float(1 - m[0, 1] - m[1, 0]))
    needed: dict[str, int] = {}
    rows: list[dict[int, float]] = []
    for label in labels:
        n = len(label)
        terms: dict[str, float] = {label: 1.0}
        for pos, ch in enumerate(label):
            wire = pos  # character ``pos`` acts on qubit n - 1 - pos, i.e. qsem wire pos
            if ch == "I" or wire not in factors:
                continue
            a, c = factors[wire]
            nxt: dict[str, float] = {}
            for t, coeff in terms.items():
                nxt[t] = nxt.get(t, 0.0) + c * coeff
                if a != 0.0:
                    off = t[:pos] + "I" + t[pos + 1 :]
                    nxt[off] = nxt.get(off, 0.0) + a * coeff
            terms = nxt
        assert all(len(t) == n for t in terms)
        rows.append({needed.setdefault(t, len(needed)): v for t, v in terms.items()})
    out = np.zeros((len(labels), len(needed)))
    for k, row in enumerate(rows):
        for j, v in row.items():
            out[k, j] = v
    return list(needed), out
