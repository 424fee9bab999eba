"""Parameter-shift rules derived from a generator's spectrum.

For a gate ``U(θ) = exp(-iθG) V`` the expectation value of any observable is a
trigonometric polynomial in θ whose frequencies are the distinct positive
differences ``Ω_1 < ... < Ω_R`` of the eigenvalues of ``G``:

.. math:: f(θ) = a_0 + Σ_l a_l \\cos(Ω_l θ) + b_l \\sin(Ω_l θ).

Then ``f(θ + x) - f(θ - x) = 2 Σ_l [a_l' ...] sin(Ω_l x)`` and for ``R`` shifts
``x_μ`` the derivative is ``f'(θ) = Σ_μ c_μ [f(θ + x_μ) - f(θ - x_μ)]`` with
``c = S^{-T} Ω / 2``, ``S[μ, l] = sin(Ω_l x_μ)``. For equidistant frequencies
``Ω_l = l Ω_1`` the shifts ``x_μ = (2μ - 1) π / (2 R Ω_1)`` give the known
closed form (Wierichs et al., Quantum 6, 677, 2022); a generator with eigenvalues
``±1/2`` gives the two-term rule ``f' = [f(θ + π/2) - f(θ - π/2)] / 2``.

>>> shift_rule(torch.tensor([-0.5, 0.5]))
[(0.5, 1.5707963267948966), (-0.5, -1.5707963267948966)]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import arg_error

#: Eigenvalues closer than this count as equal.
SPECTRUM_ATOL = 1e-9


def frequencies(spectrum: torch.Tensor | np.ndarray) -> np.ndarray:
    """Distinct positive differences of the eigenvalues, sorted."""
    ev = np.unique(
        np.round(np.asarray(spectrum, dtype=np.float64).real / SPECTRUM_ATOL) * SPECTRUM_ATOL
    )
    diffs = np.abs(ev[:, None] - ev[None, :]).ravel()
    diffs = diffs[diffs > SPECTRUM_ATOL]
    if diffs.size == 0:
        return diffs
    diffs.sort()
    keep = [diffs[0]]
    for x in diffs[1:]:
        if x - keep[-1] > 1e-7:
            keep.append(x)
    return np.array(keep)


def shift_rule(spectrum: torch.Tensor | np.ndarray) -> list[tuple[float, float]]:
    """Terms ``(coefficient, shift)`` with ``f'(θ) = Σ c f(θ + s)`` (``2R`` terms).

    A constant generator (a single eigenvalue) gives ``[]``: the parameter does not
    change any expectation value.
    """
    omega = frequencies(spectrum)
    r = len(omega)
    if r == 0:
        return []
    base = omega[0]
    equidistant = np.allclose(omega, base * np.arange(1, r + 1), atol=1e-7)
    if equidistant:
        shifts = (2 * np.arange(1, r + 1) - 1) * math.pi / (2 * r * base)
    else:
        shifts = (2 * np.arange(1, r + 1) - 1) * math.pi / (2 * r * omega[-1])
    sin = np.sin(np.outer(shifts, omega))  # S[μ, l]
    cond = np.linalg.cond(sin)
    if not np.isfinite(cond) or cond > 1e8:
        raise arg_error(
            "spectrum", f"no well-conditioned shift rule for frequencies {omega.tolist()}"
        )
    coeffs = np.linalg.solve(sin.T, omega) / 2
    terms = []
    for c, s in zip(coeffs, shifts, strict=True):
        terms += [(float(c), float(s)), (float(-c), float(-s))]
    return terms
