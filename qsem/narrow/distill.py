"""Knowledge distillation loss: ``α·CE(s, y) + (1 - α)·T²·KL(softmax(t/T) ‖ softmax(s/T))``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qsem.checks import check_probability
from qsem.circuits.errors import arg_error
from qsem.distill.losses import soft_target_loss

__all__ = ["distillation_loss"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    alpha: float = 0.1,
    temperature: float = 20.0,
) -> torch.Tensor:
    """Hinton-style distillation, batch-mean; ``alpha`` weighs the hard-label cross-entropy.

    The KL term (:func:`qsem.distill.losses.soft_target_loss`) is scaled by ``T²`` so its
    gradients keep their size as ``T`` grows.
    Teacher logits may cover more classes than the student only if you slice them first.
    """
    a = check_probability("alpha", alpha)
    soft = soft_target_loss(student_logits, teacher_logits, temperature)  # checks both, and T
    if not isinstance(targets, torch.Tensor) or targets.shape != student_logits.shape[:1]:
        raise arg_error("targets", f"expected shape ({student_logits.shape[0]},) of class indices")
    ce = F.cross_entropy(student_logits, targets)
    return a * ce + (1 - a) * soft
