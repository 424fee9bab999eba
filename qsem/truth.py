"""Qutrit truth states and Kleene's strong three-valued logic.

Truth basis of a qutrit: ``|T> = |0>``, ``|F> = |1>``, ``|U> = |2>`` (true, false,
undefined / unknown). A *truth state* is any qutrit state: a basis state, a
superposition, or a mixture (density matrix); measuring it in the truth basis
gives the probabilities ``(p_T, p_F, p_U)`` in that order.

Classical logic (Kleene's strong three-valued logic, ordering ``F < U < T``)::

    NOT  T->F  F->T  U->U
    AND  = min,  OR = max,  a -> b = NOT a OR b

Lifted to qutrits:

* **NOT** is a bijection of the three truth values, so it is a unitary: the
  permutation ``|T> <-> |F>``, ``|U>`` fixed (:data:`NOT_MATRIX`,
  :func:`not_gate`). It acts on superpositions and mixtures linearly.
* **AND, OR, implication** map 9 input pairs onto 3 outputs: they are not
  injective, so no unitary on the two input qutrits alone computes them (not
  even ``|a, b> -> |a, a AND b>``: ``(F, T)``, ``(F, F)`` and ``(F, U)`` all map to
  ``(F, F)``). They are realised reversibly with an output ancilla qutrit:
  ``|a, b, c> -> |a, b, (c + f(a, b)) mod 3>`` (:func:`kleene_unitary`, a 27 × 27
  permutation matrix, hence unitary). With the ancilla prepared in ``|T> = |0>``
  the ancilla ends in ``|f(a, b)>`` and the inputs are kept. The same unitary is a
  product of controlled shifts: for each input pair ``(i, j)`` with ``f(i, j) = k != 0``
  a ``Shift^k`` on the ancilla controlled on ``a = i, b = j``
  (:func:`kleene_circuit` with ``form="controlled"``). On superposed inputs the
  output is entangled with the inputs; its marginal is the classical image of
  the input distribution, ``P(out = k) = Σ_{f(a,b)=k} P(a, b)``.

>>> from qsem.truth import Truth, kleene_and, kleene_not
>>> kleene_and(Truth.T, Truth.U), kleene_not(Truth.U)
(<Truth.U: 2>, <Truth.U: 2>)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from qsem.circuits import Circuit, Controlled, Shift, Unitary
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.operations import as_numeric_tensor
from qsem.simulators import State, TorchSimulator, probs, sample

__all__ = [
    "AND_TABLE",
    "IMPLIES_TABLE",
    "NOT_MATRIX",
    "NOT_TABLE",
    "OR_TABLE",
    "Truth",
    "and_gate",
    "as_truth",
    "evaluate",
    "format_truth_table",
    "implies_gate",
    "kleene_and",
    "kleene_circuit",
    "kleene_implies",
    "kleene_not",
    "kleene_or",
    "kleene_unitary",
    "most_likely",
    "not_gate",
    "or_gate",
    "sample_truth_probabilities",
    "truth_density_matrix",
    "truth_distribution",
    "truth_probabilities",
    "truth_state",
]


class Truth(enum.IntEnum):
    """A classical truth value; the integer is the qutrit level of its basis state."""

    T = 0
    F = 1
    U = 2

    def __str__(self) -> str:
        return self.name

    @property
    def word(self) -> str:
        return {0: "true", 1: "false", 2: "unknown"}[int(self)]


_ALIASES = {
    "t": Truth.T, "true": Truth.T,
    "f": Truth.F, "false": Truth.F,
    "u": Truth.U, "unknown": Truth.U, "undefined": Truth.U,
}  # fmt: skip

# Kleene strong logic with the order F < U < T: rank[v] is v's position in that order.
_RANK = np.array([2, 0, 1])  # T, F, U
_BY_RANK = np.array([Truth.F, Truth.U, Truth.T])

#: ``NOT_TABLE[a]`` for ``a`` in (T, F, U).
NOT_TABLE = np.array([Truth.F, Truth.T, Truth.U], dtype=np.int64)
#: ``AND_TABLE[a, b]`` = min(a, b) in the order F < U < T.
AND_TABLE = _BY_RANK[np.minimum.outer(_RANK, _RANK)].astype(np.int64)
#: ``OR_TABLE[a, b]`` = max(a, b) in the order F < U < T.
OR_TABLE = _BY_RANK[np.maximum.outer(_RANK, _RANK)].astype(np.int64)
#: ``IMPLIES_TABLE[a, b]`` = NOT a OR b.
IMPLIES_TABLE = OR_TABLE[NOT_TABLE, :]

_BINARY = {"and": AND_TABLE, "or": OR_TABLE, "implies": IMPLIES_TABLE}
# the tables as nested tuples of Truth members: the fast path for two Truth values
# (the Kleene task's labeller evaluates proof chains with them, ~10^5 calls per dataset)
_TRUTHS = tuple(Truth)
_NOT_T = tuple(_TRUTHS[int(v)] for v in NOT_TABLE)
_BINARY_T = {
    op: tuple(tuple(_TRUTHS[int(v)] for v in row) for row in t) for op, t in _BINARY.items()
}

#: The qutrit NOT: ``|T> <-> |F>``, ``|U>`` fixed (``NOT_MATRIX[j, i] = 1`` iff NOT i = j).
NOT_MATRIX = torch.zeros(3, 3, dtype=torch.complex128)
NOT_MATRIX[NOT_TABLE, torch.arange(3)] = 1.0


# ---------------------------------------------------------------------------------------------
# Labels and classical logic
# ---------------------------------------------------------------------------------------------
def as_truth(value: Any, name: str = "value") -> Truth:
    """A :class:`Truth` from a Truth, an int code 0/1/2, or a label ("T", "false", "unknown"...)."""
    if isinstance(value, Truth):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
        raise arg_error(name, f"unknown truth label {value!r}; use T/F/U, true/false/unknown")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) <= 2:
            return Truth(int(value))
        raise arg_error(name, f"truth codes are 0 (T), 1 (F), 2 (U), got {int(value)}")
    raise arg_error(
        name, f"expected a Truth, an int code or a label, got {type(value).__name__}", QsemTypeError
    )


def _codes(value: Any, name: str) -> tuple[np.ndarray | torch.Tensor | Truth, bool]:
    """``(codes, is_array)``: an array / tensor of codes, or one Truth."""
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise arg_error(name, f"expected integer truth codes, got {value.dtype}", QsemTypeError)
        if value.numel() and (int(value.min()) < 0 or int(value.max()) > 2):
            raise arg_error(name, "truth codes must be 0 (T), 1 (F) or 2 (U)")
        return value.long(), True
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(
            [as_truth(v, name) for v in np.ravel(np.asarray(value, dtype=object))], dtype=np.int64
        ).reshape(np.shape(value))
        return arr, True
    return as_truth(value, name), False


def kleene_not(a: Any) -> Any:
    """Kleene NOT of a truth value, or elementwise of an array / integer tensor of codes."""
    if type(a) is Truth:
        return _NOT_T[a]
    codes, is_array = _codes(a, "a")
    if not is_array:
        return Truth(int(NOT_TABLE[int(codes)]))
    if isinstance(codes, torch.Tensor):
        return torch.as_tensor(NOT_TABLE, device=codes.device)[codes]
    return NOT_TABLE[codes]


def _binary(op: str, a: Any, b: Any) -> Any:
    if type(a) is Truth and type(b) is Truth:
        return _BINARY_T[op][a][b]
    table = _BINARY[op]
    ca, arr_a = _codes(a, "a")
    cb, arr_b = _codes(b, "b")
    if not (arr_a or arr_b):
        return Truth(int(table[int(ca), int(cb)]))
    if isinstance(ca, torch.Tensor) or isinstance(cb, torch.Tensor):
        dev = ca.device if isinstance(ca, torch.Tensor) else cb.device  # type: ignore[union-attr]
        ta = torch.as_tensor(np.asarray(ca) if not isinstance(ca, torch.Tensor) else ca, device=dev)
        tb = torch.as_tensor(np.asarray(cb) if not isinstance(cb, torch.Tensor) else cb, device=dev)
        ta, tb = torch.broadcast_tensors(ta.long(), tb.long())
        return torch.as_tensor(table, device=dev)[ta, tb]
    return table[np.asarray(ca, dtype=np.int64), np.asarray(cb, dtype=np.int64)]


def kleene_and(a: Any, b: Any) -> Any:
    """Kleene AND (min in the order F < U < T); scalars give a Truth, arrays broadcast."""
    return _binary("and", a, b)


def kleene_or(a: Any, b: Any) -> Any:
    """Kleene OR (max in the order F < U < T); scalars give a Truth, arrays broadcast."""
    return _binary("or", a, b)


def kleene_implies(a: Any, b: Any) -> Any:
    """Kleene implication ``a -> b = NOT a OR b``; scalars give a Truth, arrays broadcast."""
    return _binary("implies", a, b)


def _table(op: str) -> np.ndarray:
    if op not in _BINARY:
        raise arg_error("op", f"must be one of {sorted(_BINARY)}, got {op!r}")
    return _BINARY[op]


def format_truth_table(op: str) -> str:
    """The truth table of ``"not"``, ``"and"``, ``"or"`` or ``"implies"`` as text."""
    names = "TFU"
    if op == "not":
        return "\n".join(f"NOT {names[a]} = {names[NOT_TABLE[a]]}" for a in range(3))
    table = _table(op)
    head = f"{op.upper():>7} | " + " ".join(names)
    rows = [f"{names[a]:>7} | " + " ".join(names[table[a, b]] for b in range(3)) for a in range(3)]
    return "\n".join([head, "-" * len(head), *rows])


# ---------------------------------------------------------------------------------------------
# Conversions: label <-> basis state <-> distribution
# ---------------------------------------------------------------------------------------------
def truth_state(value: Any, *, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """A qutrit statevector ``(3,)``.

    ``value`` is a label (basis state ``|T>``, ``|F>`` or ``|U>``) or three
    amplitudes ``(a_T, a_F, a_U)`` (checked to have norm 1 within 1e-6, then rescaled
    to norm 1 exactly).
    """
    if isinstance(value, (Truth, str, int, np.integer)) and not isinstance(value, bool):
        v = torch.zeros(3, dtype=dtype)
        v[int(as_truth(value))] = 1.0
        return v
    amps = as_numeric_tensor(value, "value").to(dtype)
    if amps.shape != (3,):
        raise arg_error("value", f"expected a label or 3 amplitudes (T, F, U), got {amps.shape}")
    norm = float(torch.linalg.vector_norm(amps.detach()))
    if not math.isfinite(norm) or abs(norm - 1) > 1e-6:
        raise arg_error("value", f"amplitudes must have norm 1 (tol 1e-6), got {norm:.6g}")
    return amps / norm  # exact norm 1 in the working precision


def truth_distribution(value: Any, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The one-hot distribution ``(p_T, p_F, p_U)`` of a label (real ``(3,)``)."""
    p = torch.zeros(3, dtype=dtype)
    p[int(as_truth(value))] = 1.0
    return p


def truth_density_matrix(
    value: Any, *, coherent: bool = False, dtype: torch.dtype = torch.complex128
) -> torch.Tensor:
    """A qutrit density matrix ``(3, 3)``.

    ``value``: a label (``|v><v|``), a statevector ``(3,)`` with ``coherent=True``
    (``|ψ><ψ|``) or a distribution ``(p_T, p_F, p_U)`` (the classical mixture
    ``diag(p)``; non-negative, summing to 1 within 1e-6).
    """
    if isinstance(value, (Truth, str, int, np.integer)) and not isinstance(value, bool):
        v = truth_state(value, dtype=dtype)
        return torch.outer(v, v.conj())
    if coherent:
        v = truth_state(value, dtype=dtype)
        return torch.outer(v, v.conj())
    p = as_numeric_tensor(value, "value")
    if p.is_complex():
        raise arg_error("value", "a distribution is real; pass coherent=True for amplitudes")
    if p.shape != (3,):
        raise arg_error("value", f"expected a distribution over (T, F, U), got shape {p.shape}")
    pd = p.detach().double()
    if bool((pd < -1e-12).any()) or not bool(torch.isfinite(pd).all()):
        raise arg_error("value", f"probabilities must be finite and non-negative, got {p.tolist()}")
    if abs(float(pd.sum()) - 1) > 1e-6:
        raise arg_error("value", f"probabilities must sum to 1 (tol 1e-6), got {float(pd.sum())}")
    return torch.diag(p.to(dtype))


def most_likely(p: torch.Tensor) -> Any:
    """The label(s) with the largest probability: a Truth for ``(3,)``, codes for ``(..., 3)``."""
    if not isinstance(p, torch.Tensor) or p.shape[-1:] != (3,):
        raise arg_error("p", "expected a tensor of truth probabilities (..., 3)")
    idx = p.argmax(-1)
    return Truth(int(idx)) if idx.dim() == 0 else idx


# ---------------------------------------------------------------------------------------------
# Gates and circuits
# ---------------------------------------------------------------------------------------------
def not_gate(wire: int) -> Unitary:
    """The qutrit NOT (``|T> <-> |F>``, ``|U>`` fixed) as a ``Unitary`` gate on ``wire``."""
    return Unitary(NOT_MATRIX, wires=[wire])


def kleene_unitary(op: str | Callable[[int, int], int]) -> torch.Tensor:
    """The 27 × 27 permutation ``|a, b, c> -> |a, b, (c + f(a, b)) mod 3>`` (complex128).

    ``op`` is ``"and"``, ``"or"``, ``"implies"`` or any function of two codes
    returning a code. Basis index ``9 a + 3 b + c`` (wire ``a`` most significant).
    The matrix is a permutation (each column has one 1, rows distinct), so it is
    unitary; it is its own inverse only for ``f = 0`` (its inverse subtracts ``f``).
    """
    if callable(op):
        table = np.array([[int(as_truth(op(a, b), "op")) for b in range(3)] for a in range(3)])
    else:
        table = _table(op)
    u = torch.zeros(27, 27, dtype=torch.complex128)
    for a in range(3):
        for b in range(3):
            for c in range(3):
                u[9 * a + 3 * b + (c + int(table[a, b])) % 3, 9 * a + 3 * b + c] = 1.0
    return u


def _check_wires(wires: Sequence[int], n: int) -> list[int]:
    if isinstance(wires, (str, bytes)) or not isinstance(wires, Sequence) or len(wires) != n:
        raise arg_error("wires", f"expected {n} wires, got {wires!r}")
    return list(wires)


def kleene_circuit(
    op: str, wires: Sequence[int] = (0, 1, 2), *, form: str = "unitary", n_wires: int | None = None
) -> Circuit:
    """A qutrit circuit computing ``op`` of wires ``(a, b)`` into the ancilla ``wires[2]``.

    ``form="unitary"``: one :class:`Unitary` with :func:`kleene_unitary`;
    ``form="controlled"``: the same map as controlled shifts ``Shift^k`` on the
    ancilla, one per input pair with ``f(a, b) = k != 0``. ``op="not"`` takes one wire.
    The circuit has ``n_wires`` qutrits (default: ``max(wires) + 1``).
    """
    if form not in ("unitary", "controlled"):
        raise arg_error("form", f"must be 'unitary' or 'controlled', got {form!r}")
    if op == "not":
        w = _check_wires(wires if len(wires) == 1 else wires[:1], 1)
        c = Circuit.qutrits(n_wires or max(w) + 1)
        return c.add(not_gate(w[0]))
    table = _table(op)
    w = _check_wires(wires, 3)
    c = Circuit.qutrits(n_wires or max(w) + 1)
    if form == "unitary":
        return c.add(Unitary(kleene_unitary(op), wires=w))
    for a in range(3):
        for b in range(3):
            for _ in range(int(table[a, b])):
                c.add(Controlled(Shift(wires=w[2]), control_wires=w[:2], control_values=[a, b]))
    return c


def and_gate(a: int, b: int, out: int) -> Unitary:
    """Kleene AND of wires ``a, b`` added (mod 3) into the ancilla ``out`` (start it in ``|T>``)."""
    return Unitary(kleene_unitary("and"), wires=[a, b, out])


def or_gate(a: int, b: int, out: int) -> Unitary:
    """Kleene OR of wires ``a, b`` added (mod 3) into the ancilla ``out`` (start it in ``|T>``)."""
    return Unitary(kleene_unitary("or"), wires=[a, b, out])


def implies_gate(a: int, b: int, out: int) -> Unitary:
    """Kleene ``a -> b`` added (mod 3) into the ancilla ``out`` (start it in ``|T>``)."""
    return Unitary(kleene_unitary("implies"), wires=[a, b, out])


def _as_input(value: Any, name: str) -> torch.Tensor:
    """A qutrit input as a statevector ``(3,)`` or a density matrix ``(3, 3)`` (complex128)."""
    if isinstance(value, (Truth, str, int, np.integer)) and not isinstance(value, bool):
        return truth_state(value)
    t = as_numeric_tensor(value, name)
    if t.shape == (3,):
        return truth_state(t, dtype=torch.complex128)
    if t.shape == (3, 3):
        from qsem.simulators import check_density_matrix

        rho = t.to(torch.complex128)
        check_density_matrix(rho, name=name, atol=1e-6)
        return rho / torch.diagonal(rho).sum()
    raise arg_error(
        name, f"expected a label, amplitudes (3,) or a density matrix (3, 3), got {t.shape}"
    )


def evaluate(op: str, *inputs: Any, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """Run the lifted ``op`` on qutrit inputs with the torch engine; return the output's
    truth probabilities ``(p_T, p_F, p_U)``.

    ``op``: ``"not"`` (one input) or ``"and"``/``"or"``/``"implies"`` (two inputs,
    the output is read from an ancilla prepared in ``|T>``). Inputs are labels,
    statevectors ``(3,)`` or density matrices ``(3, 3)``; with any density matrix
    the run is in density-matrix mode on the product state.
    """
    n_in = 1 if op == "not" else 2
    if op != "not":
        _table(op)
    if len(inputs) != n_in:
        raise arg_error("inputs", f"{op!r} takes {n_in} input(s), got {len(inputs)}")
    states = [_as_input(v, f"inputs[{i}]") for i, v in enumerate(inputs)]
    if n_in == 2:
        states.append(truth_state(Truth.T))
    mixed = any(s.dim() == 2 for s in states)
    if mixed:
        rhos = [s if s.dim() == 2 else torch.outer(s, s.conj()) for s in states]
        init = rhos[0]
        for r in rhos[1:]:
            init = torch.kron(init, r)
    else:
        init = states[0]
        for s in states[1:]:
            init = torch.kron(init, s)
    circuit = kleene_circuit(op, wires=[0] if n_in == 1 else [0, 1, 2])
    sim = TorchSimulator("density_matrix" if mixed else "statevector", dtype=dtype)
    state = sim.run(circuit, initial_state=init.to(dtype))
    return truth_probabilities(state, wire=n_in if n_in == 2 else 0)


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def _truth_wire(state: object, wire: object) -> int:
    if not isinstance(state, State):
        raise arg_error(
            "state", f"expected a State from a simulator, got {type(state).__name__}", QsemTypeError
        )
    if not isinstance(wire, (int, np.integer)) or isinstance(wire, bool):
        raise arg_error("wire", f"expected one wire index, got {wire!r}", QsemTypeError)
    if not 0 <= int(wire) < len(state.dims):
        raise arg_error("wire", f"wire {wire} out of range for {len(state.dims)} wires")
    if state.dims[int(wire)] != 3:
        raise arg_error(
            "wire", f"wire {wire} has dimension {state.dims[int(wire)]}; a truth wire is a qutrit"
        )
    return int(wire)


def truth_probabilities(state: State, wire: int) -> torch.Tensor:
    """Born probabilities ``(p_T, p_F, p_U)`` of qutrit ``wire``: ``(3,)`` or ``(B, 3)``."""
    return probs(state, wires=[_truth_wire(state, wire)])


def sample_truth_probabilities(
    state: State, wire: int, shots: int, *, seed: int | None = None
) -> torch.Tensor:
    """Measure qutrit ``wire`` ``shots`` times; frequencies of (T, F, U): ``(3,)`` or ``(B, 3)``."""
    w = _truth_wire(state, wire)
    levels = sample(state, shots, wires=[w], seed=seed)[..., 0]
    freq = torch.nn.functional.one_hot(levels.long(), 3).double().mean(-2)
    return freq
