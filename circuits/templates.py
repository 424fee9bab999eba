"""Circuit templates: the SWAP test and the destructive SWAP test.

**SWAP test** (:func:`swap_test`): a qubit ancilla on wire 0, register A on wires
``1..n`` and register B on wires ``n+1..2n`` (any wire dims, pairwise equal).
``H`` on the ancilla, a controlled ``SWAP`` of every wire pair ``(A_i, B_i)``,
``H`` again. With the registers in states ``ρ`` and ``σ``::

    P(ancilla = 0) = (1 + Tr(ρσ)) / 2

``Tr(ρσ)`` is the overlap ``|<a|b>|²`` for pure states; for mixed states it is
*not* the (Uhlmann) fidelity.

**Destructive SWAP test** (:func:`destructive_swap_test`): no ancilla; register A
on wires ``0..n-1``, register B on wires ``n..2n-1``; each pair ``(A_i, B_i)`` is
measured in a basis of eigenvectors of its SWAP, and the product of the SWAP
eigenvalues ``s = ±1`` of all pairs has mean ``Tr(ρσ)``::

    Tr(ρσ) = E[s] = 1 - 2 P(s = -1)

Qubit pairs use the Bell-basis measurement ``CNOT(A_i -> B_i)`` then ``H(A_i)``:
outcome ``(a, b)`` has ``s = (-1)^(a·b)`` (only the singlet, outcome ``11``, is
antisymmetric), so ``P(s = -1)`` is the probability of odd parity of
``Σ_i a_i b_i``. Pairs of dimension ``d > 2`` use the qudit generalisation: a
two-wire :class:`~qsem.circuits.gates.Unitary` that maps the symmetric and
antisymmetric states ``(|x y> ± |y x>)/√2`` (``x < y``) to ``|x y>`` and
``|y x>`` and leaves ``|x x>`` alone; outcome ``(p, q)`` then has ``s = -1``
exactly when ``p > q``. :func:`destructive_swap_signs` gives ``s`` for every
joint outcome, so that ``Tr(ρσ) = Σ_k P(k) s_k``.

>>> from qsem.circuits.templates import swap_test
>>> c = swap_test([2, 3])
>>> c.dims
(2, 2, 3, 2, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .circuit import Circuit, _check_dims
from .errors import DimensionError, QsemTypeError, arg_error
from .gates import CNOT, CSWAP, H, Unitary

__all__ = [
    "compute_uncompute",
    "destructive_swap_registers",
    "destructive_swap_signs",
    "destructive_swap_test",
    "prepend",
    "swap_test",
    "swap_test_registers",
    "symmetric_basis_unitary",
]


def _register_dims(dims: object, name: str) -> tuple[int, ...]:
    """A register's wire dims; an int ``n`` means ``n`` qubits."""
    if isinstance(dims, (int, np.integer)) and not isinstance(dims, bool):
        if dims < 1:
            raise arg_error(name, f"a number of qubits must be >= 1, got {dims}")
        return (2,) * int(dims)
    try:
        return _check_dims(dims)
    except (QsemTypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("argument 'dims'", f"argument '{name}'")) from None


def _pair_dims(dims_a: object, dims_b: object) -> tuple[int, ...]:
    da = _register_dims(dims_a, "dims_a")
    db = da if dims_b is None else _register_dims(dims_b, "dims_b")
    if da != db:
        raise DimensionError(
            f"argument 'dims_b': the registers must have the same wire dims to be swapped, "
            f"got dims_a={list(da)} and dims_b={list(db)}"
        )
    return da


def swap_test_registers(dims_a: object) -> tuple[int, list[int], list[int]]:
    """Wires of :func:`swap_test`: ``(ancilla, wires_a, wires_b)`` = ``(0, [1..n], [n+1..2n])``."""
    n = len(_register_dims(dims_a, "dims_a"))
    return 0, list(range(1, n + 1)), list(range(n + 1, 2 * n + 1))


def destructive_swap_registers(dims: object) -> tuple[list[int], list[int]]:
    """Wires of :func:`destructive_swap_test`: ``([0..n-1], [n..2n-1])``."""
    n = len(_register_dims(dims, "dims"))
    return list(range(n)), list(range(n, 2 * n))


def prepend(circuit: Circuit, prep: Circuit, wires: Sequence[int]) -> Circuit:
    """A new circuit: ``prep`` on ``wires`` of ``circuit``, followed by ``circuit``.

    Symbolic parameters keep their names: give the two registers' preparation
    circuits distinct parameter names unless they are meant to be shared.
    """
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    if not isinstance(prep, Circuit):
        raise arg_error("prep", f"expected a Circuit, got {type(prep).__name__}", QsemTypeError)
    return Circuit(circuit.dims).compose(prep, wires) + circuit


def compute_uncompute(prep_a: Circuit, prep_b: Circuit) -> Circuit:
    """``U_a`` then ``U_b^†`` on one register: ``P(0…0) = |<ψ_b|ψ_a>|²`` for pure states.

    With ``|ψ_a> = U_a|0>`` and ``|ψ_b> = U_b|0>``, the amplitude of ``|0…0>`` after
    ``U_b^† U_a`` is ``<0|U_b^† U_a|0> = <ψ_b|ψ_a>``. Both circuits act on the same
    wire dims and hold gates only (channels have no adjoint).
    """
    for name, prep in (("prep_a", prep_a), ("prep_b", prep_b)):
        if not isinstance(prep, Circuit):
            raise arg_error(name, f"expected a Circuit, got {type(prep).__name__}", QsemTypeError)
        if prep.has_channels:
            raise arg_error(name, "compute-uncompute needs a circuit of gates only (no channels)")
    if prep_a.dims != prep_b.dims:
        raise DimensionError(
            f"argument 'prep_b': dims {list(prep_b.dims)} differ from {list(prep_a.dims)} "
            "of 'prep_a'"
        )
    return prep_a + prep_b.adjoint()


def _with_preps(
    circuit: Circuit,
    prep_a: Circuit | None,
    prep_b: Circuit | None,
    wires_a: list[int],
    wires_b: list[int],
) -> Circuit:
    for name, prep, wires in (("prep_b", prep_b, wires_b), ("prep_a", prep_a, wires_a)):
        if prep is None:
            continue
        if not isinstance(prep, Circuit):
            raise arg_error(name, f"expected a Circuit, got {type(prep).__name__}", QsemTypeError)
        want = tuple(circuit.dims[w] for w in wires)
        if prep.dims != want:
            raise DimensionError(
                f"argument '{name}': the preparation circuit has dims {list(prep.dims)}, "
                f"the register needs {list(want)}"
            )
        circuit = prepend(circuit, prep, wires)
    return circuit


def swap_test(
    dims_a: int | Sequence[int],
    dims_b: int | Sequence[int] | None = None,
    *,
    prep_a: Circuit | None = None,
    prep_b: Circuit | None = None,
) -> Circuit:
    """The SWAP test on ``[2] + dims_a + dims_b`` (``dims_b`` defaults to ``dims_a``).

    Wire 0 is the qubit ancilla, wires ``1..n`` register A, ``n+1..2n`` register B
    (an int ``n`` means ``n`` qubits). ``prep_a`` / ``prep_b``: optional circuits on
    the register's dims, run on A / B before the test. Measuring the ancilla gives
    ``P(0) = (1 + Tr(ρσ)) / 2``.

    >>> from qsem.circuits import Circuit, RY
    >>> c = swap_test(1, prep_b=Circuit.qubits(1).add(RY(0.5, wires=0)))
    >>> [op.name for op in c]
    ['RY', 'H', 'CSWAP', 'H']
    """
    dims = _pair_dims(dims_a, dims_b)
    anc, wa, wb = swap_test_registers(dims)
    c = Circuit([2, *dims, *dims])
    c.add(H(wires=anc))
    for a, b in zip(wa, wb, strict=True):
        c.add(CSWAP(wires=[anc, a, b]))
    c.add(H(wires=anc))
    return _with_preps(c, prep_a, prep_b, wa, wb)


def symmetric_basis_unitary(d: int) -> np.ndarray:
    """The ``d² × d²`` unitary of the qudit destructive SWAP test (real orthogonal).

    It maps ``(|x y> + |y x>)/√2 -> |x y>`` and ``(|x y> - |y x>)/√2 -> |y x>`` for
    ``x < y`` and fixes ``|x x>``: a computational-basis outcome ``(p, q)`` then
    reveals the SWAP eigenvalue, ``-1`` exactly when ``p > q``.
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 2:
        raise arg_error("d", f"must be an integer >= 2, got {d!r}")
    u = np.zeros((d * d, d * d))
    r = 1 / math.sqrt(2)
    for x in range(d):
        u[x * d + x, x * d + x] = 1.0
        for y in range(x + 1, d):
            xy, yx = x * d + y, y * d + x
            u[xy, xy], u[xy, yx] = r, r  # row xy = symmetric vector
            u[yx, xy], u[yx, yx] = r, -r  # row yx = antisymmetric vector
    return u


def destructive_swap_test(
    dims: int | Sequence[int],
    *,
    prep_a: Circuit | None = None,
    prep_b: Circuit | None = None,
) -> Circuit:
    """The destructive SWAP test on registers A (wires ``0..n-1``) and B (``n..2n-1``).

    ``dims``: the register's wire dims (an int ``n`` means ``n`` qubits). Qubit pairs
    get ``CNOT(A_i -> B_i)`` and ``H(A_i)`` (Bell-basis measurement); pairs of
    dimension ``d > 2`` get :func:`symmetric_basis_unitary` ``(d)``. Measure every
    wire and weight each outcome with :func:`destructive_swap_signs`:
    ``Tr(ρσ) = Σ_k P(k) s_k = 1 - 2 P(s = -1)``.

    >>> [op.name for op in destructive_swap_test(2)]
    ['CNOT', 'H', 'CNOT', 'H']
    """
    reg = _register_dims(dims, "dims")
    wa, wb = destructive_swap_registers(reg)
    c = Circuit([*reg, *reg])
    for a, b, d in zip(wa, wb, reg, strict=True):
        if d == 2:
            c.add(CNOT(wires=[a, b]), H(wires=a))
        else:
            c.add(Unitary(symmetric_basis_unitary(d), wires=[a, b]))
    return _with_preps(c, prep_a, prep_b, wa, wb)


def destructive_swap_signs(
    dims: int | Sequence[int], *, dtype: torch.dtype = torch.float64, device: object = None
) -> torch.Tensor:
    """SWAP eigenvalue ``s_k = ±1`` of every joint outcome ``k`` of :func:`destructive_swap_test`.

    A vector of length ``prod(dims)²`` in qsem's basis order (wire 0 most
    significant), so that ``Tr(ρσ) = probs @ signs``.

    >>> destructive_swap_signs(1).tolist()  # outcomes 00, 01, 10, 11
    [1.0, 1.0, 1.0, -1.0]
    """
    reg = _register_dims(dims, "dims")
    full = (*reg, *reg)
    n = len(reg)
    idx = np.arange(math.prod(full))
    digits = np.empty((len(full), idx.size), dtype=np.int64)
    rem = idx
    for w in range(len(full) - 1, -1, -1):
        digits[w] = rem % full[w]
        rem = rem // full[w]
    odd = np.zeros(idx.size, dtype=np.int64)
    for i, d in enumerate(reg):
        a, b = digits[i], digits[n + i]
        odd ^= (a * b) & 1 if d == 2 else (a > b).astype(np.int64)
    signs = 1.0 - 2.0 * odd
    return torch.as_tensor(signs, dtype=dtype, device=device)  # type: ignore[arg-type]
