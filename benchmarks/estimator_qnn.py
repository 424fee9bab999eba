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
as Qiskit result objects), so ``anchor_s / floor_s`` is the largest ratio any
estimator could reach here. Before timing, loss and weight gradient of qsem and the
anchor must agree to 1e-4 (float32 weights in ``TorchConnector``); that call is the
anchor's warm-up.
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


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    import qiskit_aer
    import qiskit_machine_learning

    from qsem.simulators import EstimatorV2

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
    floor_layer, _ = anchor_layer(w0, null_estimator())
    units = {
        "qsem": make_step(qsem, x, y),
        "floor": make_step(floor_layer, x, y),
        "anchor": make_step(anchor, x, y),
    }
    reps = {
        "qsem": cfg.repeats,
        "floor": cfg.repeats,
        "anchor": min(MAX_ANCHOR_REPEATS, cfg.slow_anchor_repeats),
    }
    st = measure(units, reps, {"qsem": cfg.warmup, "floor": 1, "anchor": 0}, cfg.log)
    floor = st["floor"]
    cfg.log(
        f"    Qiskit ML floor (NullEstimator): median {floor.median:.3f} s, min "
        f"{floor.min:.3f} s -> largest reachable ratio {st['anchor'].median / floor.median:.0f}x"
    )
    pubs_backward = 2 * LAYERS * N * 2 * BATCH * N
    return {
        name: row(
            qsem=st["qsem"],
            anchor=f"qiskit-aer EstimatorV2 ({anchor_desc})",
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
                f"{floor.median:.3f} s, so no estimator can exceed "
                f"{st['anchor'].median / floor.median:.0f}x here."
            ),
            floor_s=floor.median,
            floor_timing=floor.as_dict(),
            ratio_ceiling=st["anchor"].median / floor.median,
            agreement={
                "loss_qsem": float(lq),
                "loss_anchor": float(la),
                "max_abs_dloss": dev_loss,
                "max_abs_dgrad": dev_grad,
            },
            engine_calls_per_step=calls,
            size={"n": N, "layers": LAYERS, "batch": BATCH},
            numpy=np.__version__,
        )
    }
