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

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import DimensionError, NotUnitaryError, QsemTypeError, arg_error
from .operations import Adjoint, Gate, Operation, as_numeric_tensor, normalize_wires
from .parameters import Parameter, ParamLike
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


def _neg(p: ParamLike) -> ParamLike:
    if isinstance(p, Parameter):
        return -p
    return -p


@functools.lru_cache(maxsize=4096)
def _const(key: tuple[Any, ...], dtype: torch.dtype, device: str) -> torch.Tensor:
    """Cache constant matrices: key = (builder, args...)."""
    builder, *args = key
    return builder(*args).to(dtype=dtype, device=device)


def const(builder: Any, *args: Any, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """A cached constant tensor ``builder(*args)`` on ``dtype``/``device``."""
    return _const((builder, *args), dtype, str(device) if device is not None else "cpu")


# ---------------------------------------------------------------------------------------------
# Rotations exp(-i θ G) with G² = P/4
# ---------------------------------------------------------------------------------------------
class _Rotation(Gate):
    """Base of rotations whose generator squares to a quarter projector."""

    num_params = 1

    def _generator_np(self, dims: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def generator(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        if index != 0:
            raise arg_error("index", f"{self.name} has one parameter, got index {index}")
        return torch.from_numpy(self._generator_np(tuple(dims)))

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        dims = tuple(dims)
        g = const(_rotation_parts, type(self), self._key(), dims, dtype=dtype, device=device)
        # g[0] = I - P, g[1] = P, g[2] = -2i G
        return _RotationMatrix.apply(params[0], g)

    def adjoint(self) -> Gate:
        return self.with_params([_neg(self.params[0])])  # type: ignore[return-value]

    def _key(self) -> tuple[Any, ...]:
        return ()


class _RotationMatrix(torch.autograd.Function):
    """``U(θ) = g0 + cos(θ/2) g1 + sin(θ/2) g2`` for θ of any shape, as ONE autograd node.

    Backward: ``dU/dθ = (-sin(θ/2) g1 + cos(θ/2) g2) / 2`` and, θ being real,
    ``∂L/∂θ = Re Σ_ij conj(dU/dθ)_ij · grad_ij`` (PyTorch's conjugate convention).
    Built once per group of gates per step, so the node count matters more than flops.
    """

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        half = (theta * 0.5)[..., None, None]
        c, s = torch.cos(half), torch.sin(half)
        ctx.save_for_backward(c, s, g)
        return g[0] + c * g[1] + s * g[2]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        c, s, g = ctx.saved_tensors
        d_u = 0.5 * (c * g[2] - s * g[1])
        return (d_u.conj() * grad).real.sum((-2, -1)), None


def _from_key(cls: type[Gate], key: tuple[Any, ...]) -> Any:
    """A bare instance of ``cls`` carrying only the attributes in ``key`` (for constants)."""
    gate = cls.__new__(cls)
    for name, value in key:
        setattr(gate, name, value)
    return gate


def _rotation_parts(
    cls: type[_Rotation], key: tuple[Any, ...], dims: tuple[int, ...]
) -> torch.Tensor:
    gen = _from_key(cls, key)._generator_np(dims)
    proj = 4 * gen @ gen
    eye = np.eye(gen.shape[0])
    return torch.from_numpy(np.stack([eye - proj, proj, -2j * gen]).astype(np.complex128))


class _SubspaceRotation(_Rotation):
    """Rotation on the two-level subspace ``(j, k)`` of one qudit."""

    num_wires = 1
    _pauli: ClassVar[str] = "x"

    def __init__(self, theta: ParamLike, wires: object, subspace: Sequence[int] = (0, 1)) -> None:
        super().__init__(theta, wires=wires)
        if (
            not isinstance(subspace, Sequence)
            or isinstance(subspace, str)
            or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in subspace
            )
        ):
            raise arg_error(
                "subspace",
                f"expected two distinct levels (j, k) as ints, got {subspace!r}",
                QsemTypeError,
            )
        sub = tuple(int(s) for s in subspace)
        if len(sub) != 2 or sub[0] == sub[1] or min(sub) < 0:
            raise arg_error("subspace", f"must be two distinct levels (j, k), got {subspace!r}")
        self.subspace = (min(sub), max(sub))

    def hyperparameters(self) -> dict[str, Any]:
        return {"subspace": self.subspace}

    def _key(self) -> tuple[Any, ...]:
        return (("subspace", self.subspace),)

    def label(self) -> str:
        base = super().label()
        if self.subspace == (0, 1):
            return base
        j, k = self.subspace
        return base.replace("(", f"{j}{k}(", 1)

    def check_dims(self, dims: tuple[int, ...]) -> None:
        super().check_dims(dims)
        if self.subspace[1] >= dims[0]:
            raise DimensionError(
                f"argument 'subspace': level {self.subspace[1]} does not exist on wire "
                f"{self.wires[0]} of dimension {dims[0]}"
            )

    def _generator_np(self, dims: tuple[int, ...]) -> np.ndarray:
        j, k = self.subspace
        g = np.zeros((dims[0], dims[0]), dtype=np.complex128)
        if self._pauli == "x":
            g[j, k] = g[k, j] = 0.5
        elif self._pauli == "y":
            g[j, k], g[k, j] = -0.5j, 0.5j
        else:
            g[j, j], g[k, k] = 0.5, -0.5
        return g


class SubspaceRX(_SubspaceRotation):
    """``exp(-i θ σ_x^{(jk)}/2)`` on levels ``(j, k)`` of a qudit (any d); alias ``TRX``."""

    _pauli = "x"
    symbol = "RX"


class SubspaceRY(_SubspaceRotation):
    """``exp(-i θ σ_y^{(jk)}/2)`` on levels ``(j, k)`` of a qudit (any d); alias ``TRY``."""

    _pauli = "y"
    symbol = "RY"


class SubspaceRZ(_SubspaceRotation):
    """``exp(-i θ σ_z^{(jk)}/2)`` on levels ``(j, k)`` of a qudit (any d); alias ``TRZ``."""

    _pauli = "z"
    symbol = "RZ"


TRX, TRY, TRZ = SubspaceRX, SubspaceRY, SubspaceRZ


class _QubitRotation:
    """Mixin: a qubit rotation is the subspace rotation on (0, 1) of a d = 2 wire."""

    wire_dims: ClassVar[tuple[int, ...] | None] = (2,)
    wires: tuple[int, ...]

    def __init__(self, theta: ParamLike, wires: object) -> None:
        super().__init__(theta, wires=wires, subspace=(0, 1))  # type: ignore[call-arg]

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def with_params(self, params: Sequence[ParamLike]):
        return type(self)(params[0], wires=self.wires)


class RX(_QubitRotation, SubspaceRX):
    """``RX(θ) = exp(-i θ X / 2)``."""


class RY(_QubitRotation, SubspaceRY):
    """``RY(θ) = exp(-i θ Y / 2)``."""


class RZ(_QubitRotation, SubspaceRZ):
    """``RZ(θ) = exp(-i θ Z / 2) = diag(e^{-iθ/2}, e^{iθ/2})``."""


class PhaseShift(Gate):
    """``PhaseShift(φ) = diag(1, e^{iφ}) = exp(-i φ G)`` with ``G = -|1><1|``."""

    num_params = 1
    wire_dims = (2,)
    symbol = "P"

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        phi = params[0]
        one = torch.ones_like(phi)
        diag = torch.stack([torch.complex(one, torch.zeros_like(phi)), torch.polar(one, phi)], -1)
        return torch.diag_embed(diag.to(dtype))

    def generator(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        return torch.tensor([[0, 0], [0, -1]], dtype=torch.complex128)

    def adjoint(self) -> Gate:
        return PhaseShift(_neg(self.params[0]), wires=self.wires)


class U3(Gate):
    """Qiskit's ``U(θ, φ, λ) = PhaseShift(φ) · RY(θ) · PhaseShift(λ)``.

    .. math:: \\begin{pmatrix} \\cos\\frac θ2 & -e^{iλ}\\sin\\frac θ2 \\\\
              e^{iφ}\\sin\\frac θ2 & e^{i(φ+λ)}\\cos\\frac θ2 \\end{pmatrix}
    """

    num_params = 3
    wire_dims = (2,)

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        theta, phi, lam = torch.broadcast_tensors(*params)
        c, s = torch.cos(theta / 2), torch.sin(theta / 2)
        one = torch.ones_like(c)
        m00 = torch.complex(c, torch.zeros_like(c))
        m01 = -torch.polar(one, lam) * s
        m10 = torch.polar(one, phi) * s
        m11 = torch.polar(one, phi + lam) * c
        return torch.stack([m00, m01, m10, m11], -1).reshape(*c.shape, 2, 2).to(dtype)

    def generator(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        if index == 0:
            return torch.tensor([[0, -0.5j], [0.5j, 0]], dtype=torch.complex128)
        if index in (1, 2):
            return torch.tensor([[0, 0], [0, -1]], dtype=torch.complex128)
        raise arg_error("index", f"U3 has three parameters, got index {index}")

    def adjoint(self) -> Gate:
        theta, phi, lam = self.params
        return U3(_neg(theta), _neg(lam), _neg(phi), wires=self.wires)


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


# ---------------------------------------------------------------------------------------------
# Controlled gates (any control dims, mixed with any target dims)
# ---------------------------------------------------------------------------------------------
class Controlled(Gate):
    """``base`` applied when ``control_wires`` are in ``control_values`` (default all 1).

    Controls and target may have any dimensions: a qubit controlling a qutrit
    ``SWAP`` is ``Controlled(SWAP(wires=[1, 2]), control_wires=[0])``.
    Local wire order is ``control_wires + base.wires``.
    """

    num_wires = None

    def __init__(
        self,
        base: Gate,
        control_wires: object,
        control_values: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(base, Gate):
            raise arg_error("base", f"expected a Gate, got {type(base).__name__}", QsemTypeError)
        ctrl = normalize_wires(control_wires, "control_wires")
        if set(ctrl) & set(base.wires):
            raise arg_error(
                "control_wires", f"{list(ctrl)} overlap the target wires {list(base.wires)}"
            )
        if isinstance(control_values, (int, np.integer)) and not isinstance(control_values, bool):
            control_values = [control_values]
        if control_values is not None and (
            not isinstance(control_values, Sequence)
            or isinstance(control_values, str)
            or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in control_values
            )
        ):
            raise arg_error(
                "control_values",
                f"expected {len(ctrl)} integer level(s), one per control wire, "
                f"got {control_values!r}",
                QsemTypeError,
            )
        values = (
            tuple(int(v) for v in control_values)
            if control_values is not None
            else (1,) * len(ctrl)
        )
        if len(values) != len(ctrl) or min(values) < 0:
            raise arg_error(
                "control_values", f"need {len(ctrl)} non-negative values, got {control_values!r}"
            )
        self.base = base
        self.control_wires = ctrl
        self.control_values = values
        self.params = base.params
        self.wires = ctrl + base.wires

    @property
    def num_params(self) -> int:  # type: ignore[override]
        return self.base.num_params

    @property
    def name(self) -> str:
        return f"C({self.base.name})"

    def label(self) -> str:
        return self.base.label()

    def hyperparameters(self) -> dict[str, Any]:
        return {"control_values": self.control_values, **self.base.hyperparameters()}

    def matrix_key(self) -> tuple[Any, ...]:
        return (type(self), len(self.control_wires), self.control_values, self.base.matrix_key())

    def with_params(self, params: Sequence[ParamLike]) -> Operation:
        base = self.base.with_params(params)
        new = Controlled.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.base = base  # type: ignore[assignment]
        new.params = base.params
        return new

    def check_dims(self, dims: tuple[int, ...]) -> None:
        nc = len(self.control_wires)
        for w, v, d in zip(self.control_wires, self.control_values, dims[:nc], strict=True):
            if v >= d:
                raise DimensionError(
                    f"argument 'control_values': value {v} does not exist on control wire {w} "
                    f"of dimension {d}"
                )
        self.base.check_dims(tuple(dims[nc:]))

    def _block(self, dims: tuple[int, ...]) -> tuple[int, int, int]:
        nc = len(self.control_wires)
        cdims = tuple(dims[:nc])
        dt = math.prod(dims[nc:])
        start = int(np.ravel_multi_index(self.control_values, cdims)) * dt
        return start, dt, math.prod(dims)

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        dims = tuple(dims)
        nc = len(self.control_wires)
        u = self.base.matrix(params, dims[nc:], dtype=dtype, device=device)
        start, dt, dtot = self._block(dims)
        full = torch.eye(dtot, dtype=dtype, device=u.device).expand(*u.shape[:-2], dtot, dtot)
        full = full.clone()
        full[..., start : start + dt, start : start + dt] = u
        return full

    def generator(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        dims = tuple(dims)
        g = self.base.generator(index, dims[len(self.control_wires) :])
        start, dt, dtot = self._block(dims)
        full = torch.zeros(dtot, dtot, dtype=torch.complex128)
        full[start : start + dt, start : start + dt] = g
        return full

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        dims = tuple(dims)
        base = self.base.permutation(dims[len(self.control_wires) :])
        if base is None:
            return None
        start, dt, dtot = self._block(dims)
        perm = np.arange(dtot)
        perm[start : start + dt] = start + base
        return perm

    def adjoint(self) -> Gate:
        return Controlled(self.base.adjoint(), self.control_wires, self.control_values)


class _NamedControlled(Controlled):
    """A controlled gate with a conventional name; first wire(s) control."""

    n_controls: ClassVar[int] = 1
    n_params: ClassVar[int] = 0

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        raise NotImplementedError

    def __init__(self, *params: ParamLike, wires: object) -> None:
        if len(params) != self.n_params:
            raise arg_error(
                "params",
                f"{type(self).__name__} takes {self.n_params} parameter(s), got {len(params)}",
            )
        w = normalize_wires(wires)
        if len(w) != self.n_controls + self._n_targets():
            raise arg_error(
                "wires",
                f"{type(self).__name__} acts on "
                f"{self.n_controls + self._n_targets()} wires, got {list(w)}",
            )
        super().__init__(self._base(params, w[self.n_controls :]), w[: self.n_controls])

    def _n_targets(self) -> int:
        return 1

    @property
    def name(self) -> str:
        return type(self).__name__

    def with_params(self, params: Sequence[ParamLike]) -> Operation:
        return type(self)(*params, wires=self.wires)

    def adjoint(self) -> Gate:
        if self.num_params:
            base_adj = self.base.adjoint()
            return type(self)(*base_adj.params, wires=self.wires)
        return self


class CZ(_NamedControlled):
    """Controlled Z."""

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return Z(wires=target)


class CRX(_NamedControlled):
    """Controlled RX(θ)."""

    n_params = 1

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return RX(params[0], wires=target)


class CRY(_NamedControlled):
    """Controlled RY(θ)."""

    n_params = 1

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return RY(params[0], wires=target)


class CRZ(_NamedControlled):
    """Controlled RZ(θ)."""

    n_params = 1

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return RZ(params[0], wires=target)


class CSWAP(_NamedControlled):
    """Fredkin gate: controlled SWAP (any equal target dims; control of any dim, value 1)."""

    def _n_targets(self) -> int:
        return 2

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return SWAP(wires=target)


class Toffoli(_NamedControlled):
    """Doubly controlled X."""

    n_controls = 2

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return X(wires=target)


_ = Adjoint  # re-exported
