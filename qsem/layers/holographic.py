"""Λ: holographic latent components and their projection back to (S, C)."""

from __future__ import annotations

import torch

from qsem.circuits.errors import arg_error

from ._checks import check_positive_int, check_tensor


class HolographicReducer(torch.nn.Module):
    """``Λ[b,l,s,c,p,z] = Ψ[b,l,s,c,p] · π[b,l,p,z]`` with ``π = softmax(W vec Ψ[b,l,:,:,p] + β)``.

    The ``Z`` latent components split each slice's distribution; their sum
    over ``Z`` is Ψ again and the ``α``-weighted sum over ``P`` gives the
    semantic distribution: ``proj_{Z→S,C}(Λ) = Σ_p α_p Σ_z Λ[..., p, z]``.
    :meth:`latent` gives ``π`` averaged over slices (the Z register's input).
    """

    def __init__(self, s_dim: int = 3, c_dim: int = 2, z_dim: int = 2) -> None:
        super().__init__()
        self.s_dim = check_positive_int(s_dim, "s_dim")
        self.c_dim = check_positive_int(c_dim, "c_dim")
        self.z_dim = check_positive_int(z_dim, "z_dim")
        self.router = torch.nn.Linear(self.s_dim * self.c_dim, self.z_dim)

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        """Λ ``(B, L, S, C, P, Z)`` from Ψ ``(B, L, S, C, P)``."""
        check_tensor(psi, "psi", 5)
        if psi.shape[2:4] != (self.s_dim, self.c_dim):
            raise arg_error("psi", f"expected axes (B, L, {self.s_dim}, {self.c_dim}, P), got "
                            f"{tuple(psi.shape)}")  # fmt: skip
        pi = torch.softmax(self.router(psi.flatten(2, 3).transpose(-1, -2)), dim=-1)  # (B,L,P,Z)
        return psi[..., None] * pi[:, :, None, None]

    @staticmethod
    def project(lam: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``proj_{Z→S,C}``: ``Σ_p α_p Σ_z Λ`` -> ``(B, L, S, C)``."""
        check_tensor(lam, "lam", 6)
        check_tensor(alpha, "alpha", 1)
        if alpha.shape[0] != lam.shape[4]:
            raise arg_error("alpha", f"expected {lam.shape[4]} slice weights, got {alpha.shape[0]}")
        return lam.sum(dim=-1) @ alpha.to(lam.dtype)

    @staticmethod
    def latent(lam: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Weight of each latent component, ``Σ_p α_p π[..., p, z]``: ``(B, L, Z)``."""
        check_tensor(lam, "lam", 6)
        return torch.einsum("blscpz,p->blz", lam, alpha.to(lam.dtype))
