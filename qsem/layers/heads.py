"""Readout heads: Ω's Born probabilities -> log-probabilities of the three truth values.

Each head says what it reads (``reads``): ``"born"``, the joint Born probabilities
``(B, L, dS, dC, dZ)``, or ``"phi_out"``, the prediction distribution
``Π_edge(Ω)`` ``(B, L, S, C)`` (:func:`qsem.tensors.pi_edge`).
"""

from __future__ import annotations

import torch

from qsem.circuits.errors import arg_error

from ._checks import check_tensor

_EPS = 1e-7


def _check_probs(p: object) -> torch.Tensor:
    return check_tensor(p, "p", 5)  # (B, L, dS, dC, dZ)


class QutritTruthHead(torch.nn.Module):
    """One-qutrit Born readout: ``P(T), P(F), P(U)`` of the S register (no parameters).

    The readout basis is trained through the circuit's last layer, so the head
    itself adds nothing. ``forward(p)`` returns the log of the S marginal of ``p``
    (clamped at ``1e-7``), ``(B, L, 3)``: ``p`` is the prediction distribution
    ``φ_out = Π_edge(Ω)`` ``(B, L, 3, C)`` (what :class:`~qsem.models.SemanticModel`
    passes: ``reads = "phi_out"``) or joint Born probabilities ``(B, L, 3, dC, dZ)``.
    """

    reads = "phi_out"

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        check_tensor(p, "p", 4 if isinstance(p, torch.Tensor) and p.dim() == 4 else 5)
        if p.shape[2] != 3:
            raise arg_error("p", f"the qutrit head needs an S register of dimension 3, got "
                            f"{p.shape[2]}")  # fmt: skip
        return torch.log(p.flatten(3).sum(-1).clamp_min(_EPS))


class SoftmaxHead(torch.nn.Module):
    """Classical ``softmax(3)`` on the joint Born probabilities (a linear layer)."""

    reads = "born"

    def __init__(self, n_outcomes: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(n_outcomes, 3)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        _check_probs(p)
        return torch.log_softmax(self.linear(p.flatten(2)), dim=-1)


class TwoQubitHead(torch.nn.Module):
    """Two-qubit readout: outcomes ``|00>, |01>, |10>`` -> ``T, F, U``; ``|11>`` excluded.

    The two qubits are the first two qubit wires of the circuit (C register
    first, then Z). The probability of ``|11>`` is dropped and the other three
    are renormalised to sum to 1 (a post-selection; the discarded mass is what
    :meth:`excluded` reports).
    """

    reads = "born"

    def _pair(self, p: torch.Tensor) -> torch.Tensor:
        _check_probs(p)
        q = p.sum(dim=2).flatten(2)  # (B, L, 2**(n_c + n_z)) over the qubits
        n = q.shape[-1]
        if n < 4:
            raise arg_error("p", "the two-qubit head needs at least two qubit wires")
        return q.reshape(*q.shape[:2], 4, n // 4).sum(dim=-1)

    def excluded(self, p: torch.Tensor) -> torch.Tensor:
        """Probability of ``|11>`` (discarded), ``(B, L)``."""
        return self._pair(p)[..., 3]

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        three = self._pair(p)[..., :3].clamp_min(_EPS)
        return torch.log(three / three.sum(dim=-1, keepdim=True))


def make_head(kind: str, n_outcomes: int) -> torch.nn.Module:
    """``"qutrit"``, ``"softmax"`` or ``"two_qubit"``."""
    if kind == "qutrit":
        return QutritTruthHead()
    if kind == "softmax":
        return SoftmaxHead(n_outcomes)
    if kind == "two_qubit":
        return TwoQubitHead()
    raise arg_error("head", f"expected 'qutrit', 'softmax' or 'two_qubit', got {kind!r}")
