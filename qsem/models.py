"""The chained semantic model φ -> Φ -> Ψ -> Λ -> Ω -> readout, and its profiles.

One model family (:class:`SemanticModel`) serves every profile (AGI-A..D);
a profile fixes which axes are kept and which circuit registers exist:

======  ==============  ==============================================================
name    kept axes       configuration
======  ==============  ==============================================================
AGI-A   [L, S, C]       S = 3, C = 2, diagonal operators (no O axis), qutrit head
AGI-B   [L, S, C, O]    S = 3, C = 2, full operators on O = S·C (order-dependent)
AGI-C   [L, S]          S = 3, C = 1, Z = 1, diagonal operators: truth only, one qutrit
AGI-D   [L, C, Z]       S = 1, C = 3, Z = 2, diagonal operators, two-qubit head on C
======  ==============  ==============================================================

Without the O axis the per-position operators are diagonal, so they commute
and the fold forgets the order of the tokens.

The forward pass (``B`` batch, ``L`` positions):

1. φ = :class:`~qsem.layers.SemanticEncoder` (tokens) -- ``(B, L, S, C)``;
2. Φ = :class:`~qsem.layers.NonCommutativeComposer` (φ, mask): operators and
   the prefix states ``r_l = u (M_1 ⊗' ... ⊗' M_l)``; padding is the identity,
   so ``r_L`` is the state of the whole query (the *pooled* representation);
3. Ψ = :class:`~qsem.layers.EmergenceStack` (r_L) -- ``(B, 1, S, C, P)``;
4. Λ = :class:`~qsem.layers.HolographicReducer` (Ψ) -- ``(B, 1, S, C, P, Z)``;
   features = ``proj_{Z→S,C}(Λ)`` (``S·C`` numbers) and the latent weights (``Z``);
5. Ω = :class:`~qsem.layers.QuantumSemanticLayer` (features): one circuit per
   query (Ω runs on the pooled representation, not on every position: only
   the last position feeds the answer, and it keeps the simulation to ``B``
   small circuits per step), simulated once; the state is wrapped as a
   :class:`qsem.tensors.Omega` and ``φ_out = Π_edge(Ω)`` (:func:`qsem.tensors.pi_edge`)
   is the prediction distribution over S×C;
6. the readout head: log-probabilities of ``(T, F, U)`` (the qutrit head: the log
   of the S marginal of ``φ_out``).

The maths of each step is written once, in :mod:`qsem.tensors` (⊗' and the fold,
``proj_{Z→S,C}``, Ω and Π_edge), and the layers call it: :meth:`SemanticModel.intermediates`
returns what analysis reads.

Training uses the hard-label loss :func:`hard_label_loss` (cross-entropy on
the user labels; label ``-1`` = absent, masked out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.layers import (
    EmergenceStack,
    HolographicReducer,
    NonCommutativeComposer,
    QuantumSemanticLayer,
    SemanticEncoder,
    make_head,
)
from qsem.tensors import pi_edge_born

__all__ = ["PROFILES", "ModelConfig", "SemanticModel", "hard_label_loss", "profile_config"]


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`SemanticModel` (defaults: profile AGI-B)."""

    vocab_size: int = 15
    s_dim: int = 3
    c_dim: int = 2
    z_dim: int = 2
    n_slices: int = 1
    operator: str = "full"
    hidden: int = 32
    lam: float = 0.05
    learn_lam: bool = True
    q_layers: int = 1
    noise: float = 0.0
    backend: str = "torch"
    head: str = "qutrit"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "s_dim", "c_dim", "z_dim", "n_slices", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise arg_error(name, f"must be an integer >= 1, got {v!r}")
        if self.operator not in ("full", "diagonal"):
            raise arg_error("operator", f"expected 'full' or 'diagonal', got {self.operator!r}")
        if self.head not in ("qutrit", "softmax", "two_qubit"):
            raise arg_error(
                "head", f"expected 'qutrit', 'softmax' or 'two_qubit', got {self.head!r}"
            )
        if self.head == "qutrit" and self.s_dim != 3:
            raise arg_error("head", "the qutrit head needs s_dim = 3")


#: profile name -> (kept axes, overrides of :class:`ModelConfig`)
PROFILES: dict[str, tuple[str, dict[str, Any]]] = {
    "AGI-A": ("L,S,C", {"s_dim": 3, "c_dim": 2, "z_dim": 2, "operator": "diagonal"}),
    "AGI-B": ("L,S,C,O", {"s_dim": 3, "c_dim": 2, "z_dim": 2, "operator": "full"}),
    "AGI-C": ("L,S", {"s_dim": 3, "c_dim": 1, "z_dim": 1, "operator": "diagonal"}),
    "AGI-D": (
        "L,C,Z",
        {"s_dim": 1, "c_dim": 3, "z_dim": 2, "operator": "diagonal", "head": "two_qubit"},
    ),
}


def profile_config(name: str, base: ModelConfig | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of profile ``name`` (other fields from ``base``)."""
    if name not in PROFILES:
        raise arg_error("name", f"unknown profile {name!r}; known: {sorted(PROFILES)}")
    return replace(base or ModelConfig(), **PROFILES[name][1])


class SemanticModel(torch.nn.Module):
    """φ -> Φ -> Ψ -> Λ -> Ω -> head; ``forward(tokens, mask)`` -> log-probabilities ``(B, 3)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise arg_error("cfg", f"expected a ModelConfig, got {type(cfg).__name__}",
                            QsemTypeError)  # fmt: skip
        self.cfg = cfg
        self.encoder = SemanticEncoder(cfg.vocab_size, cfg.s_dim, cfg.c_dim)
        self.composer = NonCommutativeComposer(
            cfg.s_dim, cfg.c_dim, mode=cfg.operator, hidden=cfg.hidden, lam=cfg.lam,
            learn_lam=cfg.learn_lam,
        )  # fmt: skip
        self.emergence = EmergenceStack(cfg.s_dim, cfg.c_dim, cfg.n_slices)
        self.holographic = HolographicReducer(cfg.s_dim, cfg.c_dim, cfg.z_dim)
        self.omega = QuantumSemanticLayer(
            cfg.s_dim * cfg.c_dim + cfg.z_dim, cfg.s_dim, cfg.c_dim, cfg.z_dim,
            layers=cfg.q_layers, noise=cfg.noise, backend=cfg.backend,
        )  # fmt: skip
        n_out = 1
        for d in self.omega.dims:
            n_out *= d
        self.head = make_head(cfg.head, n_out)

    def intermediates(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Every tensor of the chain, for ``tokens`` ``(B, L)`` (``mask``: ``tokens != 0``).

        ======================  ==========================================================
        key                     value
        ======================  ==========================================================
        ``phi``                 φ ``(B, L, S, C)`` (encoder)
        ``ops``                 Φ operators ``(B, L, O, O)``, ``O = S·C``
        ``prefix``              ``r_l = u (M_1 ⊗' ... ⊗' M_l)`` ``(B, L, S, C)``
        ``psi``                 Ψ ``(B, 1, S, C, P)`` of the pooled state ``r_L``
        ``lam``                 Λ ``(B, 1, S, C, P, Z)`` (weighted components)
        ``features``            the circuit's input ``(B, 1, S·C + Z)``
        ``omega``               Ω, a :class:`qsem.tensors.Omega` ``(B, 1, S, C_reg, 1, Z_reg,
                                Psi)`` (one state per query, P = 1; ``Psi = 1`` without
                                noise); ``None`` on a backend other than the torch engine
        ``omega_params``        the bindings of ``self.omega.circuit`` (rows = queries)
        ``born``                joint Born probabilities ``(B, 1, dS, dC, dZ)``
        ``phi_out``             ``Π_edge(Ω)`` ``(B, 1, S, C)`` (:func:`qsem.tensors.pi_edge`,
                                per query; each ``[b, 0]`` sums to 1)
        ``logp``                ``(B, 3)`` log-probabilities of (T, F, U) from the head
        ======================  ==========================================================

        The circuits are simulated once: ``born``, ``omega`` and ``phi_out`` come from
        one state. ``phi_out`` is Π_edge of the Born weights of that state,
        :func:`qsem.tensors.pi_edge_born` — the maths :func:`qsem.tensors.pi_edge` applies
        to Ω, so ``phi_out == pi_edge(omega, reduce_b=False)`` (tested), and the same on
        backends that give Born probabilities only. :meth:`forward` computes the same
        chain without wrapping the state as Ω.
        """
        out = self._chain(tokens, mask)
        state = out.pop("state")
        b, length = out["features"].shape[:2]
        omega = None if state is None else self.omega.to_omega(state, b, length)
        return {**out, "omega": omega}

    def _chain(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> dict[str, Any]:
        """φ -> Φ -> Ψ -> Λ -> Ω (one simulation) -> φ_out -> head; the state unwrapped."""
        phi = self.encoder(tokens)
        if mask is None:
            mask = tokens != 0
        ops, prefix = self.composer(phi, mask)
        pooled = prefix[:, -1:]
        psi = self.emergence(pooled)
        lam_t, pi = self.holographic.components(psi)
        features = self.holographic.features(lam_t, pi, self.emergence.alpha)
        params, state, born = self.omega.simulate(features)
        # Born weights (B, 1, S, C_reg, P = 1): what Omega.born() gives
        phi_out = pi_edge_born(born.sum(-1)[..., None], self.cfg.c_dim, reduce_b=False).data
        logp = self.head(phi_out if self.head.reads == "phi_out" else born)[:, 0]
        return {"phi": phi, "ops": ops, "prefix": prefix, "psi": psi,
                "lam": self.holographic.joint(lam_t, pi), "features": features,
                "omega_params": params, "born": born, "phi_out": phi_out, "logp": logp,
                "state": state}  # fmt: skip

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._chain(tokens, mask)["logp"]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "parameters": self.num_parameters(),
                "circuit_dims": list(self.omega.dims)}  # fmt: skip


def hard_label_loss(logp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the present labels (``-1`` = absent, masked out).

    Returns 0 (with a gradient path) when no label is present.
    """
    if not isinstance(logp, torch.Tensor) or logp.dim() != 2 or logp.shape[1] != 3:
        shape = tuple(logp.shape) if isinstance(logp, torch.Tensor) else type(logp).__name__
        raise arg_error("logp", f"expected log-probabilities of shape (B, 3), got {shape}")
    if not isinstance(labels, torch.Tensor) or labels.shape != logp.shape[:1]:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise arg_error("labels", f"expected shape ({logp.shape[0]},), got {shape}")
    if labels.dtype != torch.long:
        raise arg_error("labels", f"expected int64 labels, got {labels.dtype}", QsemTypeError)
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) > 2):
        raise arg_error("labels", "labels must be 0 (T), 1 (F), 2 (U) or -1 (absent)")
    present = labels >= 0
    if not bool(present.any()):
        return logp.sum() * 0.0
    return torch.nn.functional.nll_loss(logp[present], labels[present])
