"""Inputs of the similarity functions: a statevector, a density matrix, a
:class:`~qsem.simulators.State` or a batch of them, read once into one form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.circuits.errors import DimensionError, InvalidStateError, QsemTypeError, arg_error
from qsem.circuits.tolerances import STATE_ATOL, atol_for

from .state import State, check_density_matrix


@dataclass(frozen=True)
class _Input:
    tensor: torch.Tensor
    is_matrix: bool
    dims: tuple[int, ...] | None  # wire dims when known (from a State)

    @property
    def dim(self) -> int:
        return int(self.tensor.shape[-1])

    @property
    def batch_shape(self) -> torch.Size:
        return self.tensor.shape[:-2] if self.is_matrix else self.tensor.shape[:-1]


def _as_input(x: Any, name: str, check: bool) -> _Input:
    """Read a State, tensor, array or object with ``to_state()`` (e.g. ``qsem.tensors.Omega``)
    as a statevector or density-matrix (batch)."""
    if not isinstance(x, (State, torch.Tensor, np.ndarray)) and callable(
        getattr(x, "to_state", None)
    ):
        state = x.to_state()
        if not isinstance(state, State):
            raise arg_error(
                name,
                f"{type(x).__name__}.to_state() returned {type(state).__name__}, not a State",
                QsemTypeError,
            )
        x = state
    if isinstance(x, State):
        if x.mode == "statevector":
            return _Input(x.vector, False, x.dims)
        return _Input(x.density_matrix, True, x.dims)
    if isinstance(x, np.ndarray):
        x = torch.as_tensor(x)
    if not isinstance(x, torch.Tensor):
        raise arg_error(
            name,
            f"expected a statevector or density-matrix tensor, a State or an object with "
            f"to_state(), got {type(x).__name__}",
            QsemTypeError,
        )
    if x.dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = x.to(torch.complex64)
    elif x.dtype == torch.float64:
        x = x.to(torch.complex128)
    elif not x.is_complex():
        raise arg_error(
            name, f"expected a floating-point or complex tensor, got dtype {x.dtype}", QsemTypeError
        )
    if x.dim() == 0 or x.shape[-1] == 0:
        raise arg_error(name, f"expected shape (..., D) or (..., D, D), got {tuple(x.shape)}")
    if not bool(torch.isfinite(torch.view_as_real(x.detach())).all()):
        raise arg_error(name, "contains NaN or inf")
    is_matrix = x.dim() >= 2 and x.shape[-1] == x.shape[-2]
    if is_matrix:
        if check:
            try:
                check_density_matrix(x, name)
            except InvalidStateError as exc:
                hint = ""
                if x.dim() == 2:
                    hint = (
                        f" (a ({x.shape[0]}, {x.shape[1]}) tensor is read as a density matrix; "
                        "for a batch of statevectors pass a State or shape (B, 1, D))"
                    )
                raise InvalidStateError(f"{exc}{hint}") from None
    elif check:
        norms = torch.linalg.vector_norm(x.detach(), dim=-1)
        tol = 10 * atol_for(STATE_ATOL, x.dtype)
        bad = (norms - 1).abs() > tol
        if bool(bad.any()):
            worst = float(norms.flatten()[(norms - 1).abs().flatten().argmax()])
            raise InvalidStateError(
                f"argument '{name}': statevector not normalised, norm {worst:.6g} "
                f"(tolerance {tol:g})"
            )
    return _Input(x, is_matrix, None)


def _broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """Broadcast shapes like torch (``torch.broadcast_shapes`` imports sympy: ~2 s)."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for s in shapes:
        for i, n in enumerate(s, start=ndim - len(s)):
            if n != 1:
                if out[i] not in (1, n):
                    raise ValueError(f"shapes {[tuple(x) for x in shapes]} do not broadcast")
                out[i] = n
    return tuple(out)


def _pair(a: Any, b: Any, check: bool) -> tuple[_Input, _Input]:
    ia, ib = _as_input(a, "a", check), _as_input(b, "b", check)
    if ia.dim != ib.dim:
        raise DimensionError(
            f"argument 'b': dimension {ib.dim} does not match dimension {ia.dim} of 'a'"
        )
    if ia.dims is not None and ib.dims is not None and ia.dims != ib.dims:
        raise DimensionError(
            f"argument 'b': wire dims {list(ib.dims)} do not match {list(ia.dims)} of 'a'"
        )
    try:
        _broadcast_shapes(ia.batch_shape, ib.batch_shape)
    except ValueError:
        raise arg_error(
            "b",
            f"batch shape {tuple(ib.batch_shape)} does not broadcast with "
            f"{tuple(ia.batch_shape)} of 'a'",
        ) from None
    dtype = torch.promote_types(ia.tensor.dtype, ib.tensor.dtype)
    if ia.tensor.device != ib.tensor.device:
        raise arg_error("b", f"on device {ib.tensor.device}, 'a' is on {ia.tensor.device}")
    return (
        _Input(ia.tensor.to(dtype), ia.is_matrix, ia.dims),
        _Input(ib.tensor.to(dtype), ib.is_matrix, ib.dims),
    )


def _expect(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``<v|m|v>`` (real part), broadcasting leading axes."""
    return (v.conj()[..., None, :] @ m @ v[..., :, None])[..., 0, 0].real


def _dm(x: _Input) -> torch.Tensor:
    t = x.tensor
    return t if x.is_matrix else t[..., :, None] * t.conj()[..., None, :]
