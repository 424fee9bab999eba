"""bridge_aer: the ``hybrid_qubit`` step through the hybrid bridge on Qiskit Aer.

Model: the ``hybrid_qubit`` model at n=6, L=3, B=64 (angle-encode with ``RY(x_i)``;
L layers of ``RY``, ``RZ`` per wire + CNOT ring; ``<Z_i>`` on every wire; MSE; one
Adam step, lr 0.01). One timed unit = zero_grad + forward + backward + ``Adam.step``.

* qsem: :class:`~qsem.simulators.bridge.QuantumLayer` on
  ``AerBackend(method="statevector")``, exact (no shots), ``diff_method="parameter-shift"``:
  the forward pass is ONE Aer job (64 rows through ``parameter_binds``), the backward
  pass ONE Aer job holding every shifted row (the bridge shifts every gate-parameter
  column, inputs included: (6 + 36) columns x 2 shifts x 64 rows = 5376 rows).
* anchor: Qiskit Machine Learning ``TorchConnector(EstimatorQNN(...))`` on
  ``qiskit_aer.primitives.EstimatorV2`` (exact: ``default_precision=0`` on the QNN
  and on the estimator, so no Gaussian noise is added to the ``save_expectation_value``
  results) with its default ``ParamShiftEstimatorGradient``; the same circuit built in
  Qiskit (qsem wire i = Qiskit qubit i; ``Z_i`` = ``SparsePauliOp.from_sparse_list``
  on qubit i, so Qiskit's little-endian label order plays no role).

Before timing both sides compute the loss and the weight gradient for the same
inputs and weights (the weights drawn as float32 values, since ``TorchConnector``
holds float32 weights) and must agree to 1e-4. That agreement call is a full
forward + backward of the anchor and serves as its warm-up (one anchor step takes
over a minute).

``aer_gpu`` (the same step with ``device="GPU"``) runs only where Aer reports a GPU;
otherwise the row's ``aer_gpu`` field and the log say why it was not run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .harness import Config, check_close, floor_bytes, measure, row
from .hybrid_qubit import build_circuit, loss_and_grad, make_step

NAME = "bridge_aer"
N, LAYERS, BATCH = 6, 3, 64
TARGET = ">= 200"
ATOL = 1e-4
#: at most this many timed anchor steps (about 80 s each on a quiet machine)
MAX_ANCHOR_REPEATS = 2


def qsem_layer(weights: torch.Tensor, device: str = "CPU") -> nn.Module:
    from qsem.circuits import PauliString
    from qsem.simulators.aer import AerBackend
    from qsem.simulators.bridge import QuantumLayer

    circuit = build_circuit(N, LAYERS)
    obs = [PauliString("Z", wires=[i]) for i in range(N)]
    layer = QuantumLayer(
        circuit,
        obs,
        input_name="x",
        weight_shapes={"w": LAYERS * N * 2},
        backend=AerBackend(method="statevector", device=device),
        diff_method="parameter-shift",
    )
    with torch.no_grad():
        layer.weights["w"].copy_(weights.reshape(-1).to(torch.float64))
    return layer


def qiskit_circuit() -> tuple[Any, list[Any], list[Any]]:
    """The same circuit in Qiskit: qsem wire i is Qiskit qubit i (no cry/crx/crz/cp)."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    x = ParameterVector("x", N)
    w = ParameterVector("w", LAYERS * N * 2)
    qc = QuantumCircuit(N)
    for i in range(N):
        qc.ry(x[i], i)
    for l in range(LAYERS):
        for i in range(N):
            qc.ry(w[(l * N + i) * 2], i)
            qc.rz(w[(l * N + i) * 2 + 1], i)
        for i in range(N):
            qc.cx(i, (i + 1) % N)
    return qc, list(x), list(w)


def anchor_layer(
    weights: torch.Tensor, estimator: Any = None, gradient: Any = None
) -> tuple[nn.Module, str]:
    """``TorchConnector(EstimatorQNN)`` of the circuit on ``estimator`` (default: Aer's
    ``EstimatorV2``, exact) with ``gradient`` (default: Qiskit ML's
    ``ParamShiftEstimatorGradient`` on that estimator)."""
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer.primitives import EstimatorV2
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = qiskit_circuit()
    # Z on qubit i: from_sparse_list names the qubit, so the label's little-endian
    # order (rightmost character = qubit 0) cannot be got wrong.
    observables = [
        SparsePauliOp.from_sparse_list([("Z", [i], 1.0)], num_qubits=N) for i in range(N)
    ]
    if estimator is None:
        estimator = EstimatorV2(options={"default_precision": 0.0})
    qnn = EstimatorQNN(
        circuit=qc,
        observables=observables,
        input_params=x,
        weight_params=w,
        estimator=estimator,
        default_precision=0.0,
        gradient=gradient,
    )
    layer = TorchConnector(qnn, initial_weights=weights.reshape(-1).numpy())
    desc = (
        f"EstimatorQNN({type(estimator).__module__}.{type(estimator).__name__}, "
        f"default_precision=0, gradient={type(qnn.gradient).__name__}) in TorchConnector"
    )
    return layer, desc


def _gpu_available() -> tuple[bool, str]:
    from qiskit_aer import AerSimulator

    devices = AerSimulator().available_devices()
    if "GPU" in devices:
        return True, "Aer reports a GPU"
    cuda = torch.cuda.is_available()
    return False, (
        f"not run: Aer's available devices are {list(devices)} (no qiskit-aer-gpu/CUDA; "
        f"torch.cuda.is_available()={cuda}); this machine has no GPU"
    )


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    import qiskit_aer
    import qiskit_machine_learning

    name = f"{NAME}[n={N}]"
    cfg.log(f"  {name}: L={LAYERS}, B={BATCH}, exact, parameter shift")
    g = torch.Generator().manual_seed(cfg.seed + 100 + N)
    # float64 tensors holding float32-representable values: both sides see the same
    # numbers although TorchConnector keeps float32 weights and returns float32.
    x = (torch.rand(BATCH, N, generator=g) * torch.pi).to(torch.float64)
    y = (torch.rand(BATCH, N, generator=g) * 2 - 1).to(torch.float64)
    w0 = (torch.rand(LAYERS, N, 2, generator=g) * 2 * torch.pi).to(torch.float64)

    qsem = qsem_layer(w0)
    anchor, anchor_desc = anchor_layer(w0.to(torch.float32))
    lq, gq = loss_and_grad(qsem, x, y)
    la, ga = loss_and_grad(anchor, x.to(torch.float32), y.to(torch.float32))
    dev_loss = check_close(f"{name} loss", lq, la, ATOL)
    dev_grad = check_close(f"{name} weight gradient", gq, ga, ATOL)
    cfg.log(
        f"    agreement: loss qsem {float(lq):.8f} anchor {float(la):.8f}, |dloss| "
        f"{dev_loss:.1e}, |dgrad| {dev_grad:.1e} (max |grad| {float(gq.abs().max()):.3g})"
    )

    gpu, gpu_why = _gpu_available()
    units = {
        "qsem": make_step(qsem, x, y),
        "anchor": make_step(anchor, x.to(torch.float32), y.to(torch.float32)),
    }
    anchor_reps = min(MAX_ANCHOR_REPEATS, cfg.slow_anchor_repeats)
    reps = {"qsem": cfg.repeats, "anchor": anchor_reps}
    # the agreement call above was a full anchor forward + backward: its warm-up
    warm = {"qsem": cfg.warmup, "anchor": 0}
    if gpu:
        units["qsem_gpu"] = make_step(qsem_layer(w0, device="GPU"), x, y)
        reps["qsem_gpu"] = cfg.repeats
        warm["qsem_gpu"] = cfg.warmup
    else:
        cfg.log(f"    aer_gpu: {gpu_why}")
    st = measure(units, reps, warm, cfg.log)

    aer_threads = "AerSimulator defaults on both sides (max_parallel_threads=0: all cores)"
    gpu_field: dict[str, Any]
    if gpu:
        gpu_field = {
            "run": True,
            "qsem_gpu_s": st["qsem_gpu"].median,
            "ratio_gpu": st["anchor"].median / st["qsem_gpu"].median,
            "qsem_gpu_timing": st["qsem_gpu"].as_dict(),
        }
    else:
        gpu_field = {"run": False, "reason": gpu_why}
    return {
        name: row(
            qsem=st["qsem"],
            anchor=f"qiskit-ml TorchConnector ({anchor_desc})",
            anchor_stats=st["anchor"],
            target=TARGET,
            notes=(
                f"n={N}, L={LAYERS}, B={BATCH}; one Adam step (fwd+bwd+update) on Aer statevector, "
                "exact. qsem: QuantumLayer(backend=AerBackend('statevector'), "
                "diff_method='parameter-shift'): 1 Aer job forward, 1 job backward with all "
                f"{(N + LAYERS * N * 2) * 2 * BATCH} shifted rows (inputs' columns included). "
                f"anchor: {anchor_desc}, qiskit-aer {qiskit_aer.__version__}, "
                f"qiskit-machine-learning {qiskit_machine_learning.__version__}; the gradient "
                f"runs one Aer job per PUB ({2 * LAYERS * N * 2 * BATCH * N} PUBs per backward, "
                f"{N} per forward). Threads: {aer_threads}; torch threads {cfg.threads}. "
                f"{MAX_ANCHOR_REPEATS} timed anchor steps at most; the agreement call is its "
                f"warm-up. Agreement checked: |dloss| {dev_loss:.1e}, |dgrad| {dev_grad:.1e}. "
                f"aer_gpu: {'run (qsem_gpu_s)' if gpu else gpu_why}."
            ),
            agreement={
                "loss_qsem": float(lq),
                "loss_anchor": float(la),
                "max_abs_dloss": dev_loss,
                "max_abs_dgrad": dev_grad,
                "max_abs_grad": float(gq.abs().max()),
            },
            aer_gpu=gpu_field,
            size={"n": N, "layers": LAYERS, "batch": BATCH},
            numpy=np.__version__,
            # Aer statevector in complex128: the forward rows plus every shifted row
            floor_bytes=floor_bytes(
                build_circuit(N, LAYERS),
                "statevector",
                BATCH,
                torch.complex128,
                backward=False,
                runs=1 + (N + LAYERS * N * 2) * 2,
            ),
        )
    }
