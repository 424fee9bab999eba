"""Shared checks and the common base of the typed tensors (:mod:`qsem.tensors`)."""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from qsem.circuits.errors import (
    DimensionError,
    QsemTypeError,
    arg_error,
)

#: Tolerance of the normalisation checks (sums to 1, non-negative), per real dtype.
NORM_ATOL = {
    torch.float16: 1e-2,
    torch.bfloat16: 2e-2,
    torch.float32: 1e-5,
    torch.float64: 1e-9,
}

T = TypeVar("T", bound="_Typed")


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def _atol(dtype: torch.dtype, atol: float | None) -> float:
    return float(atol) if atol is not None else NORM_ATOL.get(_real_dtype(dtype), 1e-9)


def _tensor(value: Any, name: str, *, complex_: bool | None = False) -> torch.Tensor:
    """A floating tensor (real when ``complex_`` is False, complex when True, either if None)."""
    if not isinstance(value, torch.Tensor):
        raise arg_error(name, f"expected a torch.Tensor, got {type(value).__name__}", QsemTypeError)
    if complex_ is True and not value.is_complex():
        raise arg_error(name, f"must be a complex tensor, got {value.dtype}", QsemTypeError)
    if complex_ is False and not value.dtype.is_floating_point:
        raise arg_error(name, f"must be a real floating tensor, got {value.dtype}", QsemTypeError)
    if complex_ is None and not (value.dtype.is_floating_point or value.is_complex()):
        raise arg_error(
            name, f"must be a floating or complex tensor, got {value.dtype}", QsemTypeError
        )
    return value


def _check_finite(t: torch.Tensor, name: str) -> None:
    d = t.detach()
    if not bool(torch.isfinite(torch.view_as_real(d) if d.is_complex() else d).all()):
        raise arg_error(name, "contains NaN or inf")


def _check_distribution(
    t: torch.Tensor, name: str, dims: tuple[int, ...], atol: float | None, what: str
) -> None:
    """Non-negative and summing to 1 over ``dims`` (within the dtype's tolerance)."""
    _check_finite(t, name)
    tol = _atol(t.dtype, atol)
    d = t.detach()
    low = float(d.min()) if d.numel() else 0.0
    if low < -tol:
        raise arg_error(name, f"{what} must be non-negative, found {low:.3g} (tol {tol:g})")
    sums = d.sum(dim=dims)
    err = (sums - 1).abs()
    if err.numel() and float(err.max()) > tol:
        idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
        raise arg_error(
            name,
            f"{what} must sum to 1; at index {idx} the sum is {float(sums[idx]):.6g} (tol {tol:g})",
        )


def _size_check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise arg_error(name, msg, DimensionError)


class _Typed:
    """Common behaviour: ``data``, ``axes``, sizes by axis name, ``detach``/``to``."""

    axes: tuple[str, ...]
    data: torch.Tensor

    def _copy(self: T, data: torch.Tensor) -> T:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.data = data
        return new

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def sizes(self) -> dict[str, int]:
        """Axis name -> size."""
        return dict(zip(self.axes, self.data.shape, strict=True))

    def size(self, axis: str) -> int:
        """The size of the named axis (``"B"``, ``"L"``, ``"S"``, ...)."""
        if axis not in self.axes:
            raise arg_error(
                "axis", f"{type(self).__name__} has axes {list(self.axes)}, not {axis!r}"
            )
        return int(self.data.shape[self.axes.index(axis)])

    def detach(self: T) -> T:
        return self._copy(self.data.detach())

    def to(self: T, *args: Any, **kwargs: Any) -> T:
        """``tensor.to(...)`` on the data (device or dtype of the same kind)."""
        data = self.data.to(*args, **kwargs)
        if data.is_complex() != self.data.is_complex():
            raise arg_error("dtype", f"{type(self).__name__} keeps its real/complex kind")
        return self._copy(data)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{a}={n}" for a, n in self.sizes.items())
        return f"{type(self).__name__}({sizes}, dtype={self.data.dtype})"


def _weights(
    w: Any, name: str, shape: tuple[int, ...], ref: torch.Tensor, check: bool = True
) -> torch.Tensor:
    """Weights broadcastable to ``shape``, non-negative, summing to 1 over the last axis
    (``check=False``: the values are not checked, only the shape)."""
    t = _tensor(w, name)
    try:
        t = torch.broadcast_to(t, shape)
    except RuntimeError:
        raise arg_error(
            name, f"shape {tuple(t.shape)} does not broadcast to {shape}", DimensionError
        ) from None
    if check:
        _check_distribution(t, name, (-1,), None, "weights")
    return t.to(dtype=_real_dtype(ref.dtype), device=ref.device)


def _log2(n: int, name: str, axis: str) -> int:
    k = n.bit_length() - 1
    if n < 1 or (1 << k) != n:
        raise arg_error(
            name,
            f"axis {axis} is a qubit register and needs a power-of-two size, got {n}",
            DimensionError,
        )
    return k


def _posint(v: Any, name: str, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise arg_error(name, f"must be an integer >= {low}, got {v!r}")
    return v
