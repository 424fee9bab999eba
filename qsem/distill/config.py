"""The settings of the self-distillation loop: :class:`DistillConfig`.

Every field is a ``distill.*`` key of ``qsem run self-distill``; a bad value
raises :class:`qsem.errors.ConfigError` naming the key.

>>> DistillConfig(sharpen=0.5, soft_threshold=0.8, ramp_steps=100).teacher
'ema'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qsem.checks import check_int
from qsem.errors import ConfigError

from .probe import SIGNALS

__all__ = ["DistillConfig"]


@dataclass(frozen=True)
class DistillConfig:
    """Settings of :class:`SelfDistiller` (validated: a bad value raises ConfigError naming it)."""

    #: weight of the soft term τ²·KL(φ_τ^teacher ‖ φ_τ^student)
    w_soft: float = 1.0
    #: weight of the hard (masked cross-entropy) term
    w_hard: float = 1.0
    #: τ: φ^(1/τ) renormalised on both sides of the KL
    temperature: float = 2.0
    #: sharpening s in (0, 1]: the teacher's side of the KL is tempered by s·τ (1: none)
    sharpen: float = 1.0
    #: confidence mask: a position enters the soft term only where the teacher's truth
    #: marginal max_s Σ_c φ_T ≥ this (0: every position)
    soft_threshold: float = 0.0
    #: ramp-up of w_soft over the first ramp_steps steps, exp(−5 (1 − t/R)²) (0: none)
    ramp_steps: int = 0
    #: labelled queries drawn (with the loop's generator) for an extra hard term each step,
    #: w_hard · CE on them (0: none; needs ``correction``)
    labelled_batch: int = 0
    #: "ema" (an EMA copy, decay ema_decay) or "previous" (the model at the previous step)
    teacher: str = "ema"
    #: decay d of the EMA teacher, θ_T ← d·θ_T + (1 − d)·θ
    ema_decay: float = 0.99
    #: probe (and detector) period in optimiser steps
    probe_every: int = 10
    #: detectors, by kind: frobenius, adaptive, bocpd (default settings), l1 (on Δφ),
    #: quantum (exact), quantum_shots (torch engine), quantum_aer (Aer)
    detectors: tuple[str, ...] = ("frobenius", "adaptive", "l1", "quantum")
    #: detectors whose events append a slice (others are recorded only)
    trigger: tuple[str, ...] = ("frobenius",)
    #: frobenius detector: fires when Δφ (Frobenius norm) exceeds this
    theta_frobenius: float = 0.5
    #: adaptive detector: fires at median + k·(robust spread) of its window
    adaptive_k: float = 3.0
    #: adaptive detector: trailing window, in probes
    adaptive_window: int = 10
    #: adaptive detector: probes in the window before it may fire
    adaptive_min_history: int = 10
    #: l1 detector: fires when the L1 norm of Δφ exceeds this
    theta_l1: float = 5.0
    #: quantum detectors: fire when the distance 1 − F between successive Ω exceeds this
    theta_quantum: float = 1e-2
    #: shots per probe query of quantum_shots / quantum_aer (compute–uncompute estimate)
    shots: int = 1000
    #: probe queries the Aer estimate covers (the first ones; 0: all)
    aer_queries: int = 8
    #: confidence level of the shot-estimate intervals
    confidence: float = 0.95
    #: no new slice (and no detector event) within this many steps of the last one
    refractory: int = 50
    #: most P slices the emergence stack may grow to
    max_slices: int = 4
    #: hard-label-only steps on the labelled queries after each appended slice (0: none)
    correction_steps: int = 0
    #: queries per correction step
    correction_batch: int = 32
    #: E_pot: trailing window, in probes
    epot_window: int = 20
    #: E_pot weights α1..α4 of its four terms
    epot_alphas: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    #: E_pot critical threshold Θ_epot
    theta_epot: float = 2.0
    #: write snapshots/step-N.pt at each appended slice
    snapshots: bool = True

    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"config key '{key}': {msg}")

        for key in ("w_soft", "w_hard", "theta_frobenius", "adaptive_k", "theta_l1",
                    "theta_quantum", "theta_epot"):  # fmt: skip
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise bad(key, f"must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.sharpen) and 0 < self.sharpen <= 1):
            raise bad("sharpen", f"must lie in (0, 1], got {self.sharpen}")
        if not 0 <= self.soft_threshold <= 1:
            raise bad("soft_threshold", f"must lie in [0, 1], got {self.soft_threshold}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise bad("temperature", f"must be a positive finite number, got {self.temperature}")
        if self.teacher not in ("ema", "previous"):
            raise bad("teacher", f"expected 'ema' or 'previous', got {self.teacher!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise bad("ema_decay", f"must lie in [0, 1), got {self.ema_decay}")
        if not 0.5 <= self.confidence < 1.0:
            raise bad("confidence", f"must lie in [0.5, 1), got {self.confidence}")
        for key in ("probe_every", "adaptive_window", "adaptive_min_history", "max_slices",
                    "correction_batch", "epot_window"):  # fmt: skip
            check_int(key, getattr(self, key), 1, config=True)
        for key in ("shots", "refractory", "correction_steps", "aer_queries", "ramp_steps",
                    "labelled_batch"):  # fmt: skip
            check_int(key, getattr(self, key), 0, config=True)
        if self.adaptive_min_history > self.adaptive_window:
            raise bad("adaptive_min_history", "must be <= adaptive_window")
        for name in self.detectors:
            if name not in SIGNALS:
                raise bad("detectors", f"unknown detector {name!r}; known: {sorted(SIGNALS)}")
        if len(set(self.detectors)) != len(self.detectors):
            raise bad("detectors", f"a detector is listed twice: {list(self.detectors)}")
        for name in self.trigger:
            if name not in self.detectors:
                raise bad("trigger", f"{name!r} is not one of the detectors {list(self.detectors)}")
        if {"quantum_shots", "quantum_aer"} & set(self.detectors) and self.shots < 1:
            raise bad("shots", "shot estimates need shots >= 1")
        if len(self.epot_alphas) != 4 or any(a < 0 for a in self.epot_alphas):
            raise bad("epot_alphas", f"expected 4 weights >= 0, got {list(self.epot_alphas)}")
