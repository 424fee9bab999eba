"""Λ: holographic latent components and ``proj_{Z→S,C}``."""

from __future__ import annotations

from typing import Any

import torch

from qsem.circuits.errors import (
    arg_error,
)

from .base import _check_distribution, _tensor, _Typed, _weights
from .phi import Phi


class Lambda(_Typed):
    """Λ: ``(B, L, S, C, P, Z)``; each component ``(p, z)`` a distribution over S×C.

    ``proj_{Z->S,C}``: ``φ[b, l] = Σ_p w_P[p] Σ_z w_Z[z] Λ[b, l, :, :, p, z]``
    (:meth:`project`; the weights are distributions, uniform by default, so φ
    sums to 1).

    >>> import torch
    >>> lam = Lambda.from_logits(torch.zeros(1, 2, 3, 2, 1, 4))
    >>> lam.project().data.sum((-2, -1))
    tensor([[1., 1.]])
    """

    axes = ("B", "L", "S", "C", "P", "Z")

    def __init__(
        self, data: torch.Tensor, *, atol: float | None = None, check: bool = True
    ) -> None:
        t = _tensor(data, "data")
        if t.dim() != 6:
            raise arg_error("data", f"expected shape (B, L, S, C, P, Z), got {tuple(t.shape)}")
        if check:
            _check_distribution(t, "data", (2, 3), atol, "each component Λ[b, l, :, :, p, z]")
        self.data = t

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> Lambda:
        """Softmax over S×C of raw ``(B, L, S, C, P, Z)`` logits."""
        z = _tensor(logits, "logits")
        if z.dim() != 6:
            raise arg_error("logits", f"expected shape (B, L, S, C, P, Z), got {tuple(z.shape)}")
        b, l, s, c, p, nz = z.shape
        flat = z.permute(0, 1, 4, 5, 2, 3).reshape(b, l, p, nz, s * c)
        dist = torch.softmax(flat, -1).reshape(b, l, p, nz, s, c).permute(0, 1, 4, 5, 2, 3)
        return cls(dist, check=False)

    def project(self, weights_z: Any = None, weights_p: Any = None, *, check: bool = True) -> Phi:
        """``proj_{Z->S,C}``: φ ``(B, L, S, C)``.

        ``weights_z`` broadcastable to ``(B, L, P, Z)``, ``weights_p`` to ``(B, L, P)``;
        each a distribution over its last axis (default uniform). ``check=False``
        skips the (synchronising) value checks of the weights, as inside a training
        loop (:class:`qsem.layers.HolographicReducer` calls it so).
        """
        b, l, _, _, p, nz = self.shape
        d = self.data
        wz = (
            torch.full((b, l, p, nz), 1 / nz, dtype=d.dtype, device=d.device)
            if weights_z is None
            else _weights(weights_z, "weights_z", (b, l, p, nz), d, check)
        )
        wp = (
            torch.full((b, l, p), 1 / p, dtype=d.dtype, device=d.device)
            if weights_p is None
            else _weights(weights_p, "weights_p", (b, l, p), d, check)
        )
        return Phi(torch.einsum("blscpz,blpz,blp->blsc", d, wz, wp), check=False)
