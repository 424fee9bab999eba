"""The gate library: every gate defined once, for every wire dimension it supports.

Conventions: wire 0 of a multi-wire gate is the most significant index of its
local matrix. Rotation gates are ``R(θ) = exp(-i θ G)`` with a Hermitian
generator ``G``; for gates whose generator satisfies ``G² = P/4`` (``P`` the
projector on the support of ``G``) the matrix is

.. math:: R(θ) = (I - P) + \\cos(θ/2) P - 2i \\sin(θ/2) G .

Qudit gates act on any dimension ``d`` (qutrits are ``d = 3``):
``Shift |j> = |j+1 mod d>``, ``Clock |j> = ω^j |j>`` with ``ω = e^{2πi/d}``,
``Fourier |j> = d^{-1/2} Σ_k ω^{jk} |k>``, ``Add |a, b> = |a, a+b mod d_b>``.
The qutrit names (``TShift``, ``TClock``, ``THadamard``, ``TAdd``,
``TSWAP``, ``TRX``, ``TRY``, ``TRZ``) are these same classes. PennyLane's
``qml.THadamard`` is ``-i`` times qsem's ``THadamard``/``Fourier`` (a global phase) and
takes an optional two-level ``subspace``: :class:`PennyLaneTHadamard` is that gate,
PennyLane's matrix under PennyLane's arguments, so a PennyLane qutrit circuit
round-trips exactly (``from_pennylane`` maps ``qml.THadamard`` to it and
``to_pennylane`` maps it back).

>>> import torch
>>> RY(torch.tensor(torch.pi), wires=0).concrete_matrix((2,)).real.round()
tensor([[ 0., -1.],
        [ 1.,  0.]], dtype=torch.float64)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .errors import DimensionError, NotUnitaryError, arg_error
from .operations import Adjoint, Gate, as_numeric_tensor
from .rotations import (
    RX,
    RY,
    RZ,
    TRX,
    TRY,
    TRZ,
    U3,
    PhaseShift,
    SubspaceRX,
    SubspaceRY,
    SubspaceRZ,
    _from_key,
    const,
)
from .rotations import _neg as _neg  # re-exported, as the private classes below
from .rotations import _QubitRotation as _QubitRotation
from .rotations import _Rotation as _Rotation
from .rotations import _SubspaceRotation as _SubspaceRotation  # qiskit_export, pennylane_io
from .tolerances import UNITARY_ATOL, atol_for

__all__ = [
    "CNOT",
    "CRX",
    "CRY",
    "CRZ",
    "CSWAP",
    "CZ",
    "RX",
    "RY",
    "RZ",
    "SWAP",
    "TRX",
    "TRY",
    "TRZ",
    "TSWAP",
    "U3",
    "Add",
    "Adjoint",
    "Clock",
    "Controlled",
    "Fourier",
    "H",
    "Identity",
    "PennyLaneTHadamard",
    "PhaseShift",
    "S",
    "Shift",
    "SubspaceRX",
    "SubspaceRY",
    "SubspaceRZ",
    "T",
    "TAdd",
    "TClock",
    "THadamard",
    "TShift",
    "Toffoli",
    "Unitary",
    "X",
    "Y",
    "Z",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Fixed gates
# ---------------------------------------------------------------------------------------------
class _FixedGate(Gate):
    """A parameter-free gate given by a constant matrix ``_np_matrix(dims)``."""

    num_params = 0

    def _np_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        perm = self.permutation(dims)
        if perm is None:
            raise NotImplementedError
        mat = np.zeros((len(perm), len(perm)), dtype=np.complex128)
        mat[np.arange(len(perm)), perm] = 1.0
        return mat

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        return const(
            _fixed_matrix, type(self), self._key(), tuple(dims), dtype=dtype, device=device
        )

    def _key(self) -> tuple[Any, ...]:
        return tuple(sorted(self.hyperparameters().items()))


def _fixed_matrix(
    cls: type[_FixedGate], key: tuple[Any, ...], dims: tuple[int, ...]
) -> torch.Tensor:
    return torch.from_numpy(_from_key(cls, key)._np_matrix(dims))


def _digits(dims: tuple[int, ...]) -> np.ndarray:
    """All basis states as digit rows, wire 0 most significant: shape (D, len(dims))."""
    return np.array(list(itertools.product(*[range(d) for d in dims])), dtype=np.int64).reshape(
        -1, len(dims)
    )


def _ravel(digits: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    return np.ravel_multi_index(tuple(digits.T), dims)


def _perm_from_map(dims: tuple[int, ...], fn: Any) -> np.ndarray:
    """Gather indices of the basis map ``|digits> -> |fn(digits)>``."""
    digits = _digits(dims)
    dest = _ravel(fn(digits.copy()), dims)
    src = np.empty_like(dest)
    src[dest] = np.arange(len(dest))
    return src


class Identity(_FixedGate):
    """The identity on one wire of any dimension."""

    symbol = "I"

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        return np.arange(dims[0])

    def adjoint(self) -> Gate:
        return self


class Shift(_FixedGate):
    """Qudit shift ``|j> -> |j+1 mod d>`` (any d; ``TShift`` on qutrits)."""

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        d = dims[0]
        return (np.arange(d) - 1) % d


class X(Shift):
    """Pauli X (the d = 2 shift)."""

    wire_dims = (2,)

    def adjoint(self) -> Gate:
        return self


class Clock(_FixedGate):
    """Qudit clock ``|j> -> ω^j |j>``, ``ω = e^{2πi/d}`` (any d; ``TClock`` on qutrits)."""

    def _np_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        d = dims[0]
        return np.diag(np.exp(2j * np.pi * np.arange(d) / d))


class Z(Clock):
    """Pauli Z (the d = 2 clock)."""

    wire_dims = (2,)

    def adjoint(self) -> Gate:
        return self


class Fourier(_FixedGate):
    """Qudit Fourier gate ``|j> -> d^{-1/2} Σ_k ω^{jk} |k>`` (any d; ``THadamard``).

    On qubits it equals ``H``. PennyLane's ``THadamard`` (:class:`PennyLaneTHadamard`)
    is this matrix times ``-i``.
    """

    symbol = "F"

    def _np_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        d = dims[0]
        j = np.arange(d)
        return np.exp(2j * np.pi * np.outer(j, j) / d) / np.sqrt(d)


class PennyLaneTHadamard(_FixedGate):
    """PennyLane's qutrit Hadamard ``qml.THadamard``, with PennyLane's matrix and arguments.

    Without ``subspace`` it is ``-i F`` (``F`` the qutrit :class:`Fourier` gate):
    ``THadamard |j> = (-i/√3) Σ_k ω^{jk} |k>``, ``ω = e^{2πi/3}``. With
    ``subspace=(j, k)`` it is the qubit Hadamard on levels ``j, k`` and the identity on
    the third level. Qutrit wires only.

    >>> import torch
    >>> m = PennyLaneTHadamard(wires=0).concrete_matrix((3,))
    >>> bool(torch.allclose(m, -1j * Fourier(wires=0).concrete_matrix((3,))))
    True
    """

    wire_dims = (3,)
    symbol = "TH"

    def __init__(self, wires: object, subspace: Sequence[int] | None = None) -> None:
        super().__init__(wires=wires)
        if subspace is not None:
            sub = tuple(subspace) if isinstance(subspace, Sequence) else ()
            ok = len(sub) == 2 and all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sub
            )
            if not ok or sub[0] == sub[1] or min(sub) < 0 or max(sub) > 2:
                raise arg_error(
                    "subspace", f"must be None or two distinct levels of 0, 1, 2, got {subspace!r}"
                )
            subspace = (int(min(sub)), int(max(sub)))
        self.subspace: tuple[int, int] | None = subspace

    def hyperparameters(self) -> dict[str, Any]:
        return {"subspace": self.subspace}

    def _np_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        if self.subspace is None:
            levels = np.arange(3)
            return -1j * np.exp(2j * np.pi * np.outer(levels, levels) / 3) / np.sqrt(3)
        pair = list(self.subspace)
        mat = np.eye(3, dtype=np.complex128)
        mat[np.ix_(pair, pair)] = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
        return mat

    def adjoint(self) -> Gate:
        return self if self.subspace is not None else Adjoint(self)


class H(Fourier):
    """Hadamard."""

    wire_dims = (2,)
    symbol = "H"

    def adjoint(self) -> Gate:
        return self


class Y(_FixedGate):
    """Pauli Y."""

    wire_dims = (2,)

    def _np_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        return np.array([[0, -1j], [1j, 0]])

    def adjoint(self) -> Gate:
        return self


class S(_FixedGate):
    """``S = diag(1, i)``."""

    wire_dims = (2,)

    def _np_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        return np.diag([1, 1j])


class T(_FixedGate):
    """``T = diag(1, e^{iπ/4})``."""

    wire_dims = (2,)

    def _np_matrix(self, dims: tuple[int, ...]) -> np.ndarray:
        return np.diag([1, np.exp(1j * np.pi / 4)])


class SWAP(_FixedGate):
    """Swap two wires of equal dimension (any d; ``TSWAP`` on qutrits)."""

    num_wires = 2

    def check_dims(self, dims: tuple[int, ...]) -> None:
        if dims[0] != dims[1]:
            raise DimensionError(
                f"argument 'wires': SWAP needs wires of equal dimension, got {list(dims)} "
                f"on wires {list(self.wires)}"
            )

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        return _perm_from_map(dims, lambda g: g[:, ::-1])

    def adjoint(self) -> Gate:
        return self


class Add(_FixedGate):
    """``|a, b> -> |a, (a + b) mod d_b>`` on (control, target) of any dims (``TAdd``, CSUM)."""

    num_wires = 2

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        def fn(g: np.ndarray) -> np.ndarray:
            g[:, 1] = (g[:, 0] + g[:, 1]) % dims[1]
            return g

        return _perm_from_map(dims, fn)


class CNOT(Add):
    """Controlled NOT (the qubit ``Add``)."""

    wire_dims = (2, 2)

    def adjoint(self) -> Gate:
        return self


TShift, TClock, THadamard, TAdd, TSWAP = Shift, Clock, Fourier, Add, SWAP


class Unitary(Gate):
    """A user-given unitary on ``wires``: a ``(D, D)`` or batched ``(B, D, D)`` tensor.

    Checked for unitarity (``‖U^†U - I‖_max <= atol``; atol 1e-5 in single and
    1e-10 in double precision, or ``atol=``).
    """

    num_wires = None

    def __init__(self, matrix: Any, wires: object, *, atol: float | None = None) -> None:
        super().__init__(wires=wires)
        mat = as_numeric_tensor(matrix, "matrix").resolve_conj()  # a conj view (U.mH) too
        if not mat.is_complex():
            mat = mat.to(torch.complex128)
        if mat.dim() not in (2, 3) or mat.shape[-1] != mat.shape[-2]:
            raise arg_error("matrix", f"expected shape (D, D) or (B, D, D), got {tuple(mat.shape)}")
        if not bool(torch.isfinite(torch.view_as_real(mat.detach())).all()):
            raise arg_error("matrix", "contains NaN or inf")
        tol = atol if atol is not None else atol_for(UNITARY_ATOL, mat.dtype)
        eye = torch.eye(mat.shape[-1], dtype=mat.dtype)
        err = float((mat.detach().mH @ mat.detach() - eye).abs().max())
        if err > tol:
            raise NotUnitaryError(
                f"argument 'matrix': not unitary, max |U^†U - I| = {err:.3g} > atol {tol:g}"
            )
        self.unitary = mat

    def check_dims(self, dims: tuple[int, ...]) -> None:
        if math.prod(dims) != self.unitary.shape[-1]:
            raise DimensionError(
                f"argument 'matrix': size {self.unitary.shape[-1]} does not match wires "
                f"{list(self.wires)} of dimensions {list(dims)} (product {math.prod(dims)})"
            )

    def batch_size(self) -> int | None:
        return int(self.unitary.shape[0]) if self.unitary.dim() == 3 else None

    def matrix_key(self) -> tuple[Any, ...]:
        return (Unitary, id(self.unitary))

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        return self.unitary.to(dtype=dtype, device=device)

    def adjoint(self) -> Gate:
        return Unitary(self.unitary.mH, wires=self.wires, atol=math.inf)

    def label(self) -> str:
        return "U"


# Controlled gates live in :mod:`qsem.circuits.controlled` (imported last: they build on
# the gates above).
from .controlled import CRX, CRY, CRZ, CSWAP, CZ, Controlled, Toffoli  # noqa: E402
from .controlled import _NamedControlled as _NamedControlled  # noqa: E402  (serialize)

_ = Adjoint  # re-exported
