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
from collections.abc import Mapping
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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise arg_error("name", f"must be a non-empty string, got {self.name!r}", QsemTypeError)

    def __mul__(self, other: float) -> Parameter:
        if not isinstance(other, (int, float)):
            return NotImplemented
        return Parameter(self.name, self.scale * float(other))

    __rmul__ = __mul__

    def __neg__(self) -> Parameter:
        return Parameter(self.name, -self.scale)

    def __repr__(self) -> str:
        return self.name if self.scale == 1.0 else f"{self.scale:g}*{self.name}"


ParamLike = Union[float, int, torch.Tensor, Parameter]


def check_param(value: object, name: str = "param") -> ParamLike:
    """Validate a parameter given to an operation; returns it unchanged.

    Rejects non-numeric values, tensors of rank > 1, complex tensors and NaN/inf.
    """
    if isinstance(value, Parameter):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise arg_error(
            name,
            f"expected a number, a tensor of shape () or (B,), or a Parameter; got {type(value).__name__}",
            QsemTypeError,
        )
    if isinstance(value, torch.Tensor):
        if value.dim() > 1:
            raise arg_error(name, f"tensor must have shape () or (B,), got {tuple(value.shape)}")
        if value.is_complex():
            raise arg_error(name, "gate parameters must be real, got a complex tensor")
        if value.numel() and not bool(torch.isfinite(value.detach()).all()):
            raise arg_error(name, "contains NaN or inf")
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
        tensor = torch.as_tensor(check_param(raw, f"params['{value.name}']"), device=device)
        tensor = tensor.to(dtype)
        return tensor * value.scale if value.scale != 1.0 else tensor
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.tensor(float(value), dtype=dtype, device=device)
