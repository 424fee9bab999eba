"""Statistics across seeds: mean, standard deviation, bootstrap intervals, paired tests.

The one home of the across-seed statistics that experiments and sweeps report.

* :func:`seed_statistics` — for values ``x_1..x_n`` (one per seed): the mean
  ``x̄ = (1/n) Σ x_i``, the sample standard deviation
  ``s = sqrt(Σ (x_i - x̄)² / (n - 1))`` and a 95% percentile-bootstrap interval
  of the mean: ``B`` resamples of size ``n`` drawn with replacement, the mean of
  each, and the 2.5th and 97.5th percentiles of those means
  (``scipy.stats.bootstrap(method="percentile")``, seeded).
* :func:`paired_tests` — for matched pairs ``(a_i, b_i)`` (same seed): the mean
  difference ``mean(a - b)``, the Wilcoxon signed-rank p-value and the paired
  t-test p-value (two-sided, ``scipy.stats``).

>>> s = seed_statistics([0.8, 0.9, 1.0])
>>> round(s["mean"], 6), round(s["std"], 6), s["n"]
(0.9, 0.1, 3)
>>> paired_tests([1.0, 2.0], [1.0, 2.0])
{'mean_diff': 0.0, 'wilcoxon_p': 1.0, 'ttest_p': 1.0}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "MIN_INTERVAL_N",
    "paired_tests",
    "seed_statistics",
]

#: Confidence level of the bootstrap intervals.
CONFIDENCE = 0.95
#: Bootstrap resamples per interval.
BOOTSTRAP_RESAMPLES = 9999
#: Fewest values that get a bootstrap interval: with two, resampling gives only three
#: distinct means (x1, x2 and their average), so a "95 %" interval would be the range.
MIN_INTERVAL_N = 3


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def paired_tests(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Paired over seeds: mean difference ``a - b``, Wilcoxon signed-rank and t-test p-values.

    All-zero differences give p = 1 for both tests (no evidence of a difference);
    fewer than two pairs give ``None`` p-values.

    >>> paired_tests([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])["ttest_p"]
    1.0
    """
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    out: dict[str, float | None] = {"mean_diff": float(d.mean()) if d.size else None}
    if d.size < 2:
        out.update(wilcoxon_p=None, ttest_p=None)
    elif np.all(np.abs(d) < 1e-12):
        out.update(wilcoxon_p=1.0, ttest_p=1.0)
    else:
        with warnings.catch_warnings():  # near-constant differences: scipy warns, p stays valid
            warnings.simplefilter("ignore", RuntimeWarning)
            out["wilcoxon_p"] = _finite(stats.wilcoxon(a, b).pvalue)
            out["ttest_p"] = _finite(stats.ttest_rel(a, b).pvalue)
    return out


def seed_statistics(
    values: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """``n``, mean, sample standard deviation and a percentile-bootstrap interval of the mean.

    ``std`` needs two values and the interval :data:`MIN_INTERVAL_N` (3) values,
    two of them distinct; otherwise they are ``None`` (too few values) or the
    interval collapses to the mean (all values equal). The
    bootstrap draws from ``numpy.random.default_rng(seed)``, so the interval is
    reproducible.

    >>> seed_statistics([2.0])
    {'n': 1, 'mean': 2.0, 'std': None, 'ci_low': None, 'ci_high': None}
    """
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = float(x.std(ddof=1))
    if n < MIN_INTERVAL_N:
        return {"n": n, "mean": mean, "std": std, "ci_low": None, "ci_high": None}
    if np.all(x == x[0]):
        low = high = mean
    else:
        res = stats.bootstrap(
            (x,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"n": n, "mean": mean, "std": std, "ci_low": low, "ci_high": high}
