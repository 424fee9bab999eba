"""Shots on a simulator: the default draws the counts from the exact probabilities.

Decision (docs/similarity.md, "Shots on a simulator"): ``sampling="auto"`` (the default
of the overlap estimators) resolves to ``"exact"`` — the backend computes the exact
probability of the counted outcome and qsem draws ``Binomial(shots, p)`` with a seeded
torch generator — wherever the backend can give exact probabilities. The check that
this is the distribution a simulator's own measurement sampling gives: a chi-square
goodness-of-fit test of Aer's drawn counts (``sampling="backend"``, Aer seed 11) and of
the default's counts (seed 11) against the exact probabilities, 48 pairs × 400 shots,
and a two-sample test between the two sets of counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from qsem.circuits import CNOT, RY, Circuit, Depolarizing, Parameter, ParameterVector
from qsem.simulators import estimate_overlap
from qsem.simulators.aer import AerBackend
from qsem.simulators.similarity import resolve_sampling

PAIRS, SHOTS, SEED = 48, 400, 11
#: reject only at this p-value (a correct sampler fails one run in a thousand)
ALPHA = 1e-3


def _circuit() -> Circuit:
    t = ParameterVector("t", 6)
    c = Circuit.qubits(3)
    for i in range(3):
        c.add(RY(t[i], wires=i))
    c.add(CNOT(wires=[0, 1]), CNOT(wires=[1, 2]))
    for i in range(3):
        c.add(RY(t[3 + i], wires=i))
    return c


def _params() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(SEED)
    a = torch.rand(PAIRS, 6, generator=g, dtype=torch.float64) * 3
    b = a + 0.6 * torch.randn(PAIRS, 6, generator=g, dtype=torch.float64)
    return {"t": a}, {"t": b}


def _pearson(counts: np.ndarray, p: np.ndarray) -> float:
    """p-value of ``Σ (c - N p)² / (N p (1 - p))`` under ``χ²(rows)`` (rows with 0 < p < 1)."""
    keep = (p > 1e-9) & (p < 1 - 1e-9)
    x2 = np.sum((counts[keep] - SHOTS * p[keep]) ** 2 / (SHOTS * p[keep] * (1 - p[keep])))
    return float(stats.chi2.sf(x2, int(keep.sum())))


def test_default_counts_fit_exact_probabilities_like_aer_draws() -> None:
    c = _circuit()
    pa, pb = _params()
    aer = AerBackend()  # the seed goes to Aer's simulator with the job
    exact = estimate_overlap(c, pa, pb, backend=aer).numpy()
    drawn = estimate_overlap(c, pa, pb, backend=aer, shots=SHOTS, seed=SEED, sampling="backend")
    default = estimate_overlap(c, pa, pb, backend=aer, shots=SHOTS, seed=SEED)
    c_aer = np.rint(drawn.p0.numpy() * SHOTS)
    c_def = np.rint(default.p0.numpy() * SHOTS)
    assert 0.05 < exact.mean() < 0.95  # the pairs span the interval: the test has power
    assert _pearson(c_aer, exact) > ALPHA
    assert _pearson(c_def, exact) > ALPHA
    # two-sample: the difference of independent Binomial(N, p) counts has variance 2Np(1-p)
    keep = (exact > 1e-9) & (exact < 1 - 1e-9)
    var = 2 * SHOTS * exact[keep] * (1 - exact[keep])
    x2 = np.sum((c_aer[keep] - c_def[keep]) ** 2 / var)
    assert stats.chi2.sf(x2, int(keep.sum())) > ALPHA


def test_the_check_can_fail() -> None:
    """Counts from wrong probabilities (shifted by 0.05) are rejected by the same test."""
    c = _circuit()
    pa, pb = _params()
    exact = estimate_overlap(c, pa, pb).numpy()
    default = estimate_overlap(c, pa, pb, shots=SHOTS, seed=SEED)
    wrong = np.clip(exact + 0.05, 0.01, 0.99)
    assert _pearson(np.rint(default.p0.numpy() * SHOTS), wrong) < ALPHA


@pytest.mark.parametrize("backend", [None, "aer"])
def test_default_is_exact_sampling(backend: str | None) -> None:
    c = _circuit()
    pa, pb = _params()
    be = AerBackend() if backend == "aer" else None
    default = estimate_overlap(c, pa, pb, backend=be, shots=SHOTS, seed=SEED)
    exact = estimate_overlap(c, pa, pb, backend=be, shots=SHOTS, seed=SEED, sampling="exact")
    assert torch.equal(default.p0, exact.p0)


def test_auto_falls_back_where_exact_probabilities_do_not_exist() -> None:
    noisy = Circuit.qubits(1).add(RY(Parameter("x"), wires=0), Depolarizing(0.1, wires=0))
    assert resolve_sampling("auto", AerBackend(method="statevector"), noisy) == "backend"
    assert resolve_sampling("auto", AerBackend(), noisy) == "exact"
    assert resolve_sampling("backend", None, noisy) == "backend"
