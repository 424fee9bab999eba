"""Φ: per-position operators, ``A ⊗' B = AB + λ[A, B]``, the left fold and NCI."""

from __future__ import annotations

from typing import Any

import torch

from qsem.checks import check_int
from qsem.circuits.errors import (
    QsemTypeError,
    arg_error,
)

from .base import _check_finite, _real_dtype, _size_check, _tensor, _Typed
from .phi import Phi


def _square(x: Any, name: str) -> torch.Tensor:
    t = _tensor(x, name, complex_=None)
    if t.dim() < 2 or t.shape[-1] != t.shape[-2]:
        raise arg_error(name, f"expected square matrices (..., D, D), got {tuple(t.shape)}")
    return t


def _lam(lam: Any, ref: torch.Tensor, check: bool = True) -> torch.Tensor:
    if isinstance(lam, bool) or not isinstance(lam, (int, float, torch.Tensor)):
        raise arg_error(
            "lam", f"expected a number or a tensor, got {type(lam).__name__}", QsemTypeError
        )
    # a Python number goes straight to the operators' precision (never through float32)
    if isinstance(lam, torch.Tensor):
        t = lam.to(device=ref.device)
    else:
        t = torch.as_tensor(lam, dtype=_real_dtype(ref.dtype), device=ref.device)
    if check:
        _check_finite(t, "lam")
    if t.is_complex() and not ref.is_complex():
        raise arg_error("lam", "a complex λ needs complex operators", QsemTypeError)
    t = t.to(ref.dtype if t.is_complex() else _real_dtype(ref.dtype))
    if t.dim() > 1:
        raise arg_error("lam", f"expected a scalar or a batch (B,), got shape {tuple(t.shape)}")
    return t[..., None, None] if t.dim() == 1 else t


def commutator(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[A, B] = AB − BA`` of (batched) square matrices."""
    a, b = _square(a, "a"), _square(b, "b")
    return a @ b - b @ a


def compose(
    a: torch.Tensor, b: torch.Tensor, lam: Any = 0.0, *, check: bool = True
) -> torch.Tensor:
    """``A ⊗' B = AB + λ[A, B]`` (``λ`` a number or a batch ``(B,)``).

    At ``λ = 0`` it is the matrix product; ``λ = −1`` gives ``BA``. For ``λ != 0``
    and non-commuting A, B the order matters. ``check=False`` skips the
    (synchronising) finiteness check of ``λ`` (shapes are always checked): the
    composer layer calls it so inside its training loop.
    """
    a, b = _square(a, "a"), _square(b, "b")
    _size_check(a.shape[-1] == b.shape[-1], "b", f"size {b.shape[-1]} != size {a.shape[-1]} of a")
    ab = a @ b
    return ab + _lam(lam, ab, check) * (ab - b @ a)


def fold(matrices: torch.Tensor, lam: Any = 0.0, *, check: bool = True) -> torch.Tensor:
    """Left fold ``((M_1 ⊗' M_2) ⊗' M_3) ... ⊗' M_L`` of ``(..., L, D, D)`` -> ``(..., D, D)``."""
    m = _square(matrices, "matrices")
    if m.dim() < 3 or m.shape[-3] < 1:
        raise arg_error("matrices", f"expected (..., L, D, D) with L >= 1, got {tuple(m.shape)}")
    acc = m[..., 0, :, :]
    for i in range(1, m.shape[-3]):
        acc = compose(acc, m[..., i, :, :], lam, check=check)
    return acc


def nci(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Non-commutativity index ``‖[A, B]‖_F / (‖A‖_F ‖B‖_F)`` (0 if A or B is 0).

    It lies in ``[0, √2]``; 0 exactly when A and B commute.
    """
    c = commutator(a, b)
    den = torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(b)
    num = torch.linalg.matrix_norm(c)
    tiny = torch.finfo(num.dtype).tiny
    return torch.where(den > 0, num / den.clamp_min(tiny), torch.zeros_like(num))


def nci_avg(matrices: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean NCI over adjacent positions of ``(..., L, D, D)``: ``(...)`` (0 when L = 1).

    ``mask`` ``(..., L)`` (bool, True = a real position) restricts the mean to the
    pairs whose two positions are both real (0 where there is no such pair): pass
    ``tokens != 0`` for :meth:`qsem.models.SemanticModel.intermediates`' ``ops``, whose
    padded positions hold the identity (NCI 0), which would otherwise dilute the mean.
    """
    m = _square(matrices, "matrices")
    if m.dim() < 3:
        raise arg_error("matrices", f"expected (..., L, D, D), got {tuple(m.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise arg_error("mask", "expected a bool tensor (..., L)", QsemTypeError)
        _size_check(
            tuple(mask.shape) == tuple(m.shape[:-2]),
            "mask",
            f"shape {tuple(mask.shape)} != (..., L) = {tuple(m.shape[:-2])} of the matrices",
        )
    if m.shape[-3] < 2:
        return torch.zeros(m.shape[:-3], dtype=_real_dtype(m.dtype), device=m.device)
    pairs = nci(m[..., :-1, :, :], m[..., 1:, :, :])
    if mask is None:
        return pairs.mean(-1)
    both = (mask[..., :-1] & mask[..., 1:]).to(pairs.dtype)
    return (pairs * both).sum(-1) / both.sum(-1).clamp_min(1)


class PhiOps(_Typed):
    """Φ: per position an operator ``M_l`` on the S·C space, ``([B,] L, S, C, O)``.

    ``O = S·C``; ``M_l[s·C + c, o] = data[..., l, s, c, o]`` (the row is the (s, c)
    output index, the column the input). Real or complex.

    >>> import torch
    >>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0]]); z = torch.diag(torch.tensor([1.0, -1.0]))
    >>> ops = PhiOps.from_matrices(torch.stack([x, z]), s=2, c=1)
    >>> ops.fold(0.0)            # X Z
    tensor([[ 0., -1.],
            [ 1.,  0.]])
    >>> round(float(ops.nci_avg()), 6)     # ‖[X, Z]‖ / (‖X‖ ‖Z‖) = 2√2 / 2
    1.414214
    """

    def __init__(self, data: torch.Tensor, *, check: bool = True) -> None:
        t = _tensor(data, "data", complex_=None)
        if t.dim() not in (4, 5):
            raise arg_error(
                "data", f"expected shape (L, S, C, O) or (B, L, S, C, O), got {tuple(t.shape)}"
            )
        _size_check(
            t.shape[-1] == t.shape[-2] * t.shape[-3],
            "data",
            f"operator axis O = {t.shape[-1]} must equal S·C = {t.shape[-3] * t.shape[-2]}",
        )
        if check:
            _check_finite(t, "data")
        self.axes = ("L", "S", "C", "O") if t.dim() == 4 else ("B", "L", "S", "C", "O")
        self.data = t

    @classmethod
    def from_matrices(cls, matrices: torch.Tensor, s: int, c: int, *, check: bool = True) -> PhiOps:
        """From ``(L, D, D)`` or ``(B, L, D, D)`` matrices with ``D = s·c``."""
        m = _square(matrices, "matrices")
        if m.dim() not in (3, 4):
            raise arg_error("matrices", f"expected (L, D, D) or (B, L, D, D), got {tuple(m.shape)}")
        s, c = check_int("s", s, 1), check_int("c", c, 1)
        _size_check(m.shape[-1] == s * c, "matrices", f"D = {m.shape[-1]} != s·c = {s * c}")
        return cls(m.reshape(*m.shape[:-2], s, c, s * c), check=check)

    @property
    def matrices(self) -> torch.Tensor:
        """``(..., L, D, D)`` with ``D = S·C``."""
        return self.data.flatten(-3, -2)

    def fold(self, lam: Any = 0.0) -> torch.Tensor:
        """The sequence operator ``M_1 ⊗' ... ⊗' M_L`` (left fold): ``(..., D, D)``."""
        return fold(self.matrices, lam)

    def nci_avg(self) -> torch.Tensor:
        """Mean NCI of adjacent positions: ``()`` or ``(B,)``."""
        return nci_avg(self.matrices)

    def apply(self, phi: Phi) -> torch.Tensor:
        """``M_l φ[l]`` per position (φ flattened over S×C): ``(..., L, S, C)`` (not normalised)."""
        if not isinstance(phi, Phi):
            raise arg_error("phi", f"expected a Phi, got {type(phi).__name__}", QsemTypeError)
        _size_check(
            tuple(phi.shape[-3:]) == tuple(self.shape[-4:-1]),
            "phi",
            f"(L, S, C) = {tuple(phi.shape[-3:])} does not match Φ's {tuple(self.shape[-4:-1])}",
        )
        m = self.matrices
        v = phi.flat().to(m.dtype)
        return (m @ v[..., None])[..., 0].reshape(*v.shape[:-1], *phi.shape[-2:])
