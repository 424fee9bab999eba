"""Observables: Pauli strings, generalised Gell-Mann matrices, any Hermitian matrix.

``expval`` in :mod:`qsem.simulators` takes any of these. Diagonal observables
(``Z`` strings, diagonal Gell-Mann matrices) are evaluated from probabilities.

>>> PauliString("ZZ", wires=[0, 1]).diagonal((2, 2))
tensor([ 1., -1., -1.,  1.], dtype=torch.float64)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .errors import DimensionError, QsemTypeError, arg_error
from .operations import as_numeric_tensor, normalize_wires
from .tolerances import UNITARY_ATOL, atol_for

__all__ = ["GellMann", "Hermitian", "Observable", "PauliString", "gell_mann_matrices"]

_PAULI = {
    "I": np.eye(2),
    "X": np.array([[0, 1], [1, 0]]),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": np.diag([1, -1]),
}


def _check_coeff(coeff: object) -> float:
    if isinstance(coeff, bool) or not isinstance(coeff, (int, float, np.integer, np.floating)):
        raise arg_error("coeff", f"must be a real number, got {coeff!r}", QsemTypeError)
    if not math.isfinite(coeff):
        raise arg_error("coeff", f"must be finite, got {coeff!r}")
    return float(coeff)


class Observable:
    """A Hermitian operator on ``wires`` (local matrix, wire 0 most significant)."""

    wires: tuple[int, ...]

    def local_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def check_dims(self, dims: tuple[int, ...]) -> None:
        return None

    def matrix(
        self, dims: tuple[int, ...], *, dtype: torch.dtype = torch.complex64, device: Any = None
    ) -> torch.Tensor:
        """Local matrix on this observable's wires, as a tensor."""
        self.check_dims(tuple(dims))
        return torch.as_tensor(self.local_matrix(tuple(dims)), dtype=dtype, device=device)

    def diagonal(self, dims: tuple[int, ...]) -> torch.Tensor | None:
        """Real diagonal (float64) if the observable is diagonal, else ``None``."""
        m = self.local_matrix(tuple(dims))
        if np.count_nonzero(m - np.diag(np.diag(m))):
            return None
        return torch.from_numpy(np.diag(m).real.astype(np.float64))


class PauliString(Observable):
    """A tensor product of Paulis, e.g. ``PauliString("XZ", wires=[0, 2])``, times ``coeff``.

    Only qubit wires are allowed; use :class:`GellMann` or :class:`Hermitian` on qudits.
    """

    def __init__(self, paulis: str, wires: object, coeff: float = 1.0) -> None:
        if not isinstance(paulis, str) or not paulis or set(paulis.upper()) - set("IXYZ"):
            raise arg_error("paulis", f"expected a string over I, X, Y, Z, got {paulis!r}")
        self.paulis = paulis.upper()
        self.wires = normalize_wires(wires)
        if len(self.wires) != len(self.paulis):
            raise arg_error(
                "wires",
                f"{len(self.paulis)} Paulis need {len(self.paulis)} wires, got {list(self.wires)}",
            )
        self.coeff = _check_coeff(coeff)

    def check_dims(self, dims: tuple[int, ...]) -> None:
        if any(d != 2 for d in dims):
            raise DimensionError(
                f"argument 'wires': Pauli strings act on qubits, wires {list(self.wires)} have "
                f"dimensions {list(dims)}; use GellMann or Hermitian for qudits"
            )

    def local_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        self.check_dims(dims)
        m = np.array([[self.coeff]], dtype=np.complex128)
        for p in self.paulis:
            m = np.kron(m, _PAULI[p])
        return m

    def __repr__(self) -> str:
        c = "" if self.coeff == 1.0 else f"{self.coeff:g}*"
        return f"{c}PauliString({self.paulis!r}, wires={list(self.wires)})"


def gell_mann_matrices(d: int) -> np.ndarray:
    """The ``d² - 1`` generalised Gell-Mann matrices, ordered so that d = 3 gives λ1..λ8.

    For each level ``k = 1..d-1``: for ``j < k`` the symmetric ``|j><k| + |k><j|``
    and antisymmetric ``-i|j><k| + i|k><j|``, then the diagonal
    ``sqrt(2/(k(k+1))) (Σ_{j<k} |j><j| - k |k><k|)``.
    """
    if not isinstance(d, int) or d < 2:
        raise arg_error("d", f"must be an integer >= 2, got {d!r}")
    out = []
    for k in range(1, d):
        for j in range(k):
            s = np.zeros((d, d), dtype=np.complex128)
            s[j, k] = s[k, j] = 1
            a = np.zeros((d, d), dtype=np.complex128)
            a[j, k], a[k, j] = -1j, 1j
            out += [s, a]
        diag = np.zeros(d)
        diag[:k] = 1
        diag[k] = -k
        out.append(np.diag(diag * math.sqrt(2 / (k * (k + 1)))).astype(np.complex128))
    return np.stack(out)


# Without ``dim=``, GellMann's index is bounded by the qutrit range (λ1..λ8).
_UNDIMMED_MAX_INDEX = 8


class GellMann(Observable):
    r"""Generalised Gell-Mann matrix ``index`` (1-based) on one qudit wire, times ``coeff``.

    ``GellMann(index, wires=w)``: the dimension ``d`` is the wire's, and ``index`` runs
    over ``1 .. d² - 1`` in the order of :func:`gell_mann_matrices` (``d = 3``: λ1..λ8,
    PennyLane's ``qml.GellMann(wires=w, index=index)``; ``d = 2``: X, Y, Z).

    The index is refused at construction when it cannot name a matrix: not an integer,
    below 1, or beyond 8 without ``dim=`` (8 is the last qutrit matrix, PennyLane's
    range; qutrits are the qudits of every qsem interface). Indices 9 .. d² - 1 of a
    wider qudit need ``dim=d``, which also checks ``index <= d² - 1`` at once. The
    wire's own dimension is checked when the observable meets a circuit (``index <= 3``
    on a qubit; the wire must have dimension ``d`` when ``dim=d`` was given).

    ``wires`` is keyword-only: PennyLane's ``qml.GellMann(w, i)`` puts the wire first,
    qsem's old ``GellMann(i, w)`` the index, so a positional second argument is read
    the old way (index, wires) with a ``DeprecationWarning``.

    >>> GellMann(8, wires=0, dim=3).local_matrix((3,)).real.round(3).diagonal()
    array([ 0.577,  0.577, -1.155])
    >>> try:
    ...     GellMann(9, wires=0, dim=3)
    ... except ValueError as e:
    ...     print(e)
    argument 'index': a wire of dimension 3 has Gell-Mann matrices 1..8, got 9
    >>> GellMann(15, wires=0, dim=4).index
    15
    >>> try:
    ...     GellMann(15, wires=0)
    ... except ValueError as e:
    ...     print(e)
    argument 'index': must be 1..8 without dim= (qutrits); pass dim=d for a d-level qudit, got 15
    """

    def __init__(
        self,
        index: int,
        *args: Any,
        wires: object = None,
        coeff: float = 1.0,
        dim: int | None = None,
    ) -> None:
        if args:
            if len(args) > 2 or wires is not None:
                raise arg_error("wires", "give wires by keyword: GellMann(index, wires=...)")
            warnings.warn(
                "GellMann(index, wires[, coeff]) with positional wires is deprecated; write "
                "GellMann(index, wires=..., coeff=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            wires = args[0]
            coeff = args[1] if len(args) > 1 else coeff
        if wires is None:
            raise arg_error("wires", "GellMann needs wires=: GellMann(index, wires=...)")
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or index < 1:
            raise arg_error("index", f"must be an integer >= 1, got {index!r}")
        self.index = int(index)
        self.wires = normalize_wires(wires)
        if len(self.wires) != 1:
            raise arg_error("wires", f"GellMann acts on one wire, got {list(self.wires)}")
        self.coeff = _check_coeff(coeff)
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 2):
            raise arg_error("dim", f"must be an integer >= 2, got {dim!r}")
        self.dim = dim
        if dim is not None:
            self._check_index(dim)
        elif self.index > _UNDIMMED_MAX_INDEX:
            raise arg_error(
                "index",
                f"must be 1..{_UNDIMMED_MAX_INDEX} without dim= (qutrits); pass dim=d for a "
                f"d-level qudit, got {self.index}",
            )

    def _check_index(self, d: int) -> None:
        if self.index > d * d - 1:
            raise arg_error(
                "index",
                f"a wire of dimension {d} has Gell-Mann matrices 1..{d * d - 1}, got {self.index}",
                DimensionError,
            )

    def check_dims(self, dims: tuple[int, ...]) -> None:
        d = dims[0]
        if self.dim is not None and d != self.dim:
            raise DimensionError(
                f"argument 'dim': GellMann was built for dimension {self.dim}, wire "
                f"{self.wires[0]} has dimension {d}"
            )
        self._check_index(d)

    def local_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        self.check_dims(dims)
        return self.coeff * gell_mann_matrices(dims[0])[self.index - 1]

    def __repr__(self) -> str:
        c = "" if self.coeff == 1.0 else f"{self.coeff:g}*"
        d = "" if self.dim is None else f", dim={self.dim}"
        return f"{c}GellMann({self.index}, wires={list(self.wires)}{d})"


class Hermitian(Observable):
    """Any Hermitian matrix on ``wires`` (checked, tolerance as for unitaries)."""

    def __init__(self, matrix: Any, wires: object, *, atol: float | None = None) -> None:
        m = as_numeric_tensor(matrix, "matrix").detach().cpu().numpy().astype(np.complex128)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise arg_error("matrix", f"expected a square matrix, got shape {m.shape}")
        if not np.isfinite(m).all():
            raise arg_error("matrix", "contains NaN or inf")
        tol = atol if atol is not None else atol_for(UNITARY_ATOL, torch.float64)
        err = float(np.abs(m - m.conj().T).max())
        tol = max(tol, 1e-8)
        if err > tol:
            raise arg_error("matrix", f"not Hermitian, max |H - H^†| = {err:.3g} > atol {tol:g}")
        self.hmatrix = m
        self.wires = normalize_wires(wires)

    def check_dims(self, dims: tuple[int, ...]) -> None:
        if math.prod(dims) != self.hmatrix.shape[0]:
            raise DimensionError(
                f"argument 'matrix': size {self.hmatrix.shape[0]} does not match wires "
                f"{list(self.wires)} of dimensions {list(dims)}"
            )

    def local_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        self.check_dims(dims)
        return self.hmatrix

    def __repr__(self) -> str:
        return f"Hermitian(shape={self.hmatrix.shape}, wires={list(self.wires)})"


def as_observables(
    obs: Observable | Sequence[Observable], name: str = "observable"
) -> list[Observable]:
    """Normalise one observable or a sequence of them to a list (type-checked)."""
    items = [obs] if isinstance(obs, Observable) else list(obs)
    for o in items:
        if not isinstance(o, Observable):
            raise arg_error(name, f"expected Observable(s), got {type(o).__name__}", QsemTypeError)
    return items
