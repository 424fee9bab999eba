"""Ψ: emergence slices over the semantic distribution."""

from __future__ import annotations

import math

import torch

from qsem.checks import check_int
from qsem.circuits.errors import arg_error
from qsem.tensors import Lambda

from ._checks import check_tensor


class EmergenceStack(torch.nn.Module):
    """``Ψ[b, l, :, :, p] = r[b, l] T_p`` for ``P`` learned row-stochastic maps ``T_p``.

    Slice ``p`` holds the semantic distribution of regime ``p``; slice weights
    ``α = softmax(a)`` mix them back. The last slice is the *live* one, the only
    one that keeps learning once a regime has ended: :meth:`add_slice` (an
    emergence event) freezes the live slice — it keeps the map of the regime that
    ended — and appends a trainable copy of it that splits its weight with it, so
    the mixed output is unchanged at the event and the new regime is learnt by the
    copy (and by the weights ``α``, which stay trainable). Without the freeze the
    copy and its source would get identical gradients and stay identical forever.
    ``add_slice`` replaces ``weight_logits`` by a longer Parameter and adds one:
    extend the optimiser (:func:`qsem.distill.append_slice` keeps its state).

    ``forward(r)`` maps distributions ``(B, L, S, C)`` to Ψ ``(B, L, S, C, P)``;
    every slice sums to 1 over ``(S, C)``. ``ΔΨ`` between two steps is
    :meth:`qsem.tensors.Psi.delta` (wrap the tensors: ``Psi(psi).delta(Psi(prev))``).
    """

    def __init__(self, s_dim: int = 3, c_dim: int = 2, n_slices: int = 1, init: float = 4.0):
        super().__init__()
        self.s_dim = check_int("s_dim", s_dim, 1)
        self.c_dim = check_int("c_dim", c_dim, 1)
        check_int("n_slices", n_slices, 1)
        d = self.s_dim * self.c_dim
        self.dim = d
        self.slice_logits = torch.nn.ParameterList(
            [
                torch.nn.Parameter(init * torch.eye(d) + 0.01 * torch.randn(d, d))
                for _ in range(n_slices)
            ]
        )
        self.weight_logits = torch.nn.Parameter(torch.zeros(n_slices))
        #: ``frozen[p]``: slice ``p`` holds an ended regime and no longer learns
        self.frozen = torch.nn.Buffer(torch.zeros(n_slices, dtype=torch.bool))

    @property
    def n_slices(self) -> int:
        return len(self.slice_logits)

    @property
    def live_slice(self) -> int:
        """Index of the live slice, the one :meth:`add_slice` freezes and copies (the last)."""
        return self.n_slices - 1

    @property
    def alpha(self) -> torch.Tensor:
        """Slice weights ``(P,)``, summing to 1."""
        return torch.softmax(self.weight_logits, dim=0)

    def maps(self) -> torch.Tensor:
        """The row-stochastic maps ``(P, O, O)`` (frozen slices carry no gradient)."""
        frozen = self.frozen.tolist()
        logits = [w.detach() if f else w for w, f in zip(self.slice_logits, frozen, strict=True)]
        return torch.softmax(torch.stack(logits), dim=-1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        check_tensor(r, "r", 4)
        if r.shape[2:] != (self.s_dim, self.c_dim):
            raise arg_error("r", f"expected trailing axes ({self.s_dim}, {self.c_dim}), "
                            f"got {tuple(r.shape[2:])}")  # fmt: skip
        psi = torch.einsum("blo,poq->blqp", r.flatten(2), self.maps())
        return psi.reshape(*r.shape[:2], self.s_dim, self.c_dim, self.n_slices)

    def mix(self, psi: torch.Tensor) -> torch.Tensor:
        """``Σ_p α_p Ψ[..., p]``: ``(B, L, S, C)`` — ``proj_{Z→S,C}`` of Ψ read as a Λ
        with one latent component (:meth:`qsem.tensors.Lambda.project`)."""
        check_tensor(psi, "psi", 5)
        lam = Lambda(psi[..., None], check=False)
        return lam.project(weights_p=self.alpha.to(psi.dtype), check=False).data

    @torch.no_grad()
    def add_slice(self) -> int:
        """Freeze the live slice and append a trainable copy of it (an emergence event).

        Returns the new number of slices. The copy and its source share the
        source's weight (``a_src - log 2`` each), so the mix is unchanged.
        """
        live = self.live_slice
        src = self.slice_logits[live]
        self.slice_logits.append(torch.nn.Parameter(src.detach().clone()))
        logits = self.weight_logits.detach().clone()
        logits[live] -= math.log(2.0)
        logits = torch.cat([logits, logits[live : live + 1]])
        self.weight_logits = torch.nn.Parameter(logits)
        frozen = self.frozen.clone()
        frozen[live] = True
        self.frozen = torch.nn.Buffer(torch.cat([frozen, frozen.new_zeros(1)]))
        return self.n_slices
