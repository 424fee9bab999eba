"""Shot estimates of an overlap with binomial confidence intervals.

Every overlap estimator here counts one outcome event among ``N`` shots — the
SWAP test's ancilla 0, the destructive SWAP test's SWAP eigenvalue ``+1``, the
compute–uncompute circuit's all-zeros outcome — whose probability ``p`` is an
affine function of the overlap ``F = Tr(ρσ)``:

* ``mapping="swap"``: ``p = (1 + F) / 2``, so ``F̂ = 2 p̂ − 1``, with variance
  ``4 p (1 − p) / N = (1 − F²) / N``;
* ``mapping="direct"``: ``p = F`` (compute–uncompute, pure states), so ``F̂ = p̂``
  with variance ``F (1 − F) / N``.

:func:`binomial_interval` gives a Wilson or Clopper–Pearson interval for ``p``;
:class:`OverlapEstimate` carries the estimate of ``F`` and that interval mapped
to ``F`` (and clipped to ``[0, 1]``). It is the one name of the estimate type:
``SwapTestEstimate`` (its former name) still imports, with a ``DeprecationWarning``.

>>> est = estimate_from_counts(990, 1000, mapping="direct")
>>> round(float(est.estimate), 3), bool(est.low < 0.99 < est.high)
(0.99, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.checks import check_seed as _check_seed
from qsem.checks import check_shots as _check_shots
from qsem.circuits.errors import QsemTypeError, arg_error

__all__ = [
    "MAPPINGS",
    "METHODS",
    "OverlapEstimate",
    "binomial_interval",
    "check_confidence",
    "check_method",
    "check_seed",
    "check_shots",
    "draw_counts",
    "estimate_from_counts",
]

#: Binomial confidence-interval methods of :func:`binomial_interval`.
METHODS: tuple[str, ...] = ("wilson", "clopper-pearson")
#: How the event probability ``p`` maps to the overlap ``F``: ``2p − 1`` or ``p``.
MAPPINGS: tuple[str, ...] = ("swap", "direct")


def check_confidence(confidence: object) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)):
        raise arg_error(
            "confidence", f"must be a number in (0, 1), got {confidence!r}", QsemTypeError
        )
    if not 0 < float(confidence) < 1:
        raise arg_error("confidence", f"must lie in (0, 1) (e.g. 0.95), got {confidence!r}")
    return float(confidence)


def check_method(method: object) -> str:
    if method not in METHODS:
        raise arg_error("method", f"must be one of {list(METHODS)}, got {method!r}")
    return str(method)


def check_shots(shots: object) -> int:
    """A shot estimate's ``shots``: a positive integer."""
    return _check_shots("shots", shots)


def check_seed(seed: object) -> int | None:
    """A shot estimate's ``seed``: ``0 <= seed < 2**32``, or ``None``."""
    return _check_seed("seed", seed, allow_none=True)


def _check_mapping(mapping: object) -> str:
    if mapping not in MAPPINGS:
        raise arg_error("mapping", f"must be one of {list(MAPPINGS)}, got {mapping!r}")
    return str(mapping)


def binomial_interval(
    successes: Any, trials: int, *, confidence: float = 0.95, method: str = "wilson"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-sided confidence interval ``(low, high)`` for a binomial probability.

    ``method="wilson"``: the Wilson score interval; ``"clopper-pearson"``: the exact
    (conservative) interval from beta quantiles. ``successes``: a count or a tensor of
    counts in ``0..trials``; float64 tensors of the same shape come back.
    """
    from scipy import stats

    n = check_shots(trials)
    conf = check_confidence(confidence)
    method = check_method(method)
    k_t = torch.as_tensor(successes)
    if k_t.is_complex() or k_t.dtype == torch.bool:
        raise arg_error("successes", f"expected integer counts, got dtype {k_t.dtype}")
    k = k_t.detach().cpu().to(torch.float64).numpy()
    if not np.all(np.isfinite(k)) or np.any(k < 0) or np.any(k > n) or np.any(k != np.round(k)):
        raise arg_error("successes", f"counts must be integers in 0..{n}, got {k_t.tolist()}")
    alpha = 1 - conf
    if method == "wilson":
        z = float(stats.norm.ppf(1 - alpha / 2))
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
        low = np.where(k == 0, 0.0, low)
        high = np.where(k == n, 1.0, high)
    else:
        with np.errstate(invalid="ignore"):
            low = np.where(k == 0, 0.0, stats.beta.ppf(alpha / 2, k, n - k + 1))
            high = np.where(k == n, 1.0, stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    as_t = lambda v: torch.as_tensor(np.asarray(v, dtype=np.float64))  # noqa: E731
    return as_t(low), as_t(high)


def _to_overlap(p: torch.Tensor, mapping: str) -> torch.Tensor:
    return 2 * p - 1 if mapping == "swap" else p


@dataclass(frozen=True)
class OverlapEstimate:
    """A shot estimate of ``F = Tr(ρσ)`` with a binomial confidence interval.

    ``p0`` is the observed fraction of the counted outcome among ``shots`` (ancilla
    0; SWAP eigenvalue ``+1``; all zeros for compute–uncompute). ``mapping`` says how
    its probability maps to ``F``: ``"swap"`` (``F = 2p − 1``) or ``"direct"``
    (``F = p``). ``estimate`` is the mapped ``p0`` clipped to ``[0, 1]``
    (:attr:`raw`: unclipped and unbiased); ``[low, high]`` is the interval for ``p``
    (``method``: ``"wilson"`` or ``"clopper-pearson"``) mapped the same way and
    clipped. Tensors of shape ``()`` or the batch shape.
    """

    estimate: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    shots: int
    p0: torch.Tensor
    confidence: float = 0.95
    method: str = "wilson"
    mapping: str = "swap"

    @property
    def raw(self) -> torch.Tensor:
        """The unclipped, unbiased estimate (``2 p0 − 1`` or ``p0``)."""
        return _to_overlap(self.p0, self.mapping)

    @property
    def halfwidth(self) -> torch.Tensor:
        return (self.high - self.low) / 2

    @property
    def std_error(self) -> torch.Tensor:
        """Plug-in standard error of :attr:`raw`: ``c sqrt(p0 (1 − p0) / N)``, ``c = 2`` or 1."""
        c = 2.0 if self.mapping == "swap" else 1.0
        return c * (self.p0 * (1 - self.p0) / self.shots).sqrt()

    def pooled(self) -> OverlapEstimate:
        """One estimate of the *mean* overlap over the batch, from the pooled counts.

        ``Σ counts / (rows · shots)`` estimates the mean event probability, hence the
        mean ``F`` (through the same map), unbiased; the binomial interval of the pooled
        count is conservative for rows of unequal ``p`` (their count's variance is at
        most the binomial one). ``shots`` of the result is the total.
        """
        counts = torch.round(self.p0 * self.shots).sum().to(torch.long)
        total = self.shots * max(1, self.p0.numel())
        return estimate_from_counts(
            counts, total, confidence=self.confidence, method=self.method, mapping=self.mapping
        )

    def contains(self, value: Any) -> torch.Tensor:
        """Whether ``low <= value <= high`` (elementwise)."""
        v = torch.as_tensor(value, dtype=torch.float64)
        return (self.low <= v) & (v <= self.high)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (floats or lists)."""
        return {
            "estimate": self.estimate.tolist(),
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "shots": self.shots,
            "p0": self.p0.tolist(),
            "confidence": self.confidence,
            "method": self.method,
            "mapping": self.mapping,
        }


#: Former names of :class:`OverlapEstimate`, importable with a DeprecationWarning.
DEPRECATED_NAMES = {"SwapTestEstimate": "OverlapEstimate"}


def deprecated_alias(module: str, name: str) -> Any:
    """``OverlapEstimate`` for a former name (with a ``DeprecationWarning``), for the
    PEP 562 ``__getattr__`` of the modules that exported it."""
    if name not in DEPRECATED_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    import warnings

    warnings.warn(
        f"{name} is deprecated; it is the same class as {DEPRECATED_NAMES[name]}, use that",
        DeprecationWarning,
        stacklevel=3,
    )
    return OverlapEstimate


def __getattr__(name: str) -> Any:
    return deprecated_alias(__name__, name)


def estimate_from_counts(
    zeros: Any,
    shots: int,
    *,
    confidence: float = 0.95,
    method: str = "wilson",
    mapping: str = "swap",
) -> OverlapEstimate:
    """:class:`OverlapEstimate` from the number of counted outcomes among ``shots``.

    Works for counts from any source (the torch engine, Aer, hardware). For the
    SWAP test pass the ancilla-0 count, for the destructive test the number of
    outcomes with SWAP eigenvalue ``+1`` (``mapping="swap"``); for compute–uncompute
    the all-zeros count (``mapping="direct"``).
    """
    n = check_shots(shots)
    mapping = _check_mapping(mapping)
    low_p, high_p = binomial_interval(zeros, n, confidence=confidence, method=method)
    p0 = torch.as_tensor(zeros).detach().cpu().to(torch.float64) / n
    return OverlapEstimate(
        estimate=_to_overlap(p0, mapping).clamp(0, 1),
        low=_to_overlap(low_p, mapping).clamp(0, 1),
        high=_to_overlap(high_p, mapping).clamp(0, 1),
        shots=n,
        p0=p0,
        confidence=float(confidence),
        method=str(method),
        mapping=mapping,
    )


def draw_counts(p: torch.Tensor, shots: int, seed: int | None) -> torch.Tensor:
    """Binomial(shots, p) counts per row, seeded (the ``sampling="exact"`` shots)."""
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    p = p.detach().cpu().to(torch.float64).clamp(0, 1)
    count = torch.full_like(p, float(shots))
    return torch.binomial(count, p, generator=gen).to(torch.long)


def counts_estimate(
    p_event: torch.Tensor,
    shots: int,
    seed: int | None,
    sampling: str,
    confidence: float,
    method: str,
    mapping: str = "swap",
) -> OverlapEstimate:
    """Counts of the event out of ``shots``, and the estimate.

    ``p_event`` is the exact probability (``sampling="exact"``: draw the counts) or the
    backend's shot frequency (``sampling="backend"``: the counts themselves).
    """
    if sampling == "exact":
        counts = draw_counts(p_event, shots, seed)
    else:
        counts = torch.round(p_event * shots).to(torch.long)
    return estimate_from_counts(
        counts, shots, confidence=confidence, method=method, mapping=mapping
    )
