r"""Qiskit circuits on qsem's torch engine: the part the Qiskit primitives share.

A :class:`Program` is a Qiskit ``QuantumCircuit`` imported once
(:func:`qsem.circuits.qiskit_import.import_qiskit`) with a plan for binding
Qiskit parameter values: the array ``(R, P)`` of ``R`` rows over the circuit's
``P`` parameters (in ``qc.parameters`` order, Qiskit's ``BindingsArray.as_array``
layout) becomes the engine's bindings — one column per scalar ``Parameter``, a
``(R, K)`` block per ``ParameterVector``, and one evaluated column per gate
parameter that is an expression of several parameters (``zz_feature_map``'s
``2(π - x₀)(π - x₁)``). :meth:`Program.run` simulates every distinct row in ONE
batched engine call.

Wire order: Qiskit qubit ``q`` of an ``n``-qubit circuit is qsem wire ``n - 1 - q``,
so qsem's flat basis index *is* Qiskit's little-endian integer (bit ``q`` of the
index is qubit ``q``).

:func:`pauli_expvals` evaluates Qiskit Pauli labels (``"XIZ"``: the rightmost
character acts on qubit 0) on a batch of states:

.. math::

    \langle P\rangle = \sum_k c(k)\, \overline{\psi_{k \oplus x}}\, \psi_k,
    \qquad c(k) = i^{n_Y} (-1)^{|k \wedge z|}

with ``x`` the mask of the qubits carrying ``X``/``Y``, ``z`` that of ``Z``/``Y``
(for a density matrix ``Σ_k c(k) ρ_{k, k ⊕ x}``).

>>> from qiskit import QuantumCircuit
>>> qc = QuantumCircuit(1); _ = qc.h(0)
>>> prog = Program.of(qc)
>>> state, _ = prog.run(np.zeros((1, 0)))
>>> pauli_expvals(state, ["X", "Z"]).round(12)
array([[1.],
       [0.]])
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemValueError, arg_error
from qsem.circuits.qiskit_import import import_qiskit

from .engine import TorchSimulator
from .state import State

__all__ = ["Program", "as_rows", "expand_label", "pauli_expvals"]

#: Gates the import falls back to (``transpile(..., basis_gates=...)``) when a
#: parametrised gate has no qsem counterpart (``rzz``, ``rxx``, ``cu`` ...).
FALLBACK_BASIS = ["rx", "ry", "rz", "p", "u", "h", "x", "y", "z", "s", "sdg", "t", "tdg", "cx"]


def _evaluator(expr: Any, columns: dict[str, int]) -> Callable[[np.ndarray], np.ndarray]:
    """``f(rows (R, P)) -> (R,)``: a Qiskit ``ParameterExpression`` evaluated per row."""
    return _lambdify(expr.sympify(), columns)


def _partials(expr: Any, columns: dict[str, int]) -> list[tuple[int, Callable]]:
    """``[(column j, f)]`` with ``f(rows) = ∂expr/∂(value of column j)`` per row (sympy)."""
    import sympy

    sym = expr.sympify()
    out = []
    for s in sorted(sym.free_symbols, key=lambda s: str(s)):
        out.append((columns[str(s)], _lambdify(sympy.diff(sym, s), columns)))
    return out


def _lambdify(sym: Any, columns: dict[str, int]) -> Callable[[np.ndarray], np.ndarray]:
    import sympy

    symbols = sorted(sym.free_symbols, key=lambda s: str(s))
    cols = [columns[str(s)] for s in symbols]
    fn = sympy.lambdify(symbols, sym, modules="numpy", dummify=True)

    def evaluate(rows: np.ndarray) -> np.ndarray:
        value = np.asarray(fn(*(rows[:, c] for c in cols)))
        if np.iscomplexobj(value):
            value = value.real
        return np.broadcast_to(value.astype(np.float64), (rows.shape[0],))

    return evaluate


@dataclass
class Program:
    """A Qiskit circuit (without measurements) imported for the engine; see the module."""

    circuit: Circuit
    num_parameters: int
    #: qsem scalar parameter name -> column of the value array
    scalars: dict[str, int] = field(default_factory=dict)
    #: qsem vector name -> (length, [(element index, column), ...])
    vectors: dict[str, tuple[int, list[tuple[int, int]]]] = field(default_factory=dict)
    #: derived parameter name -> its value per row
    derived: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    #: derived parameter name -> its Qiskit expression, and the value columns by name
    expressions: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)
    #: derived parameter name -> [(column, its partial derivative per row)] (built by chain)
    partials: dict[str, list[tuple[int, Callable]]] = field(default_factory=dict)

    @classmethod
    def of(cls, qc: Any) -> Program:
        """Import ``qc``; a parametrised gate without qsem counterpart is first
        transpiled to :data:`FALLBACK_BASIS` (exact: gates are only decomposed)."""
        try:
            circuit, derived = import_qiskit(qc, expressions=True, qudits=False)
        except QsemValueError as exc:
            if "no qsem counterpart" not in str(exc):
                raise
            from qiskit import transpile

            flat = transpile(qc, basis_gates=FALLBACK_BASIS, optimization_level=0)
            circuit, derived = import_qiskit(flat, expressions=True, qudits=False)
        params = list(qc.parameters)
        columns = {p.name: j for j, p in enumerate(params)}
        prog = cls(circuit, len(params), columns=columns)
        used = set(circuit.parameters)
        for j, p in enumerate(params):
            vec = getattr(p, "vector", None)
            if vec is not None and vec.name in used:
                _, elems = prog.vectors.setdefault(vec.name, (len(vec), []))
                elems.append((int(p.index), j))
            elif vec is None and p.name in used:
                prog.scalars[p.name] = j
        for name, expr in derived.items():
            if name in used:  # a gate that fell back to a decomposition left some unused
                prog.derived[name] = _evaluator(expr, columns)
                prog.expressions[name] = expr
        return prog

    @classmethod
    def cached(cls, qc: Any) -> Program:
        """:meth:`of`, memoised on the circuit's content: its qubits and clbits (in order),
        global phase and every instruction (name, qubits, clbits, parameters), so a circuit run
        again (each training step of a QNN) is imported once, and a circuit changed in
        place is imported afresh. Only circuits of Qiskit's standard gates (and
        measurements, barriers) are memoised: a custom gate's name does not fix its
        definition. The last :data:`CACHE_SIZE` programs are kept."""
        key = _content_key(qc)
        if key is None:
            return cls.of(qc)
        with _CACHE_LOCK:  # primitive jobs run in worker threads
            prog = _CACHE.pop(key, None)
        if prog is None:
            prog = cls.of(qc)
        with _CACHE_LOCK:
            _CACHE[key] = prog  # most recent last
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
        return prog

    def bindings(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Engine bindings for the value rows ``(R, P)`` (float64)."""
        out: dict[str, torch.Tensor] = {}
        for name, j in self.scalars.items():
            out[name] = torch.from_numpy(np.ascontiguousarray(rows[:, j]))
        for name, (length, elems) in self.vectors.items():
            block = np.zeros((rows.shape[0], length))
            for i, j in elems:
                block[:, i] = rows[:, j]
            out[name] = torch.from_numpy(block)
        for name, fn in self.derived.items():
            out[name] = torch.from_numpy(np.array(fn(rows), dtype=np.float64))
        return out

    def chain(self, grads: dict[str, torch.Tensor], rows: np.ndarray) -> np.ndarray:
        """``(R, P)``: the gradient over the value columns from ``grads`` over the engine
        bindings of :meth:`bindings` (same names and shapes): scalars and vector
        elements copy, a derived parameter ``e(θ)`` adds ``g_e ∂e/∂θ_j`` (chain rule)."""
        out = np.zeros((rows.shape[0], self.num_parameters))
        for name, j in self.scalars.items():
            out[:, j] += grads[name].numpy()
        for name, (_, elems) in self.vectors.items():
            block = grads[name].numpy()
            for i, j in elems:
                out[:, j] += block[:, i]
        for name, expr in self.expressions.items():
            if name not in self.partials:  # sympy derivatives: only when a gradient is asked
                self.partials[name] = _partials(expr, self.columns)
            g = grads[name].numpy()
            for j, fn in self.partials[name]:
                out[:, j] += g * fn(rows)
        return out

    def run(
        self, rows: np.ndarray, simulator: TorchSimulator | None = None
    ) -> tuple[State, np.ndarray]:
        """``(state, inverse)``: the distinct rows of ``rows`` simulated in ONE engine call
        (a batched :class:`State` of ``U`` rows) and, for each input row, its row in it."""
        rows = as_rows(rows, self.num_parameters)
        if self.num_parameters == 0 or rows.shape[0] == 1:
            unique, inverse = rows[:1], np.zeros(rows.shape[0], dtype=np.int64)
        else:  # distinct rows by their bytes (a dict: no sort)
            seen: dict[bytes, int] = {}
            inverse = np.fromiter(
                (seen.setdefault(r.tobytes(), len(seen)) for r in rows),
                dtype=np.int64,
                count=rows.shape[0],
            )
            first = np.zeros(len(seen), dtype=np.int64)
            first[inverse[::-1]] = np.arange(rows.shape[0])[::-1]
            unique = rows[first]
        if not np.isfinite(unique).all():
            raise arg_error("parameter_values", "must be finite, got NaN or inf")
        mode = "density_matrix" if self.circuit.has_channels else "statevector"
        sim = simulator or TorchSimulator(mode, dtype=torch.complex128)
        if sim.mode != mode:
            raise arg_error(
                "simulator",
                f"the circuit needs a {mode} simulator (it has channels: "
                f"{self.circuit.has_channels}), got mode {sim.mode!r}",
            )
        binds = self.bindings(unique)
        with torch.no_grad():
            if binds:
                state = sim.run(self.circuit, binds)
            else:
                state = sim.run(self.circuit)
        if not state.batched:  # no symbolic parameter: the tensor still has its batch axis
            state = State(state.tensor, state.dims, state.mode, True)
        return state, inverse


#: programs kept by :meth:`Program.cached`
CACHE_SIZE = 32
_CACHE: dict[Any, Program] = {}
_CACHE_LOCK = threading.Lock()
_PLAIN = frozenset({"measure", "barrier"})


def _content_key(qc: Any) -> Any:
    """A hashable key of everything :meth:`Program.of` reads from ``qc`` (``None``: a gate
    outside Qiskit's standard library, or an unhashable parameter such as a matrix)."""
    items = []
    for ci in qc.data:
        op = ci.operation
        if getattr(op, "_standard_gate", None) is None and op.name not in _PLAIN:
            return None
        items.append((op.name, ci.qubits, ci.clbits, tuple(op.params)))
    key = (tuple(qc.qubits), tuple(qc.clbits), qc.global_phase, tuple(items))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def as_rows(values: Any, nparams: int) -> np.ndarray:
    """A value array ``shape + (P,)`` as ``(prod(shape), P)`` float64 rows (``P`` may be 0)."""
    values = np.asarray(values, dtype=np.float64)
    count = int(np.prod(values.shape[:-1])) if values.ndim else 1
    return values.reshape(count, nparams)


def expand_label(label: str, coeff: complex) -> list[tuple[str, complex]]:
    """A Qiskit ``SparseObservable`` label as Pauli terms: the projectors ``0 1 + - r l``
    become ``(I ± Z)/2``, ``(I ± X)/2``, ``(I ± Y)/2``."""
    proj = {"0": ("Z", 1), "1": ("Z", -1), "+": ("X", 1), "-": ("X", -1)}
    proj |= {"r": ("Y", 1), "l": ("Y", -1)}
    terms: list[tuple[str, complex]] = [("", complex(coeff))]
    for ch in label:
        if ch in "IXYZ":
            terms = [(t + ch, c) for t, c in terms]
        elif ch in proj:
            p, sign = proj[ch]
            terms = [(t + "I", c / 2) for t, c in terms] + [(t + p, c * sign / 2) for t, c in terms]
        else:
            raise arg_error("observables", f"unknown single-qubit term {ch!r} in {label!r}")
    return terms


def _parity(index: torch.Tensor, mask: int, n: int) -> torch.Tensor:
    """``|index ∧ mask| mod 2`` for every entry of ``index``."""
    bits = index & mask
    out = torch.zeros_like(index)
    for b in range(n):
        if mask >> b & 1:
            out ^= (bits >> b) & 1
    return out


def _masks(label: str, n: int) -> tuple[int, int, int]:
    """``(x mask, z mask, number of Y)`` of a Qiskit Pauli label on ``n`` qubits."""
    if len(label) != n:
        raise arg_error("observables", f"label {label!r} does not act on {n} qubits")
    xm = zm = ny = 0
    for pos, ch in enumerate(label):
        q = n - 1 - pos
        if ch in "XY":
            xm |= 1 << q
        if ch in "ZY":
            zm |= 1 << q
        ny += ch == "Y"
    return xm, zm, ny


def pauli_expvals(state: State, labels: list[str]) -> np.ndarray:
    """``(L, B)`` float64: ``<P>`` of each Qiskit Pauli label on each row of a batched state
    (qubit registers; see the module docstring for the formula). Labels of ``I``/``Z``
    only (``x = 0``) are read from the probabilities in one product."""
    n = len(state.dims)
    dim = 1 << n
    dm = state.mode == "density_matrix"
    x = state.tensor.reshape(-1, dim, dim) if dm else state.tensor.reshape(-1, dim)
    real = x.real.dtype
    k = torch.arange(dim, device=x.device)
    out = np.empty((len(labels), x.shape[0]))
    masks = [_masks(label, n) for label in labels]
    diagonal = [i for i, (xm, _, _) in enumerate(masks) if xm == 0]
    if diagonal:
        probs = torch.diagonal(x, dim1=-2, dim2=-1).real if dm else x.real**2 + x.imag**2
        signs = torch.stack([1 - 2 * _parity(k, masks[i][1], n) for i in diagonal], -1)
        out[diagonal] = (probs @ signs.to(real)).T.cpu().numpy()
    for i, (xm, zm, ny) in enumerate(masks):
        if xm == 0:
            continue
        sign = (1 - 2 * _parity(k, zm, n)).to(real)
        terms = x[:, k, k ^ xm] if dm else x[:, k ^ xm].conj() * x
        out[i] = ((terms * sign).sum(-1) * (1j**ny)).real.cpu().numpy()
    return out
