"""qsem.stats against independent references (numpy, statistics, scipy.stats tests)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from conftest import ATOL_F64, BOOTSTRAP_REL_TOL

from qsem.stats import paired_tests, seed_statistics


def test_paired_tests_match_scipy_and_handle_ties() -> None:
    from scipy import stats

    a = [0.9, 0.8, 0.85, 0.7, 0.95, 0.6]
    b = [0.7, 0.75, 0.8, 0.72, 0.8, 0.5]
    t = paired_tests(a, b)
    assert t["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)), abs=ATOL_F64)
    assert t["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert t["ttest_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    same = paired_tests(a, a)
    assert same == {"mean_diff": 0.0, "wilcoxon_p": 1.0, "ttest_p": 1.0}
    assert paired_tests([1.0], [0.5]) == {"mean_diff": 0.5, "wilcoxon_p": None, "ttest_p": None}


def test_seed_statistics_mean_std_and_bootstrap_against_hand_resampling() -> None:
    x = [0.61, 0.72, 0.55, 0.9, 0.68, 0.74, 0.59, 0.81, 0.7, 0.66]
    s = seed_statistics(x, seed=3)
    assert s["n"] == len(x)
    assert s["mean"] == pytest.approx(statistics.fmean(x), abs=ATOL_F64)
    assert s["std"] == pytest.approx(statistics.stdev(x), abs=ATOL_F64)
    # independent percentile bootstrap: many resamples of size n with replacement
    rng = np.random.default_rng(12345)
    idx = rng.integers(0, len(x), size=(200_000, len(x)))
    means = np.asarray(x)[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    sem = statistics.stdev(x) / np.sqrt(len(x))
    assert s["ci_low"] == pytest.approx(low, abs=BOOTSTRAP_REL_TOL * sem)
    assert s["ci_high"] == pytest.approx(high, abs=BOOTSTRAP_REL_TOL * sem)
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    assert seed_statistics(x, seed=3) == s  # seeded: reproducible


def test_seed_statistics_small_and_constant_samples() -> None:
    assert seed_statistics([]) == {"n": 0, "mean": None, "std": None, "ci_low": None,
                                   "ci_high": None}  # fmt: skip
    assert seed_statistics([0.5])["std"] is None
    flat = seed_statistics([0.25, 0.25, 0.25])
    assert (flat["mean"], flat["std"], flat["ci_low"], flat["ci_high"]) == (0.25, 0.0, 0.25, 0.25)
    with pytest.raises(ValueError, match="confidence"):
        seed_statistics([1.0, 2.0], confidence=1.5)
