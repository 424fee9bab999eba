"""Base classes of the operations a :class:`~qsem.circuits.Circuit` holds.

An :class:`Operation` sits on an ordered tuple of wires and carries parameters.
:class:`Gate` subclasses define, once, their matrix (batched, torch-native),
the generator of each parameter (for parameter-shift rules), their adjoint and,
for permutation gates, the basis permutation the engine applies as an index
gather. :class:`Channel` subclasses define Kraus operators.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from qsem.checks import check_wires

from .errors import DimensionError, QsemTypeError, arg_error
from .parameters import Parameter, ParamLike, check_param


def normalize_wires(wires: object, name: str = "wires") -> tuple[int, ...]:
    """Return wires as a tuple of distinct non-negative ints (:func:`qsem.checks.check_wires`)."""
    return check_wires(name, wires)


def as_numeric_tensor(value: Any, name: str) -> torch.Tensor:
    """``torch.as_tensor(value)``, with a clear error for non-numeric input."""
    try:
        # lists of arrays go through NumPy: one copy, no slow per-element conversion
        # (and Python numbers: NumPy keeps them float64 where torch would make float32)
        plain = isinstance(value, (list, tuple, int, float, complex))
        t = torch.as_tensor(np.asarray(value) if plain else value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise arg_error(
            name,
            f"expected numeric values (a tensor, an array or nested lists), got "
            f"{type(value).__name__} ({exc})",
            QsemTypeError,
        ) from None
    if t.dtype == torch.bool:
        raise arg_error(name, "expected numeric values, got bools", QsemTypeError)
    return t


def _fmt_param(p: ParamLike) -> str:
    if isinstance(p, Parameter):
        return repr(p)
    if isinstance(p, torch.Tensor):
        if p.dim() == 1:
            return f"[{p.shape[0]}]"
        return f"{float(p.detach()):.3g}"
    return f"{float(p):.3g}"


class Operation:
    """An operation on ``wires`` with ``params``.

    Subclasses set ``num_params``, ``num_wires`` (``None``: any number) and
    ``wire_dims`` (required dimension per wire; ``None``: any dimension).
    """

    num_params: ClassVar[int] = 0
    num_wires: ClassVar[int | None] = 1
    wire_dims: ClassVar[tuple[int, ...] | None] = None
    #: Short label used by the text drawing; defaults to the class name.
    symbol: ClassVar[str | None] = None

    def __init__(self, *params: ParamLike, wires: object) -> None:
        cls = type(self).__name__
        if len(params) != self.num_params:
            raise arg_error(
                "params", f"{cls} takes {self.num_params} parameter(s), got {len(params)}"
            )
        self.params: tuple[ParamLike, ...] = tuple(
            check_param(p, f"{cls}.params[{i}]") for i, p in enumerate(params)
        )
        self.wires: tuple[int, ...] = normalize_wires(wires)
        if self.num_wires is not None and len(self.wires) != self.num_wires:
            raise arg_error(
                "wires", f"{cls} acts on {self.num_wires} wire(s), got {list(self.wires)}"
            )

    # -- identity -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    def hyperparameters(self) -> dict[str, Any]:
        """Non-parameter settings that change the matrix (e.g. a subspace)."""
        return {}

    def matrix_key(self) -> tuple[Any, ...]:
        """Hashable key of what fixes the matrix as a function of the parameters.

        Two operations with equal keys compute their matrices by the same formula,
        so the engine may evaluate them together with stacked parameters.
        """
        return (type(self), tuple(sorted(self.hyperparameters().items())))

    def structure_key(self) -> tuple[Any, ...]:
        """Hashable key of everything but the parameter values (for plan caching)."""
        return (self.matrix_key(), self.wires)

    def __repr__(self) -> str:
        parts = [_fmt_param(p) for p in self.params]
        parts += [f"{k}={v!r}" for k, v in self.hyperparameters().items()]
        parts.append(f"wires={list(self.wires)}")
        return f"{self.name}({', '.join(parts)})"

    def label(self) -> str:
        """Label for the text drawing."""
        base = self.symbol or self.name
        if self.params:
            return f"{base}({','.join(_fmt_param(p) for p in self.params)})"
        return base

    # -- dims ---------------------------------------------------------------------
    def check_dims(self, dims: tuple[int, ...]) -> None:
        """Raise :class:`DimensionError` unless the operation fits wires of ``dims``."""
        if self.wire_dims is not None and tuple(dims) != tuple(self.wire_dims):
            raise DimensionError(
                f"argument 'wires': {self.name} needs wire dimensions {list(self.wire_dims)}, "
                f"but wires {list(self.wires)} have dimensions {list(dims)}"
            )

    # -- parameters ---------------------------------------------------------------
    def with_params(self, params: Sequence[ParamLike]) -> Operation:
        """A copy of this operation with other parameter values."""
        new = copy.copy(self)
        new.params = tuple(params)
        return new

    @property
    def is_parametrized(self) -> bool:
        return self.num_params > 0

    def batch_size(self) -> int | None:
        sizes = {int(p.shape[0]) for p in self.params if isinstance(p, torch.Tensor) and p.dim()}
        if len(sizes) > 1:
            raise arg_error(
                "params", f"{self.name} has parameters of different batch sizes {sizes}"
            )
        return sizes.pop() if sizes else None


class Gate(Operation):
    """A unitary operation.

    Subclasses implement :meth:`matrix`. Parametrised gates implement
    :meth:`generator` so that ``U(θ) = exp(-i θ G) U(0)`` (for multi-parameter
    gates each parameter's generator is the one its parameter-shift rule needs;
    only its spectrum matters there). Permutation gates implement
    :meth:`permutation` and the engine applies them as index gathers.
    """

    def matrix(
        self,
        params: Sequence[torch.Tensor],
        dims: tuple[int, ...],
        *,
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The gate matrix on its local wires: ``(D, D)``, or ``(B, D, D)`` when batched.

        ``params`` are concrete real tensors of shape ``()`` or ``(B,)``.
        """
        raise NotImplementedError

    def rotation_parts(
        self,
        dims: tuple[int, ...],
        *,
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor | None:
        """``(3, D, D)`` constants with ``U(θ) = g_0 + cos(θ/2) g_1 + sin(θ/2) g_2``.

        Only one-parameter rotations (generator ``G`` with ``G² = P/4``) have them; every
        other gate returns ``None``. The engine evaluates all rotations of a plan that
        share a parameter vector in one call of
        :func:`~qsem.circuits.rotations.rotation_matrix`.
        """
        return None

    def generator(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        """Hermitian generator (complex128) of parameter ``index``."""
        raise NotImplementedError(f"{self.name} has no generator for parameter {index}")

    def spectrum(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        """Eigenvalues of the generator of parameter ``index`` (sorted, float64)."""
        return torch.linalg.eigvalsh(self.generator(index, dims)).real

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        """For permutation gates: ``src`` with ``out[i] = in[src[i]]``; else ``None``."""
        return None

    def shift_rule(self, index: int, dims: tuple[int, ...]) -> list[tuple[float, float]]:
        """Parameter-shift terms ``(coefficient, shift)`` of parameter ``index``.

        Derived from the spectrum of the parameter's generator (see
        :mod:`qsem.circuits.shift`): two terms for eigenvalues ``±1/2``, ``2R``
        terms for ``R`` distinct frequencies.
        """
        from .shift import shift_rule

        return shift_rule(self.spectrum(index, dims))

    def adjoint(self) -> Gate:
        """The inverse gate."""
        return Adjoint(self)

    def concrete_matrix(
        self,
        dims: tuple[int, ...],
        *,
        dtype: torch.dtype = torch.complex128,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Matrix of a gate whose parameters are all concrete (no symbols)."""
        from .parameters import resolve_param

        real = torch.empty((), dtype=dtype).real.dtype
        params = [resolve_param(p, None, dtype=real, device=device) for p in self.params]
        return self.matrix(params, dims, dtype=dtype, device=device)


class Adjoint(Gate):
    """The adjoint (inverse) of a parameter-free gate, or of any gate with concrete params.

    >>> from qsem.circuits.gates import S
    >>> Adjoint(S(wires=0)).concrete_matrix((2,))[1, 1]
    tensor(0.-1.j, dtype=torch.complex128)
    """

    num_wires = None

    def __init__(self, base: Gate) -> None:
        if not isinstance(base, Gate):
            raise arg_error("base", f"expected a Gate, got {type(base).__name__}", QsemTypeError)
        self.base = base
        self.params = base.params
        self.wires = base.wires

    @property
    def name(self) -> str:
        return f"Adjoint({self.base.name})"

    def label(self) -> str:
        return self.base.label() + "†"

    def matrix_key(self) -> tuple[Any, ...]:
        return (Adjoint, self.base.matrix_key())

    def with_params(self, params: Sequence[ParamLike]) -> Operation:
        base = self.base.with_params(params)
        assert isinstance(base, Gate)
        return Adjoint(base)

    @property
    def is_parametrized(self) -> bool:
        return self.base.is_parametrized

    def check_dims(self, dims: tuple[int, ...]) -> None:
        self.base.check_dims(dims)

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        return self.base.matrix(params, dims, dtype=dtype, device=device).mH.resolve_conj()

    def generator(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        return -self.base.generator(index, dims)

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        perm = self.base.permutation(dims)
        return None if perm is None else np.argsort(perm)

    def adjoint(self) -> Gate:
        return self.base


class Channel(Operation):
    """A completely positive trace-preserving map given by Kraus operators.

    Channels written as ``ρ -> Σ_k p_k A_k ρ A_k^†`` (mixed-unitary ones with
    unitaries ``A_k``; amplitude damping with its decay operators) define
    :meth:`mixture` instead; their Kraus operators ``sqrt(p_k) A_k`` follow from
    it, and the engine uses the weights directly, so the map stays linear in
    ``p`` (finite gradients at ``p = 0``).
    """

    def mixture(
        self,
        params: Sequence[torch.Tensor],
        dims: tuple[int, ...],
        *,
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Weights ``(..., m)`` (real) and operators ``(..., m, D, D)``, or ``None``."""
        return None

    def kraus(
        self,
        params: Sequence[torch.Tensor],
        dims: tuple[int, ...],
        *,
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Kraus operators ``(r, D, D)``, or ``(B, r, D, D)`` when a parameter is batched."""
        mix = self.mixture(params, dims, dtype=dtype, device=device)
        if mix is None:
            raise NotImplementedError(f"{self.name} defines neither kraus() nor mixture()")
        weights, unitaries = mix
        return torch.sqrt(weights.clamp(min=0)).to(dtype)[..., None, None] * unitaries


def local_dim(dims: Sequence[int]) -> int:
    return math.prod(dims)
