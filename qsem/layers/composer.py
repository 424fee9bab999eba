"""Φ: per-position operators on the S·C space and their non-commutative fold."""

from __future__ import annotations

import math

import torch

from qsem.checks import check_int
from qsem.circuits.errors import arg_error
from qsem.tensors import compose, fold

from ._checks import check_mask, check_tensor


class NonCommutativeComposer(torch.nn.Module):
    """Operators ``M_l`` on the ``O = S·C`` space from φ, folded left with ``⊗'``.

    ``⊗'`` and the fold are :func:`qsem.tensors.compose` and :func:`qsem.tensors.fold`
    (one definition for training and analysis: ``A ⊗' B = AB + λ[A, B]``).

    ``mode="full"``: ``M_l`` is a row-stochastic ``O×O`` matrix, the row softmax
    of ``h(log φ[l]) + identity_bias · I`` with ``h`` an MLP (the log makes small
    differences between the φ of different tokens visible; operators start near
    the identity); it keeps the O axis: order-dependent, profile AGI-B.
    ``mode="diagonal"``: ``M_l = diag(exp(h(log φ[l])))``; diagonal operators commute,
    so the fold is order-free (profiles without the O axis).

    The fold ``F_l = F_{l-1} ⊗' M_l`` (``F_0 = I``) acts on a learned initial
    distribution ``u`` as a row vector, so token 1 acts first:
    ``r_l = u F_l``. Row sums are preserved by ``⊗'`` (a commutator of
    row-stochastic matrices has zero row sums), so ``r_l`` sums to 1 in full
    mode; diagonal mode renormalises. Padded positions (``mask`` False) get
    ``M_l = I``, which ``⊗'`` leaves neutral.

    ``λ`` is learned (``learn_lam``) within ``(-lam_max, lam_max)``.

    ``forward(phi, mask)`` returns ``(ops, prefix)``: operators ``(B, L, O, O)``
    and prefix states ``r`` ``(B, L, S, C)``; ``prefix[:, -1]`` is the state of
    the whole sequence.
    """

    def __init__(
        self,
        s_dim: int = 3,
        c_dim: int = 2,
        mode: str = "full",
        hidden: int = 32,
        lam: float = 0.05,
        learn_lam: bool = True,
        lam_max: float = 0.25,
        identity_bias: float = 2.0,
    ) -> None:
        super().__init__()
        self.s_dim = check_int("s_dim", s_dim, 1)
        self.c_dim = check_int("c_dim", c_dim, 1)
        if mode not in ("full", "diagonal"):
            raise arg_error("mode", f"expected 'full' or 'diagonal', got {mode!r}")
        self.mode = mode
        d = self.s_dim * self.c_dim
        self.dim = d
        out = d * d if mode == "full" else d
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, check_int("hidden", hidden, 1)),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, out),
        )
        if not abs(float(lam)) < lam_max:
            raise arg_error("lam", f"must lie in (-{lam_max}, {lam_max}), got {lam}")
        self.lam_max = float(lam_max)
        raw = torch.tensor(math.atanh(float(lam) / self.lam_max))
        self.lam_raw = torch.nn.Parameter(raw) if learn_lam else torch.nn.Buffer(raw)
        self.init_logits = torch.nn.Parameter(torch.zeros(d))
        # operators start near the identity, so the fold passes information on from the start
        self.identity_bias = torch.nn.Buffer(float(identity_bias) * torch.eye(d))

    @property
    def lam(self) -> torch.Tensor:
        """``λ = λ_max tanh(raw)``: bounded, so folds of many positions stay bounded."""
        return self.lam_max * torch.tanh(self.lam_raw)

    def operators(self, phi: torch.Tensor) -> torch.Tensor:
        """``M_l`` for every position: ``(B, L, O, O)``."""
        check_tensor(phi, "phi", 4)
        if phi.shape[2:] != (self.s_dim, self.c_dim):
            raise arg_error(
                "phi",
                f"expected trailing axes (S, C) = ({self.s_dim}, {self.c_dim}), "
                f"got {tuple(phi.shape[2:])}",
            )
        h = self.net(torch.log(phi.flatten(2).clamp_min(1e-6)))
        if self.mode == "full":
            logits = h.unflatten(-1, (self.dim, self.dim)) + self.identity_bias
            return torch.softmax(logits, dim=-1)
        return torch.diag_embed(torch.exp(h.clamp(-20.0, 20.0)))

    def forward(
        self, phi: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ops = self.operators(phi)
        b, length = phi.shape[:2]
        if mask is not None:
            check_mask(mask, (b, length))
            eye = torch.eye(self.dim, dtype=ops.dtype, device=ops.device)
            ops = torch.where(mask[..., None, None], ops, eye)
        u = torch.softmax(self.init_logits, dim=0).to(ops.dtype)
        prefix = []
        acc = None
        state = u.expand(b, self.dim)
        for pos in range(length):
            m = ops[:, pos]
            if self.mode == "diagonal":
                # diagonal operators commute: ⊗' is the plain product; renormalise
                state = state * torch.diagonal(m, dim1=-2, dim2=-1)
                state = state / state.sum(dim=-1, keepdim=True)
            else:
                acc = m if acc is None else compose(acc, m, self.lam, check=False)
                state = torch.einsum("o,bop->bp", u, acc)
            prefix.append(state)
        r = torch.stack(prefix, dim=1)
        return ops, r.reshape(b, length, self.s_dim, self.c_dim)

    def fold(self, ops: torch.Tensor) -> torch.Tensor:
        """The left fold ``M_1 ⊗' ... ⊗' M_L`` of ``ops`` ``(B, L, O, O)`` with this layer's
        ``λ``: ``(B, O, O)`` (:func:`qsem.tensors.fold`)."""
        check_tensor(ops, "ops", 4)
        return fold(ops, self.lam, check=False)
