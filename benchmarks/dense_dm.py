"""dense_dm: a dense 12-qubit density matrix, batch 8, no grad, qsem vs Qiskit Aer.

Work (the same on both sides): the memory benchmark's circuit (``benchmarks.memory``:
``RY(x_i)`` encoding, 2 layers of ``RY``/``RZ`` on every wire + a CNOT ring) on 12 qubits
for a batch of 8 input rows, then ``<Z_i>`` of every wire; no gradient.

* qsem: ``TorchSimulator("density_matrix", dm_method="dense")`` in complex64 (the
  ``4096 × 4096`` matrix of each row is evolved: 1 GiB for the batch), ``expval`` of the
  12 ``Z_i`` under ``torch.no_grad()``.
* anchor: ``AerBackend(method="density_matrix", precision="single", fusion_enable=True)``
  (Aer's density-matrix method in single precision with gate fusion on), the same
  circuit with symbolic parameters, all 8 rows in ONE job (``parameter_binds``), exact
  ``save_expectation_value`` of the 12 ``Z_i``. Aer gets the same thread count as torch
  (``max_parallel_threads = --threads``).

Before timing, both sides' ``(8, 12)`` expectation values must agree to 1e-4.
"""

from __future__ import annotations

from typing import Any

import torch

from .harness import Config, check_close, floor_bytes, measure, row
from .memory import _params, _qubit_circuit

NAME = "dense_dm"
N, LAYERS, BATCH = 12, 2, 8
TARGET = ">= 5"
ATOL = 1e-4
#: timed Aer calls (about a minute each on one core); the agreement call is the warm-up
MAX_ANCHOR_REPEATS = 2


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    import qiskit_aer

    from qsem.circuits import PauliString
    from qsem.simulators import TorchSimulator, expval
    from qsem.simulators.aer import AerBackend

    name = f"{NAME}[{N} qubits B={BATCH}]"
    cfg.log(f"  {name}: {LAYERS} layers, no grad, dense complex64 vs Aer density_matrix single")
    circuit = _qubit_circuit(N, LAYERS)
    params = _params(circuit, BATCH, cfg.seed)
    obs = [PauliString("Z", wires=[i]) for i in range(N)]
    names = list(circuit.parameters)
    values = torch.stack(
        [params[k].to(torch.float64).expand(BATCH) for k in names], dim=1
    )  # (B, K): the same numbers on both sides
    sim = TorchSimulator("density_matrix", dm_method="dense")
    aer = AerBackend(
        method="density_matrix",
        precision="single",
        fusion_enable=True,
        max_parallel_threads=cfg.threads,
    )

    def qsem() -> torch.Tensor:
        with torch.no_grad():
            return expval(sim.run(circuit, params), obs)

    def anchor() -> torch.Tensor:
        return aer.expval(circuit, values, names, obs)

    dev = check_close(f"{name} <Z_i>", qsem(), anchor(), ATOL)
    cfg.log(f"    agreement: max |d<Z_i>| {dev:.1e} over {BATCH} rows x {N} wires")
    q_reps = 2 if cfg.quick else 5
    units = {"qsem": qsem, "anchor": anchor}
    reps = {"qsem": q_reps, "anchor": min(MAX_ANCHOR_REPEATS, cfg.slow_anchor_repeats)}
    warm = {"qsem": 1, "anchor": 0}  # the agreement call was each side's warm-up
    st = measure(units, reps, warm, cfg.log)
    return {
        name: row(
            qsem=st["qsem"],
            anchor=f"qiskit-aer density_matrix (single precision, fusion on, "
            f"qiskit-aer {qiskit_aer.__version__})",
            anchor_stats=st["anchor"],
            target=TARGET,
            notes=(
                f"{N} qubits, {LAYERS} layers (RY encoding, RY/RZ + CNOT ring), B={BATCH}, "
                "no grad, <Z_i> of every wire. qsem: dense density matrix complex64 "
                "(dm_method='dense', 1 GiB for the batch, run one batch row at a time); "
                "Aer: method='density_matrix', "
                "precision='single', fusion_enable=True, one job for the 8 rows "
                f"(parameter_binds), max_parallel_threads={cfg.threads} (torch threads "
                f"{cfg.threads}). Agreement checked: max |d<Z_i>| {dev:.1e}."
            ),
            agreement={"max_abs_dexpval": dev},
            size={"qubits": N, "layers": LAYERS, "batch": BATCH},
            floor_bytes=floor_bytes(
                circuit, "density_matrix", BATCH, torch.complex64, backward=False
            ),
        )
    }
