"""Λ: holographic latent components and their projection back to (S, C)."""

from __future__ import annotations

import torch

from qsem.checks import check_int
from qsem.circuits.errors import arg_error
from qsem.tensors import Lambda

from ._checks import check_tensor


class HolographicReducer(torch.nn.Module):
    """``Λ[b,l,s,c,p,z] = Ψ[b,l,s,c,p] · π[b,l,p,z]`` with ``π = softmax(W vec Ψ[b,l,:,:,p] + β)``.

    The ``Z`` latent components split each slice's distribution; their sum
    over ``Z`` is Ψ again and the ``α``-weighted sum over ``P`` gives the
    semantic distribution ``proj_{Z→S,C}(Λ) = Σ_p α_p Σ_z Λ[..., p, z]``.

    In the typed form of :class:`qsem.tensors.Lambda` (:meth:`components`) each
    component ``(p, z)`` is the distribution ``Ψ[..., p]`` and ``π`` its weight, so
    the projection is :meth:`qsem.tensors.Lambda.project` with weights ``π`` over Z
    and ``α`` over P: one definition of ``proj_{Z→S,C}`` for training and analysis.
    :meth:`features` gives it with the latent weights ``Σ_p α_p π[..., p, z]`` (the
    Z register's input).
    """

    def __init__(self, s_dim: int = 3, c_dim: int = 2, z_dim: int = 2) -> None:
        super().__init__()
        self.s_dim = check_int("s_dim", s_dim, 1)
        self.c_dim = check_int("c_dim", c_dim, 1)
        self.z_dim = check_int("z_dim", z_dim, 1)
        self.router = torch.nn.Linear(self.s_dim * self.c_dim, self.z_dim)

    def components(self, psi: torch.Tensor) -> tuple[Lambda, torch.Tensor]:
        """Λ as a :class:`~qsem.tensors.Lambda` (component ``(p, z)`` = ``Ψ[..., p]``)
        and its Z weights ``π`` ``(B, L, P, Z)``, from Ψ ``(B, L, S, C, P)``."""
        check_tensor(psi, "psi", 5)
        if psi.shape[2:4] != (self.s_dim, self.c_dim):
            raise arg_error("psi", f"expected axes (B, L, {self.s_dim}, {self.c_dim}, P), got "
                            f"{tuple(psi.shape)}")  # fmt: skip
        pi = torch.softmax(self.router(psi.flatten(2, 3).transpose(-1, -2)), dim=-1)  # (B,L,P,Z)
        comps = psi[..., None].expand(*psi.shape, self.z_dim)
        return Lambda(comps, check=False), pi

    @staticmethod
    def joint(lam: Lambda, pi: torch.Tensor) -> torch.Tensor:
        """The weighted components ``Λ[..., p, z] · π[..., p, z]``: ``(B, L, S, C, P, Z)``."""
        return lam.data * pi[:, :, None, None]

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        """Λ ``(B, L, S, C, P, Z)`` from Ψ ``(B, L, S, C, P)`` (the weighted components)."""
        return self.joint(*self.components(psi))

    @staticmethod
    def features(lam: Lambda, pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``[vec proj_{Z→S,C}(Λ) (S·C), latent Σ_p α_p π[..., p, z] (Z)]``: ``(B, L, S·C + Z)``.

        The projection is :meth:`qsem.tensors.Lambda.project` (weights ``π``, ``α``).
        """
        check_tensor(alpha, "alpha", 1)
        if alpha.shape[0] != lam.shape[4]:
            raise arg_error("alpha", f"expected {lam.shape[4]} slice weights, got {alpha.shape[0]}")
        a = alpha.to(lam.dtype)
        phi = lam.project(pi, a, check=False).data
        latent = torch.einsum("blpz,p->blz", pi, a)
        return torch.cat([phi.flatten(2), latent], dim=-1)
