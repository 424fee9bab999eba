"""estimator_qnn: one ``TorchConnector(EstimatorQNN)`` training step on qsem's EstimatorV2.

The ``bridge_aer`` workload's anchor (:mod:`benchmarks.bridge_aer`: n=6, L=3, B=64,
angle encoding ``RY(x_i)``, ``RY``/``RZ`` layers + CNOT ring, ``<Z_i>`` on every qubit,
MSE, one Adam step, lr 0.01; exact: ``default_precision=0`` on the QNN) run twice,
unchanged, on two Estimator primitives:

* qsem: :class:`qsem.simulators.EstimatorV2` (torch engine, complex128). The QNN's
  forward pass is 6 PUBs of 64 rows; its backward pass (Qiskit ML's
  ``ParamShiftEstimatorGradient``) is 6 x 64 x 72 = 27648 one-row PUBs, which qsem's
  estimator runs as ONE engine call over the 4608 distinct shifted rows.
* anchor: ``qiskit_aer.primitives.EstimatorV2`` (exact), one Aer job per PUB.

Both sides run the same Qiskit ML code; Qiskit ML's own per-PUB work (building the
shifted rows, 27648 PUB tuples, reading their results) is in both timings and bounds
the ratio. The row measures that bound too: ``floor_s`` is the same step on
:class:`NullEstimator`, which simulates nothing (it returns zeros of the right shapes
as Qiskit result objects: the least a valid estimator does), so ``anchor_s /
floor_s`` is the largest ratio any estimator that returns fresh results could reach
here; it is printed as its own row (``... NullEstimator floor``, no target) beside
the as-posed one. Below it, ``... zero-work floor`` times the step on
:func:`zero_work_estimator`, which does nothing at all per call (it hands back
result objects built on its first call, so its values are stale: a timing device,
not an estimator): Qiskit ML's and Qiskit's gradient bookkeeping alone, the bound
for ANY ``BaseEstimatorV2`` behind the default gradient.

A third row, ``estimator_qnn[n=6, gradient=qsem]``, is the same step with the QNN
built as ``EstimatorQNN(..., estimator=EstimatorV2(), gradient=EstimatorGradient(...))``
(:class:`qsem.simulators.EstimatorGradient`: exact gradients from qsem's adjoint in
one batched engine pass, no shifted circuits), against the same anchor (Aer with
the default gradient). Before timing, loss and weight gradient of each qsem variant
and the anchor must agree to 1e-4 (float32 weights in ``TorchConnector``); that call
is the anchor's warm-up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .bridge_aer import BATCH, LAYERS, MAX_ANCHOR_REPEATS, N, anchor_layer
from .harness import Config, check_close, measure, row
from .hybrid_qubit import loss_and_grad, make_step

NAME = "estimator_qnn"
TARGET = ">= 100"
ATOL = 1e-4


def null_estimator() -> Any:
    """A ``BaseEstimatorV2`` that simulates nothing: zeros of each PUB's shape."""
    from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveResult, PubResult
    from qiskit.primitives.containers.estimator_pub import EstimatorPub
    from qiskit.primitives.primitive_job import PrimitiveJob

    class NullEstimator(BaseEstimatorV2):  # type: ignore[misc]
        def run(self, pubs: Any, *, precision: float | None = None) -> Any:
            shapes = []
            for pub in pubs:  # the shape without Qiskit's full coercion (a lower bound)
                if isinstance(pub, EstimatorPub):
                    shapes.append(pub.shape)
                else:
                    shapes.append(np.shape(pub[2])[:-1] if len(pub) > 2 else ())
            results = [
                PubResult(DataBin(evs=np.zeros(s), stds=np.zeros(s), shape=s)) for s in shapes
            ]
            job = PrimitiveJob(lambda: PrimitiveResult(results, metadata={}))
            job._submit()
            return job

    return NullEstimator()


def zero_work_estimator() -> Any:
    """A ``BaseEstimatorV2`` whose ``run`` does no work: it returns, for a call of K PUBs,
    the zero results it built on its first call of K PUBs (stale values; timing only)."""
    from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveResult, PubResult
    from qiskit.primitives.primitive_job import PrimitiveJob

    class ZeroWorkEstimator(BaseEstimatorV2):  # type: ignore[misc]
        def __init__(self) -> None:
            self.built: dict[int, Any] = {}

        def run(self, pubs: Any, *, precision: float | None = None) -> Any:
            pubs = pubs if isinstance(pubs, list) else list(pubs)
            result = self.built.get(len(pubs))
            if result is None:
                shapes = [np.shape(p[2])[:-1] if len(p) > 2 else () for p in pubs]
                result = self.built[len(pubs)] = PrimitiveResult(
                    [PubResult(DataBin(evs=np.zeros(s), stds=np.zeros(s), shape=s)) for s in shapes]
                )
            job = PrimitiveJob(lambda: result)
            job._submit()
            return job

    return ZeroWorkEstimator()


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    import qiskit_aer
    import qiskit_machine_learning

    from qsem.simulators import EstimatorGradient, EstimatorV2

    name = f"{NAME}[n={N}]"
    cfg.log(f"  {name}: TorchConnector(EstimatorQNN), L={LAYERS}, B={BATCH}, exact")
    g = torch.Generator().manual_seed(cfg.seed + 100 + N)
    x = torch.rand(BATCH, N, generator=g) * torch.pi
    y = torch.rand(BATCH, N, generator=g) * 2 - 1
    w0 = torch.rand(LAYERS, N, 2, generator=g) * 2 * torch.pi

    estimator = EstimatorV2()
    qsem, qsem_desc = anchor_layer(w0, estimator)
    anchor, anchor_desc = anchor_layer(w0)
    lq, gq = loss_and_grad(qsem, x, y)
    la, ga = loss_and_grad(anchor, x, y)
    dev_loss = check_close(f"{name} loss", lq, la, ATOL)
    dev_grad = check_close(f"{name} weight gradient", gq, ga, ATOL)
    calls = estimator.engine_calls
    cfg.log(
        f"    agreement: loss qsem {float(lq):.8f} anchor {float(la):.8f}, |dloss| "
        f"{dev_loss:.1e}, |dgrad| {dev_grad:.1e}; qsem engine calls per step: {calls}"
    )
    grad_estimator = EstimatorV2()
    gradient = EstimatorGradient(grad_estimator)
    qsem_grad, grad_desc = anchor_layer(w0, grad_estimator, gradient)
    lg, gg = loss_and_grad(qsem_grad, x, y)
    dev_loss_g = check_close(f"{name} loss (qsem gradient)", lg, la, ATOL)
    dev_grad_g = check_close(f"{name} weight gradient (qsem gradient)", gg, ga, ATOL)
    grad_calls = grad_estimator.engine_calls + gradient.engine_calls
    cfg.log(
        f"    agreement with qsem's EstimatorGradient: |dloss| {dev_loss_g:.1e}, |dgrad| "
        f"{dev_grad_g:.1e}; engine calls per step: {grad_calls}"
    )
    floor_layer, _ = anchor_layer(w0, null_estimator())
    zero_layer, _ = anchor_layer(w0, zero_work_estimator())
    units = {
        "qsem": make_step(qsem, x, y),
        "qsem_grad": make_step(qsem_grad, x, y),
        "floor": make_step(floor_layer, x, y),
        "zero": make_step(zero_layer, x, y),
        "anchor": make_step(anchor, x, y),
    }
    reps = {
        "qsem": cfg.repeats,
        "qsem_grad": cfg.repeats,
        "floor": cfg.repeats,
        "zero": cfg.repeats,
        "anchor": min(MAX_ANCHOR_REPEATS, cfg.slow_anchor_repeats),
    }
    warm = {"qsem": cfg.warmup, "qsem_grad": cfg.warmup, "floor": 1, "zero": 2, "anchor": 0}
    st = measure(units, reps, warm, cfg.log)
    floor = st["floor"]
    cfg.log(
        f"    Qiskit ML floor (NullEstimator): median {floor.median:.3f} s, min "
        f"{floor.min:.3f} s -> largest ratio with fresh results "
        f"{st['anchor'].median / floor.median:.0f}x"
    )
    zero = st["zero"]
    cfg.log(
        f"    zero-work floor (run() does nothing): median {zero.median:.3f} s, min "
        f"{zero.min:.3f} s -> bound for any estimator {st['anchor'].median / zero.median:.0f}x"
    )
    pubs_backward = 2 * LAYERS * N * 2 * BATCH * N
    anchor_name = f"qiskit-aer EstimatorV2 ({anchor_desc})"
    versions = (
        f"qiskit-aer {qiskit_aer.__version__}, qiskit-machine-learning "
        f"{qiskit_machine_learning.__version__}"
    )
    common = {"size": {"n": N, "layers": LAYERS, "batch": BATCH}, "numpy": np.__version__}
    rows = {
        f"{NAME}[n={N}, NullEstimator floor]": row(
            qsem=floor,
            anchor=anchor_name,
            anchor_stats=st["anchor"],
            target=None,
            notes=(
                "The as-posed step (default ParamShiftEstimatorGradient) on an estimator that "
                "simulates nothing but returns a fresh result object per PUB: Qiskit ML's own "
                "per-step work plus the least a valid estimator does. The zero-work row below "
                f"is the bound for any estimator. {versions}."
            ),
            **common,
        ),
        f"{NAME}[n={N}, zero-work floor]": row(
            qsem=st["zero"],
            anchor=anchor_name,
            anchor_stats=st["anchor"],
            target=None,
            notes=(
                "The as-posed step on an 'estimator' whose run() does nothing (it returns result "
                "objects built on its first call; stale values, timing only): Qiskit ML's and "
                "Qiskit's gradient bookkeeping alone. Its ratio bounds ANY BaseEstimatorV2 "
                f"behind the default gradient. {versions}."
            ),
            **common,
        ),
        f"{NAME}[n={N}, gradient=qsem]": row(
            qsem=st["qsem_grad"],
            anchor=anchor_name,
            anchor_stats=st["anchor"],
            target=TARGET,
            notes=(
                f"The same step with qsem: {grad_desc} (qsem.simulators.EstimatorGradient: "
                "exact gradients by qsem's adjoint, one batched engine pass, no shifted "
                f"circuits); anchor: Aer EstimatorV2 with the default parameter-shift gradient, "
                f"{versions}. {grad_calls} engine calls per forward+backward. Agreement "
                f"checked: |dloss| {dev_loss_g:.1e}, |dgrad| {dev_grad_g:.1e}; torch threads "
                f"{cfg.threads}."
            ),
            agreement={
                "loss_qsem": float(lg),
                "loss_anchor": float(la),
                "max_abs_dloss": dev_loss_g,
                "max_abs_dgrad": dev_grad_g,
            },
            engine_calls_per_step=grad_calls,
            **common,
        ),
        name: row(
            qsem=st["qsem"],
            anchor=anchor_name,
            anchor_stats=st["anchor"],
            target=TARGET,
            notes=(
                f"n={N}, L={LAYERS}, B={BATCH}; one Adam step (fwd+bwd+update) of "
                "TorchConnector(EstimatorQNN), the same Qiskit ML code on both sides, exact "
                f"(default_precision=0). qsem: {qsem_desc}; {calls} engine calls per "
                f"forward+backward ({N} PUBs forward, {pubs_backward} one-row PUBs backward). "
                f"anchor: qiskit-aer {qiskit_aer.__version__}, qiskit-machine-learning "
                f"{qiskit_machine_learning.__version__}, one Aer job per PUB. Qiskit ML's own "
                "per-PUB work is in both timings. Agreement checked: "
                f"|dloss| {dev_loss:.1e}, |dgrad| {dev_grad:.1e}; torch threads {cfg.threads}. "
                f"Qiskit ML floor (the step on an estimator that simulates nothing): median "
                f"{floor.median:.3f} s ({st['anchor'].median / floor.median:.0f}x); on one "
                f"whose run() does no work at all: {zero.median:.3f} s, so no estimator can "
                f"exceed {st['anchor'].median / zero.median:.0f}x here."
            ),
            floor_s=floor.median,
            floor_timing=floor.as_dict(),
            ratio_ceiling=st["anchor"].median / floor.median,
            zero_work_floor_s=zero.median,
            ratio_bound_any_estimator=st["anchor"].median / zero.median,
            agreement={
                "loss_qsem": float(lq),
                "loss_anchor": float(la),
                "max_abs_dloss": dev_loss,
                "max_abs_dgrad": dev_grad,
            },
            engine_calls_per_step=calls,
            **common,
        ),
    }
    # the as-posed row first, its floor beside it, then the row with qsem's gradient
    order = [
        name,
        f"{NAME}[n={N}, NullEstimator floor]",
        f"{NAME}[n={N}, zero-work floor]",
        f"{NAME}[n={N}, gradient=qsem]",
    ]
    return {k: rows[k] for k in order}
