"""noisy_backend: a circuit transpiled to a fake IBM device, under that device's noise.

Work: the native-gate ansatz of ``qsem run noisy-training``
(:func:`qsem.experiments.noisy_training.device_ansatz`: ``sx rz(x) sx`` encoding, 2 layers
of ``rz sx rz sx`` + a ``cx`` chain) on the 5 qubits of ``FakeManilaV2``, transpiled to it,
with the snapshot's noise (Aer's ``NoiseModel.from_backend``: depolarizing + thermal
relaxation after every ``sx``/``x``/``cx``, readout errors). A batch of 64 parameter sets
(every angle different per row); the output is the probabilities of all 32 outcomes.

* qsem: ``NoiseModel.from_backend`` applied to the transpiled circuit (a Kraus channel
  after each noisy gate), as it comes (no folding pass: the density-matrix plan groups
  gates and channels into superoperator blocks itself, :mod:`qsem.simulators.plan_super`),
  ``TorchSimulator("density_matrix")`` complex128, the 64 rows as one batch, ``probs``
  (forward row: no grad; the readout confusion applied).
* anchor: ``AerSimulator(method="density_matrix", noise_model=<the same Aer model>)``
  (double precision, Aer's defaults incl. fusion), the transpiled circuit with
  ``save_probabilities``, the 64 rows in ONE job (``parameter_binds``), same threads.
* gradient row: qsem's forward + backward of a cross-entropy on qubit 0's recorded
  probabilities (readout included) w.r.t. all 64 × 25 angles. Aer has no gradient: its
  row shows Aer's forward beside it (a parameter-shift gradient on Aer would need
  2 × 25 shifted circuits per row: 50 of Aer's forward jobs).

Before timing, qsem's exact probabilities (no readout) must agree with Aer's to 1e-8
(Aer drops mixture terms of probability < 1e-10 from each error, ~1e-9 here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .harness import Config, check_close, measure, row

NAME = "noisy_backend"
N, LAYERS, BATCH = 5, 2, 64
TARGET = ">= 10"
ATOL = 1e-8


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    import qiskit_aer
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qsem.experiments.noisy_training import device_circuits
    from qsem.simulators import TorchSimulator, probs

    dev = device_circuits(FakeManilaV2(), N, LAYERS)
    tq, nm = dev["qiskit"], dev["noise"]
    noisy = nm.apply(tq)
    n_chan = sum(op.name == "Kraus" for op in noisy.ops)
    step = TorchSimulator("density_matrix").plan(noisy).steps[-1]
    n_blocks = len(step.blocks_from(step.start, noisy.ops))
    name = f"{NAME}[FakeManilaV2 {N} qubits B={BATCH}]"
    cfg.log(f"  {name}: {dict(tq.count_ops())}, {n_chan} noise channels")
    lengths = noisy.parameter_lengths  # {"x": N, "w": 2 N LAYERS}
    gen = torch.Generator().manual_seed(cfg.seed)
    binds = {
        k: 2 * np.pi * torch.rand(BATCH, int(n or 1), generator=gen, dtype=torch.float64)
        for k, n in lengths.items()
    }
    n_angles = sum(int(n or 1) for n in lengths.values())
    sim = TorchSimulator("density_matrix", dtype=torch.complex128)

    qc = tq.copy()
    qc.save_probabilities(label="p")
    qparams = {p.name: p for p in qc.parameters}
    aer_binds = [
        {
            qparams[f"{k}[{i}]"]: v[:, i].tolist()
            for k, v in binds.items()
            for i in range(v.shape[1])
        }
    ]
    aer = AerSimulator(
        method="density_matrix", noise_model=dev["aer_noise"], max_parallel_threads=cfg.threads
    )

    def qsem_exact() -> torch.Tensor:
        with torch.no_grad():
            return probs(sim.run(noisy, binds))

    def qsem() -> torch.Tensor:
        with torch.no_grad():
            return probs(sim.run(noisy, binds), readout=nm)

    def anchor() -> torch.Tensor:
        res = aer.run(qc, parameter_binds=aer_binds).result()
        return torch.tensor(np.stack([res.data(i)["p"] for i in range(BATCH)]))

    leaves = {k: v.clone().requires_grad_(True) for k, v in binds.items()}

    def grad_step() -> None:
        p = probs(sim.run(noisy, leaves), [dev["full_wire"]], readout=nm)
        loss = -torch.log(p[:, 0].clamp(min=1e-12)).mean()
        loss.backward()

    dev_p = check_close(f"{name} probs", qsem_exact(), anchor(), ATOL)
    cfg.log(f"    agreement: max |dp| {dev_p:.1e} over {BATCH} rows x {2**N} outcomes")
    units = {"qsem": qsem, "grad": grad_step, "anchor": anchor}
    reps = {"qsem": cfg.repeats, "grad": cfg.repeats, "anchor": cfg.anchor_repeats}
    st = measure(units, reps, {"qsem": cfg.warmup, "grad": 1, "anchor": 0}, cfg.log)
    anchor_name = (
        f"qiskit-aer density_matrix + NoiseModel.from_backend (qiskit-aer {qiskit_aer.__version__})"
    )
    common = (
        f"FakeManilaV2, {N} qubits, ansatz {LAYERS} layers transpiled ({dict(tq.count_ops())}), "
        f"{n_chan} Kraus channels ({len(noisy.ops)} ops; the plan's superoperator blocks "
        f"from the first channel on: {n_blocks}), B={BATCH} parameter sets, "
        "complex128 / Aer double, "
        f"threads {cfg.threads}. Agreement: max |dp| {dev_p:.1e}."
    )
    size = {"qubits": N, "layers": LAYERS, "batch": BATCH, "channels": n_chan}
    return {
        name: row(
            qsem=st["qsem"], anchor=anchor_name, anchor_stats=st["anchor"], target=TARGET,
            notes="forward, no grad: probabilities with readout (qsem) vs save_probabilities "
            "(Aer), one job for the batch. " + common,
            agreement={"max_abs_dprob": dev_p}, size=size,
        ),
        f"{NAME}_grad[FakeManilaV2 {N} qubits B={BATCH}]": row(
            qsem=st["grad"], anchor=anchor_name + ", forward only", anchor_stats=st["anchor"],
            target=None,
            notes="qsem forward + backward (autograd through every Kraus channel and the "
            "readout) against Aer's forward alone: Aer cannot differentiate (parameter "
            f"shift would need {2 * n_angles} shifted circuits per row). " + common,
            size=size,
        ),
    }  # fmt: skip
