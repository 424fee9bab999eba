"""Numerical tolerances used by validation (stated in every error message)."""

from __future__ import annotations

import torch

#: Tolerance for ``U^† U = I`` and ``Σ K^† K = I`` checks, per real dtype.
UNITARY_ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}
#: Tolerance for Hermiticity, trace and positivity checks of density matrices.
STATE_ATOL = {torch.float32: 1e-5, torch.float64: 1e-9}


def atol_for(table: dict[torch.dtype, float], dtype: torch.dtype) -> float:
    """Look up a tolerance by the real dtype that matches ``dtype``."""
    real = torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype
    return table.get(real, table[torch.float64])
