"""Rotation gates ``R(θ) = exp(-i θ G)`` (a generator with ``G² = P/4``): the subspace
rotations of a qudit (``SubspaceRX/RY/RZ``, alias ``TRX/TRY/TRZ``), the qubit ``RX``,
``RY``, ``RZ``, ``PhaseShift`` and ``U3``; and the constant-matrix cache every gate uses.

All of them are importable from :mod:`qsem.circuits.gates` and :mod:`qsem.circuits`.

>>> import torch
>>> RY(torch.tensor(torch.pi), wires=0).concrete_matrix((2,)).real.round() + 0.0
tensor([[ 0., -1.],
        [ 1.,  0.]], dtype=torch.float64)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import DimensionError, QsemTypeError, arg_error
from .operations import Gate
from .parameters import Parameter, ParamLike

__all__ = [
    "RX",
    "RY",
    "RZ",
    "TRX",
    "TRY",
    "TRZ",
    "U3",
    "PhaseShift",
    "SubspaceRX",
    "SubspaceRY",
    "SubspaceRZ",
    "rotation_matrix",
]


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

    def rotation_parts(self, dims, *, dtype=torch.complex64, device=None):
        # g[0] = I - P, g[1] = P, g[2] = -2i G
        return const(
            _rotation_parts, type(self), self._key(), tuple(dims), dtype=dtype, device=device
        )

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        return rotation_matrix(params[0], self.rotation_parts(dims, dtype=dtype, device=device))

    def adjoint(self) -> Gate:
        return self.with_params([_neg(self.params[0])])  # type: ignore[return-value]

    def _key(self) -> tuple[Any, ...]:
        return ()


class _RotationMatrix(torch.autograd.Function):
    """``U(θ) = g0 + cos(θ/2) g1 + sin(θ/2) g2`` for θ of any shape, as ONE autograd node.

    Backward: ``dU/dθ = (-sin(θ/2) g1 + cos(θ/2) g2) / 2`` and, θ being real,
    ``∂L/∂θ = Re Σ_ij conj(dU/dθ)_ij · grad_ij`` (PyTorch's conjugate convention).
    Built once per group of gates per step, so the node count matters more than flops.
    Under ``create_graph=True`` (grad mode on inside the backward) the backward
    recomputes ``cos``/``sin`` from the saved θ, since the forward's values carry no
    graph, so it is itself differentiable: second derivatives (Hessians through
    backprop) are exact; a plain backward reuses the forward's values.
    """

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        half = (theta * 0.5)[..., None, None]
        c, s = torch.cos(half), torch.sin(half)
        ctx.save_for_backward(theta, c, s, g)
        return g[0] + c * g[1] + s * g[2]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        theta, c, s, g = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiable in θ
            half = (theta * 0.5)[..., None, None]
            c, s = torch.cos(half), torch.sin(half)
        d_u = 0.5 * (c * g[2] - s * g[1])
        return (d_u.conj() * grad).real.sum((-2, -1)), None


def rotation_matrix(theta: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """``g_0 + cos(θ/2) g_1 + sin(θ/2) g_2`` from ``parts`` ``(3, ..., d, d)`` (one autograd node).

    ``θ`` ``(..., K)`` with ``parts`` ``(3, K, d, d)`` evaluates ``K`` different rotations
    (each with its own constants) at once: ``(..., K, d, d)``.

    >>> p = RY(0.0, wires=0).rotation_parts((2,), dtype=torch.complex128)
    >>> rotation_matrix(torch.tensor(torch.pi, dtype=torch.float64), p).real.round()
    tensor([[ 0., -1.],
            [ 1.,  0.]], dtype=torch.float64)
    """
    return _RotationMatrix.apply(theta, parts)


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
