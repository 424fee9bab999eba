"""Losses of the self-distillation loop and the EMA teacher update.

φ is a distribution over ``S × C`` per position: a tensor ``(B, L, S, C)`` whose
entries ``φ[b, l]`` sum to 1.

* Temperature on a distribution: ``φ_τ ∝ φ^(1/τ)`` renormalised over ``S × C``,
  i.e. ``softmax(log φ / τ)`` — exactly the Hinton temperature with the logits
  ``log φ`` (τ > 1 flattens, τ < 1 sharpens); ``log φ`` is taken of ``φ``
  clamped to ``1e-12`` so that zero entries stay finite.
* Soft term: ``τ² · KL(φ_τ^teacher ‖ φ_τ^student)``, the mean over positions
  ``(b, l)`` (the batch-mean KL of :func:`soft_target_loss` over ``B·L`` rows).
  The ``τ²`` keeps the gradient's size as ``τ`` grows (Hinton et al. 2015).
* Hard term: masked cross-entropy of the truth marginal ``Σ_c φ[b, l, s, c]``
  against the user's labels over ``S`` (``-1`` = absent), by
  :func:`qsem.models.hard_label_loss` (0, with a gradient path, when no label
  is present); labels ``(B,)`` label the last position, ``(B, L)`` every position.

``L = w_soft · τ² · KL(φ_teacher ‖ φ_student) + w_hard · CE_masked``.

Few-label options (defaults: off, the plain loss above):

* Sharpening ``s ≤ 1``: the teacher's side is tempered by ``s·τ`` instead of ``τ``,
  ``softmax(log φ_T / (s τ))`` (MixMatch / UDA sharpening; ``s = 1``: none).
* Confidence mask ``c``: a position counts in the soft term only where the
  teacher's truth marginal ``max_s Σ_c φ_T[s, c] ≥ c``; the sum is still divided
  by all ``B·L`` positions (FixMatch), so few confident positions give a small term.
* Ramp-up: :func:`ramp_up` ``= exp(−5 (1 − t/R)²)`` for ``t < R`` (Laine & Aila
  2017; Tarvainen & Valpola 2017), the factor of ``w_soft`` at step ``t``.

>>> import torch
>>> p = torch.full((1, 1, 3, 2), 1 / 6)  # one query, uniform over S × C
>>> loss, parts = self_distillation_loss(p, p, torch.tensor([0]), temperature=2.0)
>>> round(float(loss), 4), parts["soft"]  # only the hard term: -log(1/3)
(1.0986, 0.0)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from qsem.checks import check_real
from qsem.circuits.errors import arg_error
from qsem.models import hard_label_loss

__all__ = [
    "LOG_EPS",
    "confidence_mask",
    "ema_update",
    "ramp_up",
    "self_distillation_loss",
    "soft_target_loss",
    "truth_log_probs",
]

#: φ is clamped to this before its logarithm is taken.
LOG_EPS = 1e-12


def _check_phi(phi: Any, name: str) -> torch.Tensor:
    if not isinstance(phi, torch.Tensor) or phi.dim() != 4 or phi.is_complex():
        shape = tuple(phi.shape) if isinstance(phi, torch.Tensor) else type(phi).__name__
        raise arg_error(name, f"expected a real tensor (B, L, S, C), got {shape}")
    return phi


def soft_target_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``τ² · KL(softmax(t/τ) ‖ softmax(s/τ))``, the mean over rows of ``(N, K)`` logits.

    The soft term of Hinton distillation (the teacher is detached). Used by
    :func:`self_distillation_loss` (logits ``log φ``) and by
    :func:`qsem.narrow.distill.distillation_loss`. ``weights`` ``(N,)``: the
    mean over rows of ``w_r · τ² · KL_r`` instead (``None``: every ``w_r = 1``).

    >>> s = torch.zeros(1, 2); t = torch.tensor([[0.0, 1.0]])
    >>> round(float(soft_target_loss(s, t, 1.0)), 6)  # KL((0.269, 0.731) ‖ (0.5, 0.5))
    0.110944
    """
    tau = check_real("temperature", temperature, minimum=0, strict=True)
    if not isinstance(student_logits, torch.Tensor) or student_logits.dim() != 2:
        raise arg_error("student_logits", "expected a (rows, classes) tensor")
    if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.shape != student_logits.shape:
        raise arg_error(
            "teacher_logits",
            f"expected shape {tuple(student_logits.shape)} like student_logits, "
            f"got {getattr(teacher_logits, 'shape', teacher_logits)}",
        )
    log_s = F.log_softmax(student_logits / tau, dim=1)
    log_t = F.log_softmax(teacher_logits.detach() / tau, dim=1)
    if weights is None:
        kl = F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")
        return tau * tau * kl
    if not isinstance(weights, torch.Tensor) or weights.shape != student_logits.shape[:1]:
        raise arg_error("weights", f"expected shape ({student_logits.shape[0]},)")
    rows = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    return tau * tau * (weights.detach() * rows).mean()


def confidence_mask(teacher: torch.Tensor, threshold: float) -> torch.Tensor:
    """1.0 where the teacher's truth marginal ``max_s Σ_c φ[b, l, s, c] ≥ threshold``, else 0.

    Flattened to ``(B·L,)``, the rows of the soft term. ``threshold = 0``: all ones.

    >>> phi = torch.tensor([0.9, 0.05, 0.05, 0.4, 0.3, 0.3]).reshape(2, 1, 3, 1)
    >>> confidence_mask(phi, 0.8).tolist()
    [1.0, 0.0]
    """
    t = check_real("threshold", threshold, minimum=0)
    marginal = _check_phi(teacher, "teacher").detach().sum(dim=-1).flatten(0, 1)
    return (marginal.max(dim=1).values >= t).to(marginal.dtype)


def ramp_up(step: int, ramp_steps: int) -> float:
    """``exp(−5 (1 − t/R)²)`` for ``t < R``, else 1 (``R = 0``: always 1): the soft weight's ramp.

    The sigmoid-shaped ramp of Laine & Aila (2017) and Tarvainen & Valpola (2017).

    >>> [round(ramp_up(t, 10), 4) for t in (0, 5, 10)]
    [0.0067, 0.2865, 1.0]
    """
    if ramp_steps <= 0 or step >= ramp_steps:
        return 1.0
    x = 1.0 - max(step, 0) / ramp_steps
    return math.exp(-5.0 * x * x)


def truth_log_probs(phi: torch.Tensor) -> torch.Tensor:
    """``log Σ_c φ[b, l, s, c]``: the truth marginal's log-probabilities ``(B, L, S)``."""
    return _check_phi(phi, "phi").sum(dim=-1).clamp_min(LOG_EPS).log()


def self_distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    w_soft: float = 1.0,
    w_hard: float = 1.0,
    sharpen: float = 1.0,
    threshold: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``w_soft · τ² · KL(φ_τ^teacher ‖ φ_τ^student) + w_hard · CE_masked``; and its parts.

    ``student`` and ``teacher`` are φ ``(B, L, S, C)`` (``teacher`` detached here;
    ``None`` or ``w_soft = 0``: no soft term); ``labels`` ``(B,)`` (last position)
    or ``(B, L)``, int64 over ``S = 3`` truth values, ``-1`` = absent. ``sharpen``
    ``s`` in (0, 1]: the teacher's side is tempered by ``s·τ``; ``threshold``: the
    confidence mask (:func:`confidence_mask`) of the soft term's positions. Returns the
    loss and ``{"soft": τ²·KL, "hard": CE, "labelled": n, "confident": share of
    positions in the soft term}`` (unweighted parts).
    """
    s = _check_phi(student, "student")
    for name, w in (("w_soft", w_soft), ("w_hard", w_hard)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf"):
            raise arg_error(name, f"must be a finite number >= 0, got {w!r}")
    if not isinstance(labels, torch.Tensor) or labels.shape not in (s.shape[:1], s.shape[:2]):
        raise arg_error("labels", f"expected shape {tuple(s.shape[:1])} or {tuple(s.shape[:2])}")
    sharp = check_real("sharpen", sharpen, minimum=0, strict=True, maximum=1)
    zero = s.sum() * 0.0
    soft, confident = zero, 1.0
    if teacher is not None and w_soft > 0:
        t = _check_phi(teacher, "teacher")
        if t.shape != s.shape:
            raise arg_error("teacher", f"expected shape {tuple(s.shape)}, got {tuple(t.shape)}")
        mask = confidence_mask(t, threshold) if threshold > 0 else None
        confident = 1.0 if mask is None else float(mask.mean())
        soft = soft_target_loss(
            s.clamp_min(LOG_EPS).log().flatten(0, 1).flatten(1),
            t.detach().clamp_min(LOG_EPS).log().flatten(0, 1).flatten(1) / sharp,
            temperature,
            mask,
        )
    hard = zero
    n_labelled = int((labels >= 0).sum())
    if w_hard > 0 and n_labelled:
        logp = truth_log_probs(s)
        if labels.dim() == 1:
            logp, lab = logp[:, -1], labels
        else:
            logp, lab = logp.flatten(0, 1), labels.flatten()
        hard = hard_label_loss(logp, lab)
    loss = w_soft * soft + w_hard * hard
    return loss, {
        "soft": float(soft.detach()),
        "hard": float(hard.detach()),
        "labelled": n_labelled,
        "confident": confident,
    }


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """``θ_teacher ← d · θ_teacher + (1 − d) · θ_student`` for every parameter (by name).

    Buffers are copied. ``decay = 0`` copies the student (the previous-step teacher).
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay <= 1:
        raise arg_error("decay", f"must lie in [0, 1], got {decay!r}")
    params = dict(teacher.named_parameters())
    for name, p in student.named_parameters():
        if name not in params or params[name].shape != p.shape:
            raise arg_error("teacher", f"has no parameter {name!r} of shape {tuple(p.shape)}")
        params[name].mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    buffers = dict(teacher.named_buffers())
    for name, b in student.named_buffers():
        buffers[name].copy_(b)
