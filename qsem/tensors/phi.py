"""φ: per position a distribution over S×C (:class:`Phi`) and the vocabulary embedding."""

from __future__ import annotations

import torch

from qsem.circuits.errors import (
    QsemTypeError,
    arg_error,
)

from .base import _check_distribution, _check_finite, _size_check, _tensor, _Typed


def semantic_embedding(weights: torch.Tensor) -> torch.Tensor:
    """Vocabulary embedding ``e_v`` (``(V, S, C)``): a softmax over S×C of raw ``weights``.

    Use it to parametrise a learned embedding whose rows are distributions.
    """
    w = _tensor(weights, "weights")
    if w.dim() != 3:
        raise arg_error("weights", f"expected shape (V, S, C), got {tuple(w.shape)}")
    return torch.softmax(w.flatten(1), dim=-1).reshape(w.shape)


class Phi(_Typed):
    """φ: per position a distribution over S×C, shape ``(L, S, C)`` or ``(B, L, S, C)``.

    >>> import torch
    >>> logits = torch.tensor([[0.0, 0.0]])          # L = 1, V = 2
    >>> emb = torch.tensor([[[1.0, 0.0], [0, 0], [0, 0]],  # e_0 = |T, c0>
    ...                     [[0.0, 0.0], [0, 1], [0, 0]]])  # e_1 = |F, c1>
    >>> Phi.from_logits(logits, emb).data[0]
    tensor([[0.5000, 0.0000],
            [0.0000, 0.5000],
            [0.0000, 0.0000]])
    """

    def __init__(
        self, data: torch.Tensor, *, atol: float | None = None, check: bool = True
    ) -> None:
        t = _tensor(data, "data")
        if t.dim() not in (3, 4):
            raise arg_error(
                "data", f"expected shape (L, S, C) or (B, L, S, C), got {tuple(t.shape)}"
            )
        self.axes = ("L", "S", "C") if t.dim() == 3 else ("B", "L", "S", "C")
        if check:
            _check_distribution(t, "data", (-2, -1), atol, "each φ[l] over S×C")
        self.data = t

    @classmethod
    def from_logits(
        cls, logits: torch.Tensor, embedding: torch.Tensor, *, check: bool = True
    ) -> Phi:
        """``φ[l] = Σ_v softmax(logits[l])_v · embedding[v]``.

        ``logits``: ``(L, V)`` or ``(B, L, V)`` token logits; ``embedding``: ``(V, S, C)``,
        each ``embedding[v]`` a distribution over S×C (see :func:`semantic_embedding`).
        Each φ[l] is a convex mixture of distributions, so it sums to 1.
        """
        z = _tensor(logits, "logits")
        e = _tensor(embedding, "embedding")
        if z.dim() not in (2, 3):
            raise arg_error("logits", f"expected shape (L, V) or (B, L, V), got {tuple(z.shape)}")
        if e.dim() != 3:
            raise arg_error("embedding", f"expected shape (V, S, C), got {tuple(e.shape)}")
        _size_check(
            e.shape[0] == z.shape[-1],
            "embedding",
            f"has {e.shape[0]} vocabulary rows but logits have V = {z.shape[-1]}",
        )
        if check:
            _check_finite(z, "logits")
            _check_distribution(e, "embedding", (-2, -1), None, "each embedding row e_v")
        dtype = torch.promote_types(z.dtype, e.dtype)
        p = torch.softmax(z.to(dtype), dim=-1)
        return cls(torch.einsum("...lv,vsc->...lsc", p, e.to(dtype)), check=False)

    @property
    def batched(self) -> bool:
        return self.data.dim() == 4

    def flat(self) -> torch.Tensor:
        """The distributions flattened over S×C: ``(..., L, S·C)`` (index ``s·C + c``)."""
        return self.data.flatten(-2)

    def marginal(self, axis: str) -> torch.Tensor:
        """The marginal over ``"S"`` (truth; sums C out) or ``"C"``: ``(..., L, S|C)``."""
        if axis == "S":
            return self.data.sum(-1)
        if axis == "C":
            return self.data.sum(-2)
        raise arg_error("axis", f"must be 'S' or 'C', got {axis!r}")

    def distance(self, other: Phi, norm: str = "fro") -> torch.Tensor:
        """``‖φ − φ'‖`` over everything (``"fro"``: Frobenius, ``"l1"``): a scalar tensor."""
        if not isinstance(other, Phi):
            raise arg_error("other", f"expected a Phi, got {type(other).__name__}", QsemTypeError)
        _size_check(
            other.shape == self.shape, "other", f"shape {tuple(other.shape)} != {tuple(self.shape)}"
        )
        d = self.data - other.data
        if norm == "fro":
            return torch.linalg.vector_norm(d)
        if norm == "l1":
            return d.abs().sum()
        raise arg_error("norm", f"must be 'fro' or 'l1', got {norm!r}")
