"""Shared test settings: every tolerance lives here, and every test is seeded."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# A suite started in the background (``nohup make test &``, a non-interactive shell's
# ``&``) inherits SIGINT ignored, and so would every command the Ctrl-C tests start: a
# Python started that way never raises KeyboardInterrupt. Those tests check what a user
# at a terminal gets, so the suite gives its commands a terminal's default handling.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
#: qsem's Qiskit primitives against Aer's / Qiskit's exact ones (complex128).
ATOL_PRIMITIVES = 1e-10
#: Smallest chi-square p-value accepted over a seeded family of ~500 goodness-of-fit tests.
SAMPLE_P_MIN = 1e-5
#: qsem's noisy density matrices / probabilities against Qiskit Aer's (complex128).
ATOL_NOISE_AER = 1e-10
#: ... against Aer simulating a model as given: Aer drops mixture terms of probability < 1e-10.
ATOL_AER_TRUNCATION = 1e-8
#: Sampled counts against exact probabilities: a chi-square test must not reject at this level.
CHI2_ALPHA = 1e-3

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
#: An optimiser's step or learning rate against its hand-written update / closed form
#: (float64; torch's recursive cosine schedule differs from the closed form by rounding).
ATOL_OPTIM = 1e-12


#: ``when(step, values)`` of :func:`interrupt_log`: the ``RunContext.log`` call to fail.
LogCondition = Callable[[int, dict[str, Any]], bool]


@pytest.fixture
def interrupt_log(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Any]:
    """Interrupt a run from inside, at a chosen metrics record (the one home of this trick).

    ``with interrupt_log(when, error=KeyboardInterrupt) as calls:`` makes
    ``RunContext.log`` raise ``error`` the first time ``when(step, values)`` holds
    (``calls["n"]`` counts the raises); on leaving the block ``log`` is itself again.
    """
    from qsem.runner import RunContext

    @contextmanager
    def arm(
        when: LogCondition, error: type[BaseException] = KeyboardInterrupt
    ) -> Iterator[dict[str, int]]:
        original = RunContext.log
        calls = {"n": 0}

        def log(ctx: RunContext, step: int, **values: Any) -> None:
            if calls["n"] == 0 and when(step, values):
                calls["n"] += 1
                raise error("interrupted by the test")
            original(ctx, step, **values)

        monkeypatch.setattr(RunContext, "log", log)
        try:
            yield calls
        finally:
            monkeypatch.setattr(RunContext, "log", original)

    return arm


#: qml.device("qsem") against PennyLane 0.45's devices, complex128 (issue 18).
ATOL_PL_DEVICE = 1e-10


@pytest.fixture
def restore_plans() -> Iterator[list[tuple[Any, Any]]]:
    """Plans whose first step a test replaced with a spy, put back after the test:
    compiled plans are shared by every simulator in the process."""
    saved: list[tuple[Any, Any]] = []
    yield saved
    for plan, step in reversed(saved):
        plan.steps[0] = step


#: The documented figures of the default story run (README, docs/story.md) on another
#: machine, CPU or library build (float reductions in another order): accuracies, NLLs,
#: their standard deviations and differences within STORY_ATOL_METRIC; shares in percent
#: within STORY_ATOL_PERCENT points; counts within STORY_RTOL_COUNT (relative) or 2;
#: p-values on the same side of 0.05 (the verdict); latencies and file sizes not compared.
STORY_ATOL_METRIC = 0.03
STORY_ATOL_PERCENT = 15.0
STORY_RTOL_COUNT = 0.3
