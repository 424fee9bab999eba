"""Personal readings: per-user Π_edge weights, readout calibration and sensitivity θ^(u).

A trained :class:`qsem.models.SemanticModel` (the shared base, frozen) reads a
query as ``φ_out = Π_edge(Ω)`` over S×C (truth × category) and its truth
marginal ``p(k)``, ``k ∈ {T, F, U}``. A user's **personal reading**
(:class:`PersonalReading`) has its own few parameters on top of it:

* Π_edge weights over the slices: ``α^(u) = softmax(a^(u))`` replaces the base's
  slice weights ``α`` (the mix ``Σ_p α_p Ψ[..., p]`` the chain reads Ω from);
  each query is one branch (B = the batch), so there are no branch weights to learn;
* a readout calibration, a column-stochastic ``M^(u) = softmax(m^(u), dim=0)``
  (3×3): ``p^(u)(y) = Σ_k M^(u)[y, k] p(k)``, the user's answer given the model's
  reading, and ``φ^(u)[y, c] = Σ_k M^(u)[y, k] φ_out[k, c]``. ``M = I`` reads as
  the base; a closed-world user (unknown means false) has ``M[F, U] ≈ 1``.

Both are fitted from the user's labels (full-batch Adam on the cross-entropy,
the base frozen). The user's labels arrive one at a time (the stream): after each
one the reading takes ``steps_per_label`` steps and reads a fixed probe batch,
``φ_t^(u)``; ``Δφ_t = ‖φ_t − φ_{t−1}‖₁`` is the user's history, and the
emergence sensitivity is ``θ^(u) = median(Δφ) + k · 1.4826 · MAD(Δφ)`` (a robust
``k``-sigma bound of that user's own Δφ). The L1 detector
(:class:`qsem.emergence.L1Detector`, ``θ^(u)``) runs on the stream ``φ_t``; its
events are the user's ``T^(u)``.

>>> # reading = PersonalReading(model); fit_reading(reading, tokens, labels, PersonalConfig())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from qsem.checks import check_int, check_real
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.emergence import L1Detector
from qsem.emergence.detectors import MAD_SCALE
from qsem.models import SemanticModel, hard_label_loss
from qsem.training import Step, descent, make_optimizer, run_steps

from .store import EventRecord, HistoryStore, StepRecord

__all__ = [
    "PersonalConfig",
    "PersonalReading",
    "UserData",
    "UserFit",
    "fit_reading",
    "learn_theta",
    "personalise_user",
    "reading_accuracy",
]

#: the slice-weight parameter of the base that a personal reading replaces.
_SLICE_KEY = "emergence.weight_logits"


@dataclass(frozen=True)
class PersonalConfig:
    """How a personal reading is fitted (the ``personal.*`` keys of ``qsem run personalise``)."""

    #: full-batch optimiser steps of the final fit on all of the user's labels
    steps: int = 150
    #: optimiser steps after each arriving label (the stream that gives Δφ^(u))
    steps_per_label: int = 4
    #: Adam learning rate of the personal parameters
    lr: float = 0.1
    #: initial diagonal logit of the calibration (M starts near the identity)
    calibration_init: float = 3.0
    #: learn the per-user slice weights α^(u) (else only the calibration)
    slice_weights: bool = True
    #: θ^(u) = median(Δφ) + theta_k · 1.4826 · MAD(Δφ) of the user's history
    theta_k: float = 3.0
    #: queries in the fixed probe batch read after each label
    probe_size: int = 32

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 0, config=True)
        for key in ("steps_per_label", "probe_size"):
            check_int(key, getattr(self, key), 1, config=True)
        for key in ("calibration_init", "theta_k"):
            check_real(key, getattr(self, key), minimum=0, config=True)
        check_real("lr", self.lr, minimum=0, strict=True, config=True)


class _Chain(torch.nn.Module):
    """``forward`` = the base's :meth:`~qsem.models.SemanticModel.intermediates` (for
    :func:`torch.func.functional_call` with the user's slice weights)."""

    def __init__(self, base: SemanticModel) -> None:
        super().__init__()
        self.base = base

    def forward(self, tokens: torch.Tensor) -> dict[str, Any]:
        return self.base.intermediates(tokens)


class PersonalReading(torch.nn.Module):
    """A user's reading of a frozen base model: slice weights ``α^(u)`` and calibration ``M^(u)``.

    ``forward(tokens)`` -> the user's log-probabilities of (T, F, U) ``(B, 3)``;
    :meth:`read` also gives the personal ``φ^(u)`` ``(B, S, C)``. Only the
    personal parameters (:meth:`personal_state`) are trainable; the base is shared
    by reference, not copied, and never changed (its parameters enter detached).
    """

    def __init__(self, base: SemanticModel, calibration_init: float = 3.0) -> None:
        super().__init__()
        if not isinstance(base, SemanticModel):
            raise arg_error("base", f"expected a SemanticModel, got {type(base).__name__}",
                            QsemTypeError)  # fmt: skip
        if base.cfg.s_dim != 3:
            raise arg_error("base", f"needs the truth axis S = 3, got s_dim = {base.cfg.s_dim}")
        self._chain = [_Chain(base)]  # a list: the base is not a submodule of the reading
        self.slice_logits = torch.nn.Parameter(base.emergence.weight_logits.detach().clone())
        self.calib_logits = torch.nn.Parameter(calibration_init * torch.eye(3))

    @property
    def base(self) -> SemanticModel:
        return self._chain[0].base

    @property
    def calibration(self) -> torch.Tensor:
        """``M^(u)`` ``(3, 3)``, columns sum to 1: ``M[y, k] = P(user says y | model reads k)``."""
        return torch.softmax(self.calib_logits, dim=0)

    @property
    def slice_weights(self) -> torch.Tensor:
        """``α^(u)`` ``(P,)``."""
        return torch.softmax(self.slice_logits, dim=0)

    def read(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p^(u) (B, 3), φ^(u) (B, S, C))`` of the queries ``tokens`` ``(B, L)``."""
        params = {"base." + n: p.detach() for n, p in self.base.named_parameters()}
        params["base." + _SLICE_KEY] = self.slice_logits
        out = functional_call(self._chain[0], params, (tokens,))
        m = self.calibration.to(out["logp"].dtype)
        p = torch.exp(out["logp"]) @ m.T
        phi = torch.einsum("yk,bkc->byc", m.to(out["phi_out"].dtype), out["phi_out"][:, 0])
        return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), phi

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.read(tokens)[0]

    def personal_state(self) -> dict[str, torch.Tensor]:
        """The user's parameters (what the history store keeps): slice and calibration logits."""
        return {"slice_logits": self.slice_logits.detach().clone(),
                "calib_logits": self.calib_logits.detach().clone()}  # fmt: skip

    @torch.no_grad()
    def load_personal_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`personal_state` (tensors or arrays)."""
        self.slice_logits.copy_(torch.as_tensor(np.asarray(state["slice_logits"])))
        self.calib_logits.copy_(torch.as_tensor(np.asarray(state["calib_logits"])))


@dataclass
class UserData:
    """A simulated user: name, world (``open``/``closed``), labelled and held-out queries.

    ``train_*``: the user's labels for fitting (at most a few dozen); ``test_*``: the
    user's held-out labels; ``disputed``: held-out queries on which the worlds differ.
    """

    name: str
    world: str
    train_tokens: torch.Tensor
    train_labels: torch.Tensor
    test_tokens: torch.Tensor
    test_labels: torch.Tensor
    disputed: torch.Tensor
    train_queries: list[str] = field(default_factory=list)
    test_queries: list[str] = field(default_factory=list)


@dataclass
class UserFit:
    """A fitted personal reading and its stream: θ^(u), Δφ history, events.

    ``theta`` is ``None`` when the stream has no Δφ (fewer than two labels): there is
    nothing to learn θ^(u) from, no detector runs and ``events`` is empty.
    """

    reading: PersonalReading
    theta: float | None
    dphi: list[float]
    events: list[dict[str, Any]]
    base_accuracy: float
    accuracy: float


def _optimizer(reading: PersonalReading, cfg: PersonalConfig) -> torch.optim.Optimizer:
    params = [reading.calib_logits] + ([reading.slice_logits] if cfg.slice_weights else [])
    return make_optimizer(params, cfg.lr)[0]


def _steps(
    reading: PersonalReading,
    opt: torch.optim.Optimizer,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    n: int,
) -> float:
    last = Step(0, 0.0, 0.0)

    def keep(done: Step) -> None:
        nonlocal last
        last = done

    run_steps(
        descent(opt, lambda _: hard_label_loss(reading(tokens), labels)), range(n), after=keep
    )
    return last.loss


def fit_reading(
    reading: PersonalReading, tokens: torch.Tensor, labels: torch.Tensor, cfg: PersonalConfig
) -> float:
    """Fit the personal parameters on ``(tokens, labels)`` (``cfg.steps`` full-batch Adam
    steps, the base frozen); returns the final loss."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        raise arg_error("tokens", "expected a (B, L) tensor of token ids")
    reading.base.eval()
    return _steps(reading, _optimizer(reading, cfg), tokens, labels, cfg.steps)


def learn_theta(dphi: Sequence[float], k: float) -> float:
    """``θ^(u) = median(Δφ) + k · 1.4826 · MAD(Δφ)``: a robust ``k``-sigma bound.

    >>> round(learn_theta([1.0, 2.0, 3.0, 4.0, 100.0], 3.0), 4)
    7.4478
    """
    x = np.asarray(list(dphi), dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise arg_error("dphi", "expected a non-empty history of finite Δφ values")
    med = float(np.median(x))
    return med + k * MAD_SCALE * float(np.median(np.abs(x - med)))


@torch.no_grad()
def reading_accuracy(reading: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``labels`` the reading's argmax gives (NaN if there are none)."""
    if len(labels) == 0:
        return float("nan")
    reading.eval()
    return float((reading(tokens).argmax(dim=1) == labels).float().mean())


def _stream_events(
    phis: list[np.ndarray], dphi: list[float], k: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """θ^(u) from the Δφ history and the L1 detector's events on the φ stream.

    With no Δφ (fewer than two labels) there is no θ^(u) to learn and no detector
    to run: ``(None, [])``.
    """
    if not dphi:
        return None, []
    theta = learn_theta(dphi, k)
    det = L1Detector(theta)
    events = []
    for t, phi in enumerate(phis):
        ev = det.update(t, phi)
        if ev is not None:
            events.append({**ev.as_dict(), "theta": theta})
    return theta, events


def personalise_user(
    base: SemanticModel,
    user: UserData,
    cfg: PersonalConfig,
    *,
    store: HistoryStore | None = None,
    log: Callable[[int, dict[str, Any]], None] | None = None,
) -> UserFit:
    """Fit ``user``'s reading on the stream of their labels; record H^(u) in ``store``.

    Labels arrive one at a time: after label ``t`` the reading takes
    ``steps_per_label`` Adam steps on the labels so far and reads the probe batch
    (the user's first ``probe_size`` held-out queries, never their labels),
    ``φ_t``; ``Δφ_t = ‖φ_t − φ_{t−1}‖₁``. Then the final fit on all labels
    (:func:`fit_reading`), ``θ^(u)`` from the Δφ history (:func:`learn_theta`) and
    the L1 detector on the stream (with fewer than two labels there is no Δφ: no θ^(u),
    ``theta=None``, and no events). ``store``: the steps (φ_t, Δφ_t, y_t, the
    query), the events, ``θ^(u)`` and the personal parameters are written to it.
    """
    reading = PersonalReading(base, cfg.calibration_init)
    base_acc = reading_accuracy(base, user.test_tokens, user.test_labels)
    base.eval()
    opt = _optimizer(reading, cfg)
    probe = user.test_tokens[: cfg.probe_size]
    phis: list[np.ndarray] = []
    dphi: list[float] = []
    records = []
    for t in range(len(user.train_labels)):
        loss = _steps(reading, opt, user.train_tokens[: t + 1], user.train_labels[: t + 1],
                      cfg.steps_per_label)  # fmt: skip
        with torch.no_grad():
            phi = reading.read(probe)[1].to(torch.float32).numpy()
        d = None if not phis else float(np.abs(phi.astype(np.float64) - phis[-1]).sum())
        phis.append(phi.astype(np.float64))
        if d is not None:
            dphi.append(d)
        query = user.train_queries[t] if t < len(user.train_queries) else None
        records.append(StepRecord(t, phi, d, int(user.train_labels[t]), query))
        if log is not None:
            log(t, {"kind": "label", "user": user.name, "loss": loss, "dphi": d})
    fit_reading(reading, user.train_tokens, user.train_labels, cfg)
    theta, events = _stream_events(phis, dphi, cfg.theta_k)
    if store is not None:
        store.append_steps(user.name, records)
        store.append_events(user.name, [EventRecord(e["step"], e["value"], e["detector"],
                                                    {"theta": theta}) for e in events])  # fmt: skip
        if theta is not None:
            store.set_theta(user.name, theta)
        for name, value in reading.personal_state().items():
            store.set_param(user.name, name, value)
    acc = reading_accuracy(reading, user.test_tokens, user.test_labels)
    return UserFit(reading, theta, dphi, events, base_acc, acc)
