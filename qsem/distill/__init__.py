"""Self-distillation with emergence detection: ``qsem.distill``.

* :mod:`qsem.distill.losses` — the soft term ``τ²·KL(φ_τ^teacher ‖ φ_τ^student)``
  (temperature applied as ``φ^(1/τ)`` renormalised), the masked hard term, the
  EMA teacher update;
* :mod:`qsem.distill.probe` — Δφ (Frobenius, L1), the quantum distance and Bures
  angle between successive Ω states, shot estimates, NCI_avg, E_pot, detectors;
* :mod:`qsem.distill.trainer` — :class:`SelfDistiller` (the loop, its events,
  slices, snapshots and correction bursts, checkpoint state) and
  :func:`append_slice` (a P slice without losing the optimiser's state).

``qsem run self-distill`` (:mod:`qsem.experiments.self_distill`) runs it on the
Kleene task; see the "Self-distillation" page of the documentation.
"""

from .losses import (
    confidence_mask,
    ema_update,
    ramp_up,
    self_distillation_loss,
    soft_target_loss,
    truth_log_probs,
)
from .probe import (
    EPOT_TERMS,
    SHOT_KEYS,
    SIGNALS,
    EmergenceProbe,
    output_distribution,
    state_tensor,
)
from .trainer import (
    DistillConfig,
    Forward,
    SelfDistiller,
    append_slice,
    default_forward,
    make_detectors,
    semantic_outputs,
)

__all__ = [
    "EPOT_TERMS",
    "SHOT_KEYS",
    "SIGNALS",
    "DistillConfig",
    "EmergenceProbe",
    "Forward",
    "SelfDistiller",
    "append_slice",
    "confidence_mask",
    "default_forward",
    "ema_update",
    "make_detectors",
    "output_distribution",
    "ramp_up",
    "self_distillation_loss",
    "semantic_outputs",
    "soft_target_loss",
    "state_tensor",
    "truth_log_probs",
]  # fmt: skip
