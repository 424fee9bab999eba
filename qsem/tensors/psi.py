"""Ψ: emergence slices of the semantic distribution and ΔΨ."""

from __future__ import annotations

import torch

from qsem.circuits.errors import (
    QsemTypeError,
    arg_error,
)

from .base import _check_distribution, _size_check, _tensor, _Typed
from .phi import Phi


class Psi(_Typed):
    """Ψ: ``(B, L, S, C, P)``; slice ``p`` holds the S×C distribution of regime ``p``.

    A new slice is appended at each emergence event (:meth:`append_slice`).

    >>> import torch
    >>> phi = Phi(torch.full((2, 3, 1), 1 / 3))         # L = 2, S = 3, C = 1
    >>> psi = Psi.from_phi(phi).append_slice(phi)
    >>> psi.sizes
    {'B': 1, 'L': 2, 'S': 3, 'C': 1, 'P': 2}
    """

    axes = ("B", "L", "S", "C", "P")

    def __init__(
        self, data: torch.Tensor, *, atol: float | None = None, check: bool = True
    ) -> None:
        t = _tensor(data, "data")
        if t.dim() != 5 or t.shape[-1] < 1:
            raise arg_error(
                "data", f"expected shape (B, L, S, C, P) with P >= 1, got {tuple(t.shape)}"
            )
        if check:
            _check_distribution(t, "data", (2, 3), atol, "each slice Ψ[b, l, :, :, p] over S×C")
        self.data = t

    @staticmethod
    def _phi_data(phi: Phi) -> torch.Tensor:
        if not isinstance(phi, Phi):
            raise arg_error("phi", f"expected a Phi, got {type(phi).__name__}", QsemTypeError)
        return phi.data if phi.batched else phi.data[None]

    @classmethod
    def from_phi(cls, phi: Phi) -> Psi:
        """One slice holding φ (an unbatched φ gets ``B = 1``)."""
        return cls(cls._phi_data(phi)[..., None], check=False)

    def append_slice(self, phi: Phi) -> Psi:
        """A new Ψ with φ appended as slice ``P`` (on an emergence event)."""
        d = self._phi_data(phi)
        _size_check(
            tuple(d.shape) == tuple(self.shape[:4]),
            "phi",
            f"shape (B, L, S, C) = {tuple(d.shape)} does not match Ψ's {tuple(self.shape[:4])}",
        )
        return Psi(torch.cat([self.data, d[..., None].to(self.dtype)], dim=-1), check=False)

    def slice(self, p: int) -> Phi:
        """Slice ``p`` (negative counts from the end) as a batched φ ``(B, L, S, C)``."""
        n = self.shape[-1]
        if isinstance(p, bool) or not isinstance(p, int) or not -n <= p < n:
            raise arg_error("p", f"slice index must be an int in [-{n}, {n}), got {p!r}")
        return Phi(self.data[..., p], check=False)

    def delta(self, previous: Psi, norm: str = "fro") -> torch.Tensor:
        """``ΔΨ = ‖Ψ_t − Ψ_{t−1}‖`` over (S, C) per (b, l, p): ``(B, L, P')``.

        ``P' = min(P_t, P_{t−1})``: the slices both tensors have (a slice appended
        since ``previous`` has no predecessor). ``norm``: ``"fro"`` or ``"l1"``.
        """
        if not isinstance(previous, Psi):
            raise arg_error(
                "previous", f"expected a Psi, got {type(previous).__name__}", QsemTypeError
            )
        _size_check(
            previous.shape[:4] == self.shape[:4],
            "previous",
            f"(B, L, S, C) = {tuple(previous.shape[:4])} != {tuple(self.shape[:4])}",
        )
        k = min(self.shape[-1], previous.shape[-1])
        d = self.data[..., :k] - previous.data[..., :k]
        if norm == "fro":
            return torch.linalg.vector_norm(d, dim=(2, 3))
        if norm == "l1":
            return d.abs().sum(dim=(2, 3))
        raise arg_error("norm", f"must be 'fro' or 'l1', got {norm!r}")
