"""Symbolic and concrete gate parameters.

A parameter of an operation is either

* a Python number,
* a torch tensor of shape ``()`` or ``(B,)`` (batched), possibly ``requires_grad``,
* a symbolic :class:`Parameter`, bound to a value at run time by name.

Symbolic parameters make one circuit reusable across batches, for parameter
binding on Aer and for parameter-shift differentiation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Union

import torch

from .errors import QsemTypeError, QsemValueError, arg_error


@dataclass(frozen=True)
class Parameter:
    """A named symbolic parameter, optionally scaled: ``scale * value(name)``.

    >>> x = Parameter("x")
    >>> (2 * x).scale
    2.0
    """

    name: str
    scale: float = 1.0
    index: int | None = None
    #: number of elements of the vector this parameter is an element of (None: unknown)
    length: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise arg_error("name", f"must be a non-empty string, got {self.name!r}", QsemTypeError)
        if self.index is not None and (
            isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0
        ):
            raise arg_error(
                "index", f"must be a non-negative int, got {self.index!r}", QsemTypeError
            )
        if self.length is not None and (
            self.index is None
            or isinstance(self.length, bool)
            or not isinstance(self.length, int)
            or not 0 <= self.index < self.length
        ):
            raise arg_error(
                "length",
                f"must be an int > index for a vector element, got {self.length!r}",
                QsemTypeError,
            )
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)):
            raise arg_error("scale", f"must be a real number, got {self.scale!r}", QsemTypeError)
        if not math.isfinite(self.scale):
            raise arg_error("scale", f"must be finite, got {self.scale}")

    def __mul__(self, other: float) -> Parameter:
        if not isinstance(other, (int, float)):
            return NotImplemented
        return Parameter(self.name, self.scale * float(other), self.index, self.length)

    __rmul__ = __mul__

    def __neg__(self) -> Parameter:
        return Parameter(self.name, -self.scale, self.index, self.length)

    def select(self, value: torch.Tensor, where: str) -> torch.Tensor:
        """This element's entry of a bound value (``value`` itself for a scalar parameter).

        A vector element needs ``value`` of shape ``(K,)`` or ``(B, K)`` with ``K`` the
        vector's length (``K > index`` where the length is unknown).
        """
        if self.index is None:
            return value
        if self.length is not None:
            if value.dim() not in (1, 2) or value.shape[-1] != self.length:
                raise arg_error(
                    where,
                    f"ParameterVector '{self.name}' has {self.length} elements: expected shape "
                    f"({self.length},) or (B, {self.length}), got {tuple(value.shape)}",
                )
        elif value.dim() == 0 or value.shape[-1] <= self.index:
            raise arg_error(
                where,
                f"a parameter vector needs shape (K,) or (B, K) with K > {self.index}, "
                f"got {tuple(value.shape)}",
            )
        return value[..., self.index]

    def __repr__(self) -> str:
        base = self.name if self.index is None else f"{self.name}[{self.index}]"
        return base if self.scale == 1.0 else f"{self.scale:g}*{base}"


class ParameterVector:
    """``K`` symbolic parameters bound together by one tensor ``(K,)`` or ``(B, K)``.

    >>> w = ParameterVector("w", 3)
    >>> w[2]
    w[2]
    """

    def __init__(self, name: str, length: int) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise arg_error("length", f"must be a positive int, got {length!r}")
        self.name = name
        self.length = length
        self._params = [Parameter(name, 1.0, i, length) for i in range(length)]

    def __getitem__(self, i: int) -> Parameter:
        if isinstance(i, bool) or not isinstance(i, int) or not -self.length <= i < self.length:
            raise arg_error(
                "index",
                f"{i!r} out of range for ParameterVector '{self.name}' of length {self.length}",
            )
        return self._params[i]

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._params)

    def __repr__(self) -> str:
        return f"ParameterVector({self.name!r}, {self.length})"


ParamLike = Union[float, int, torch.Tensor, Parameter]  # noqa: UP007 (a runtime alias)


def check_param(value: object, name: str = "param") -> ParamLike:
    """Validate a parameter given to an operation; returns it unchanged.

    Rejects non-numeric values, tensors of rank > 1, complex tensors and NaN/inf.
    """
    if isinstance(value, Parameter):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise arg_error(
            name,
            "expected a number, a tensor of shape () or (B,), or a Parameter; "
            f"got {type(value).__name__}",
            QsemTypeError,
        )
    if isinstance(value, torch.Tensor):
        if value.dim() > 1:
            raise arg_error(name, f"tensor must have shape () or (B,), got {tuple(value.shape)}")
        if value.is_complex():
            raise arg_error(name, f"gate parameters must be real, got a {value.dtype} tensor")
        if value.dim() == 1 and value.shape[0] == 0:
            raise arg_error(name, "a batched parameter needs at least one value, got shape (0,)")
        if value.dtype == torch.bool:
            raise arg_error(name, "expected a real tensor, got a bool tensor", QsemTypeError)
        bad = ~torch.isfinite(value.detach())
        if bool(bad.any()):
            where = ""
            if value.dim() == 1:
                where = f" at batch index(es) {bad.nonzero().flatten().tolist()}"
            raise arg_error(name, f"must be finite, got NaN or inf{where}")
    elif not math.isfinite(float(value)):
        raise arg_error(name, f"must be finite, got {value}")
    return value


def resolve_param(
    value: ParamLike,
    bindings: Mapping[str, object] | None,
    *,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> torch.Tensor:
    """Turn a parameter into a real tensor of shape ``()`` or ``(B,)``.

    Symbolic parameters are looked up in ``bindings`` by name.
    """
    if isinstance(value, Parameter):
        if bindings is None or value.name not in bindings:
            raise arg_error(
                "params", f"no value bound for symbolic parameter '{value.name}'", QsemValueError
            )
        raw = bindings[value.name]
        # numbers straight to the target dtype: a float must not pass through float32
        tensor = (
            raw.to(device=device, dtype=dtype)
            if isinstance(raw, torch.Tensor)
            else torch.as_tensor(raw, dtype=dtype, device=device)
        )
        tensor = value.select(tensor, f"params['{value.name}']")
        return tensor * value.scale if value.scale != 1.0 else tensor
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.tensor(float(value), dtype=dtype, device=device)
