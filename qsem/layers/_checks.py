"""Shared input validation for the layers (errors name the argument)."""

from __future__ import annotations

import torch

from qsem.circuits.errors import QsemTypeError, arg_error


def check_tensor(x: object, name: str, ndim: int, *, floating: bool = True) -> torch.Tensor:
    """``x`` must be a tensor with ``ndim`` axes (floating point unless ``floating=False``)."""
    if not isinstance(x, torch.Tensor):
        raise arg_error(name, f"expected a torch.Tensor, got {type(x).__name__}", QsemTypeError)
    if x.dim() != ndim:
        raise arg_error(name, f"expected {ndim} axes, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise arg_error(name, f"expected a floating-point tensor, got {x.dtype}", QsemTypeError)
    return x


def check_mask(mask: object, shape: tuple[int, int], name: str = "mask") -> torch.Tensor:
    """A boolean mask of shape ``(B, L)``."""
    if not isinstance(mask, torch.Tensor):
        raise arg_error(name, f"expected a torch.Tensor, got {type(mask).__name__}", QsemTypeError)
    if tuple(mask.shape) != tuple(shape):
        raise arg_error(name, f"expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise arg_error(name, f"expected a bool tensor, got {mask.dtype}", QsemTypeError)
    return mask
