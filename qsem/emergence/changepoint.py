"""Change-point baselines on a scalar stream: BOCPD (online) and ruptures (offline).

**BOCPD** (:class:`BOCPD`; Adams & MacKay 2007, "Bayesian Online Changepoint
Detection", arXiv:0710.3742). The stream is piecewise i.i.d. Gaussian with
unknown mean and precision; each segment draws them from a Normal-Gamma prior
``NG(μ0, κ0, α0, β0)``, and a change happens at every step with constant hazard
``H``. The posterior over the current run length ``r_t`` (steps since the last
change) is updated exactly::

    π_t(r) = p(x_t | run r)              Student-t, 2α_r dof, loc μ_r,
                                          scale² = β_r (κ_r + 1) / (α_r κ_r)
    P(r_t = r + 1, x_1:t) ∝ P(r_{t-1} = r, x_1:t-1) π_t(r) (1 − H)   (growth)
    P(r_t = 0,     x_1:t) ∝ Σ_r P(r_{t-1} = r, x_1:t-1) π_t(r) H      (change)

with the conjugate updates ``μ' = (κμ + x)/(κ + 1)``, ``κ' = κ + 1``,
``α' = α + 1/2``, ``β' = β + κ (x − μ)² / (2(κ + 1))``. The run-length vector is
truncated at ``max_run``: the mass of longer runs is merged into the last bin
(which keeps the statistics of the longer run).

Fire rule: ``P(r_t < r_min | x_1:t) > threshold`` at a step where it was
``<= threshold`` at the previous step (an upward crossing; ``P(r_t = 0)`` alone is
always ``H`` under a constant hazard, so short runs ``< r_min`` are what signal a
change). At the start of the stream every run is short, so nothing fires until
the probability has first dropped below the threshold. Prior scale: with
``warmup > 0`` the first ``warmup`` values set ``μ0`` to their mean and ``β0`` to
``α0 ·`` their variance (so that the prior's noise level matches the signal's,
whatever its units) and are then fed to the posterior without firing.

**Offline** (:func:`offline_changepoints`): ruptures' PELT or binary
segmentation with a cost model (``"l2"``: piecewise-constant mean) and a
penalty per change point; default penalty ``3 σ̂² log n`` with ``σ̂`` the
robust noise level ``1.4826 · MAD(diff(x)) / √2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import gammaln

from qsem.checks import check_int, check_real
from qsem.circuits.errors import QsemTypeError, arg_error

from .detectors import MAD_SCALE, Detector

__all__ = ["BOCPD", "offline_changepoints"]

METHODS = ("pelt", "binseg")


class BOCPD(Detector):
    """Online Bayesian change-point detection as a :class:`Detector` (see the module doc).

    ``hazard``: prior probability of a change at each step (``1/λ`` for an expected
    segment length ``λ``); ``threshold``, ``r_min``: the fire rule; ``mu0``,
    ``kappa0``, ``alpha0``, ``beta0``: the Normal-Gamma prior (``mu0`` and
    ``beta0`` are replaced after a ``warmup``); ``max_run``: truncation.

    >>> import numpy as np
    >>> x = np.r_[np.zeros(60), 4 * np.ones(40)] + np.random.default_rng(0).normal(size=100)
    >>> det = BOCPD(hazard=0.01)
    >>> [e.step for s, v in enumerate(x) if (e := det.update(s, v))]
    [62]
    """

    name = "bocpd"

    def __init__(
        self,
        hazard: float = 1e-3,
        threshold: float = 0.8,
        *,
        r_min: int = 10,
        mu0: float = 0.0,
        kappa0: float = 1.0,
        alpha0: float = 1.0,
        beta0: float = 1.0,
        warmup: int = 20,
        max_run: int = 500,
        refractory: int = 0,
    ) -> None:
        super().__init__(refractory=refractory)
        self.hazard = check_real("hazard", hazard, minimum=0.0, strict=True)
        if self.hazard >= 1:
            raise arg_error("hazard", f"must lie in (0, 1), got {hazard!r}")
        self.threshold = check_real("threshold", threshold, minimum=0.0, strict=True)
        if self.threshold >= 1:
            raise arg_error("threshold", f"must lie in (0, 1), got {threshold!r}")
        self.r_min = check_int("r_min", r_min, 1)
        self.mu0 = check_real("mu0", mu0)
        self.kappa0 = check_real("kappa0", kappa0, minimum=0.0, strict=True)
        self.alpha0 = check_real("alpha0", alpha0, minimum=0.0, strict=True)
        self.beta0 = check_real("beta0", beta0, minimum=0.0, strict=True)
        self.warmup = check_int("warmup", warmup, 0)
        self.max_run = check_int("max_run", max_run, 2)
        if self.r_min > self.max_run:
            raise arg_error("r_min", f"must be <= max_run ({self.max_run}), got {r_min}")
        self._clear()

    # -- posterior ----------------------------------------------------------------
    def _clear(self) -> None:
        self._prior: tuple[float, float, float, float] | None = (
            None if self.warmup else (self.mu0, self.kappa0, self.alpha0, self.beta0)
        )
        self._buffer: list[float] = []
        # log P(r_t = r, x_1:t) up to a constant, and the statistics of each run length
        self._logr = np.zeros(1)
        self._stats = np.array([self._prior or (0.0, 1.0, 1.0, 1.0)], dtype=np.float64)
        self._armed = False
        self._p_short = 1.0

    @property
    def run_length_posterior(self) -> np.ndarray:
        """``P(r_t = r | x_1:t)`` for ``r = 0 .. len − 1`` (the last bin holds longer runs)."""
        p = np.exp(self._logr - self._logr.max())
        return p / p.sum()

    @property
    def p_short(self) -> float:
        """``P(r_t < r_min | x_1:t)`` after the last update."""
        return self._p_short

    def _log_pred(self, x: float) -> np.ndarray:
        mu, kappa, alpha, beta = self._stats.T
        nu = 2 * alpha
        scale2 = beta * (kappa + 1) / (alpha * kappa)
        z = (x - mu) ** 2 / (nu * scale2)
        return (
            gammaln((nu + 1) / 2)
            - gammaln(nu / 2)
            - 0.5 * np.log(np.pi * nu * scale2)
            - (nu + 1) / 2 * np.log1p(z)
        )

    def _step(self, x: float) -> float:
        assert self._prior is not None
        logp = self._log_pred(x) + self._logr
        grow = logp + math.log1p(-self.hazard)
        change = np.logaddexp.reduce(logp) + math.log(self.hazard)
        mu, kappa, alpha, beta = self._stats.T
        upd = np.stack(
            [
                (kappa * mu + x) / (kappa + 1),
                kappa + 1,
                alpha + 0.5,
                beta + kappa * (x - mu) ** 2 / (2 * (kappa + 1)),
            ],
            axis=1,
        )
        logr = np.concatenate([[change], grow])
        stats = np.concatenate([np.array([self._prior]), upd])
        if len(logr) > self.max_run + 1:  # merge the longest run into the last bin
            logr[self.max_run] = np.logaddexp(logr[self.max_run], logr[self.max_run + 1])
            stats[self.max_run] = stats[self.max_run + 1]
            logr, stats = logr[: self.max_run + 1], stats[: self.max_run + 1]
        self._logr = logr - np.logaddexp.reduce(logr)
        self._stats = stats
        post = np.exp(self._logr)
        return float(post[: self.r_min].sum())

    def _observe(self, step, value):
        x = check_real("value", value)
        if self._prior is None:  # warm-up: collect, then set the prior's location and scale
            self._buffer.append(x)
            if len(self._buffer) < self.warmup:
                return False, 1.0, None, None
            buf = np.asarray(self._buffer)
            var = float(buf.var()) or 1e-12 * max(1.0, float(np.abs(buf).max())) ** 2
            self._prior = (float(buf.mean()), self.kappa0, self.alpha0, self.alpha0 * var)
            self._stats = np.array([self._prior])
            self._logr = np.zeros(1)
            for b in self._buffer:
                self._p_short = self._step(b)
            self._buffer = []
            self._armed = self._p_short <= self.threshold
            return False, self._p_short, None, None
        p = self._step(x)
        self._p_short = p
        fires = self._armed and p > self.threshold
        self._armed = p <= self.threshold
        return fires, p, None, None

    def _state(self) -> dict[str, Any]:
        return {
            "prior": None if self._prior is None else list(self._prior),
            "buffer": list(self._buffer),
            "logr": self._logr.tolist(),
            "stats": self._stats.tolist(),
            "armed": self._armed,
            "p_short": self._p_short,
        }

    def _load(self, d: dict[str, Any]) -> None:
        prior = d["prior"]
        self._prior = None if prior is None else tuple(float(v) for v in prior)  # type: ignore[assignment]
        self._buffer = [float(v) for v in d["buffer"]]
        self._logr = np.asarray(d["logr"], dtype=np.float64)
        self._stats = np.asarray(d["stats"], dtype=np.float64).reshape(-1, 4)
        self._armed = bool(d["armed"])
        self._p_short = float(d["p_short"])


def _as_signal(signal: Any) -> np.ndarray:
    try:
        x = np.asarray(
            signal.detach().cpu().numpy() if hasattr(signal, "detach") else signal,
            dtype=np.float64,
        )
    except (TypeError, ValueError):
        raise arg_error(
            "signal",
            f"expected a 1-D or (n, d) real array, got {type(signal).__name__}",
            QsemTypeError,
        ) from None
    if x.ndim not in (1, 2) or x.shape[0] < 2:
        raise arg_error("signal", f"expected shape (n,) or (n, d) with n >= 2, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise arg_error("signal", "contains NaN or inf")
    return x


def default_penalty(x: np.ndarray) -> float:
    """``3 σ̂² log n`` with the robust noise level ``σ̂ = 1.4826 MAD(diff x) / √2``.

    For an ``(n, d)`` signal the per-column variances are summed.
    """
    x2 = x.reshape(len(x), -1)
    d = np.diff(x2, axis=0)
    mad = np.median(np.abs(d - np.median(d, axis=0)), axis=0)
    sigma2 = float(((MAD_SCALE * mad) ** 2 / 2).sum())
    if sigma2 == 0:
        sigma2 = float(x2.var(axis=0).sum()) or 1.0
    return 3.0 * sigma2 * math.log(len(x))


def offline_changepoints(
    signal: Any,
    method: str = "pelt",
    penalty: float | None = None,
    model: str = "l2",
    min_size: int = 2,
    *,
    jump: int = 1,
    n_bkps: int | None = None,
    steps: Sequence[int] | None = None,
) -> list[int]:
    """Change points of a whole signal with ruptures (offline baseline).

    ``method``: ``"pelt"`` (exact penalised segmentation) or ``"binseg"`` (binary
    segmentation); ``model``: a ruptures cost (``"l2"``, ``"l1"``, ``"rbf"``,
    ``"normal"``, ...); ``penalty``: cost per change point (default
    :func:`default_penalty`); ``n_bkps``: binseg only, a fixed number of changes
    instead of a penalty. Returns the indices at which a new segment starts
    (ruptures' breakpoints without the final ``n``), or ``steps[i]`` for each
    index ``i`` when ``steps`` (one per sample) is given.

    >>> x = [0.0] * 30 + [5.0] * 30
    >>> offline_changepoints(x, penalty=1.0)
    [30]
    """
    import ruptures as rpt

    x = _as_signal(signal)
    if method not in METHODS:
        raise arg_error("method", f"must be one of {list(METHODS)}, got {method!r}")
    if not isinstance(model, str):
        raise arg_error("model", f"expected a ruptures cost name, got {model!r}", QsemTypeError)
    min_size = check_int("min_size", min_size, 1)
    jump = check_int("jump", jump, 1)
    if steps is not None:
        steps = [check_int("steps", s) for s in steps]
        if len(steps) != len(x):
            raise arg_error("steps", f"need one step per sample ({len(x)}), got {len(steps)}")
    try:
        algo_cls = rpt.Pelt if method == "pelt" else rpt.Binseg
        algo = algo_cls(model=model, min_size=min_size, jump=jump).fit(x)
    except (ValueError, KeyError, AssertionError) as exc:
        raise arg_error("model", f"ruptures refused model {model!r}: {exc}") from None
    if n_bkps is not None:
        if method != "binseg":
            raise arg_error("n_bkps", "a fixed number of change points needs method='binseg'")
        bkps = algo.predict(n_bkps=check_int("n_bkps", n_bkps, 1))
    else:
        pen = default_penalty(x) if penalty is None else check_real("penalty", penalty, minimum=0)
        bkps = algo.predict(pen=pen)
    idx = [int(b) for b in bkps if b < len(x)]
    return [steps[i] for i in idx] if steps is not None else idx
