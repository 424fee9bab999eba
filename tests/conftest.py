"""Shared test settings: every tolerance lives here, and every test is seeded."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

#: complex128 comparisons against independent references (hand-written, Qiskit, PennyLane).
ATOL_F64 = 1e-9
#: complex64 comparisons.
ATOL_F32 = 2e-5
#: Cross-backend agreement in exact mode (DESIGN.md §4).
ATOL_BACKENDS = 1e-5
#: Central finite differences in float64: step and tolerance.
FD_STEP = 1e-6
FD_ATOL = 1e-6
#: Properties of channels and states (trace 1, Hermitian, PSD, CPTP) in float64.
ATOL_PROPERTY = 1e-9
#: Shot estimates must lie within this many standard errors of the exact value.
SHOT_SIGMAS = 4.0

settings.register_profile(
    "qsem",
    max_examples=int(os.environ.get("QSEM_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("qsem")


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Seed Python, NumPy and torch before every test."""
    random.seed(1234)
    np.random.seed(1234)  # noqa: NPY002 - libraries (PennyLane qutrit sampling) use the global RNG
    torch.manual_seed(1234)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


#: complex64 gradients against complex128 ones (autograd in single precision).
GRAD_ATOL_F32 = 1e-4

#: Percentile-bootstrap interval ends against an independent resampling (Monte Carlo
#: error of 9999 resamples), as a fraction of the standard error of the mean.
BOOTSTRAP_REL_TOL = 0.1
#: Results of the same trial run by different sweep executors (same seed, one torch thread):
#: exact in practice; this bounds float noise should a platform reorder reductions.
SWEEP_ATOL = 1e-12
