"""φ: token ids -> semantic distributions over S×C."""

from __future__ import annotations

import torch

from qsem.checks import check_int
from qsem.circuits.errors import QsemTypeError, arg_error


class SemanticEncoder(torch.nn.Module):
    """``φ[l] = Σ_v softmax(z[l])_v · e_v`` with learned distributions ``e_v`` over S×C.

    ``z[l]`` are logits over ``n_items`` semantic items, looked up from the token
    id at position ``l`` (a learned table ``(vocab_size, n_items)``); each
    ``e_v = softmax(E_v)`` is a distribution over the ``S·C`` cells. Each
    ``φ[b, l]`` therefore sums to 1.

    >>> enc = SemanticEncoder(vocab_size=5, s_dim=3, c_dim=2)
    >>> phi = enc(torch.tensor([[1, 2, 0]]))
    >>> tuple(phi.shape), bool(torch.allclose(phi.sum(dim=(2, 3)), torch.ones(1, 3)))
    ((1, 3, 3, 2), True)
    """

    def __init__(
        self,
        vocab_size: int,
        s_dim: int = 3,
        c_dim: int = 2,
        n_items: int | None = None,
        init_scale: float = 3.0,
    ) -> None:
        super().__init__()
        self.vocab_size = check_int("vocab_size", vocab_size, 1)
        self.s_dim = check_int("s_dim", s_dim, 1)
        self.c_dim = check_int("c_dim", c_dim, 1)
        self.n_items = check_int("n_items", vocab_size if n_items is None else n_items, 1)
        self.logits = torch.nn.Parameter(init_scale * torch.randn(self.vocab_size, self.n_items))
        self.item_logits = torch.nn.Parameter(
            init_scale * torch.randn(self.n_items, self.s_dim * self.c_dim)
        )

    @property
    def items(self) -> torch.Tensor:
        """The learned distributions ``e_v``, shape ``(n_items, S, C)``."""
        return torch.softmax(self.item_logits, dim=-1).reshape(-1, self.s_dim, self.c_dim)

    def token_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``z``: logits ``(B, L, n_items)`` of each token."""
        return self.logits[self._check_tokens(tokens)]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """φ ``(B, L, S, C)`` from token ids ``(B, L)``."""
        weights = torch.softmax(self.token_logits(tokens), dim=-1)
        e = torch.softmax(self.item_logits, dim=-1)
        phi = weights @ e
        return phi.reshape(*tokens.shape, self.s_dim, self.c_dim)

    def _check_tokens(self, tokens: object) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            raise arg_error(
                "tokens", f"expected a torch.Tensor, got {type(tokens).__name__}", QsemTypeError
            )
        if tokens.dim() != 2:
            raise arg_error("tokens", f"expected shape (B, L), got {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise arg_error("tokens", f"expected integer ids, got {tokens.dtype}", QsemTypeError)
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise arg_error(
                "tokens",
                f"ids must lie in 0..{self.vocab_size - 1}, got range "
                f"{int(tokens.min())}..{int(tokens.max())}",
            )
        return tokens.long()
