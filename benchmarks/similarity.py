"""similarity: overlaps of 256 pairs of 4-qubit states, qsem vs qiskit-machine-learning.

States (the same on every side): 4 qubits, ``RY(θ_{i,0})`` and ``RZ(θ_{i,1})`` on every
wire ``i``, then a CNOT chain ``CNOT(i, i+1)``; 256 pairs ``(θ_a, θ_b)`` drawn uniformly
in ``[0, 2π)``. Every side returns the 256 values of ``|<a|b>|²``:

* ``qsem exact`` (row ``similarity[exact]``): the torch engine (complex128) runs the
  ansatz once per register for the whole batch (``(256,)``-tensors bound to symbolic
  parameters) and :func:`qsem.simulators.similarity.overlap` gives the exact values.
* ``qsem SWAP test on Aer`` (row ``similarity[aer_swap]``):
  :func:`qsem.simulators.similarity.swap_test_circuits` with ``AerBackend()``: the
  9-qubit SWAP-test circuit (ancilla + two registers prepared by the ansatz) with
  symbolic parameters, all 256 pairs in ONE Aer job (``parameter_binds``), 4096 shots
  per pair, ``Tr(ρσ) = 2 P(0) - 1`` with its Wilson interval (the reported value is
  the estimate clipped to ``[0, 1]``).
* ``similarity[aer_swap_sampled]`` (informative, no target): the same SWAP test with
  ``sampling="exact"``: Aer computes the exact ancilla probabilities (one job) and qsem
  draws ``Binomial(4096, P0)`` per pair — the distribution of Aer's measurement sampling
  of the final state, without Aer's per-shot cost.
* anchor: qiskit-machine-learning ``ComputeUncompute`` on ``qiskit_aer.primitives.
  SamplerV2`` (4096 shots): the 4-qubit circuit ``U(θ_a) U(θ_b)^†`` measured for
  ``P(0000)``, 256 pairs in one ``run`` call.

* ``similarity[equal_error]`` (target ``>= 5``): qsem's DEFAULT shot estimator,
  :func:`qsem.simulators.estimators.estimate_overlap` with ``backend=AerBackend()``
  (method ``DEFAULT_METHOD`` = compute-uncompute, the same 4-qubit ``U_a U_b^†``
  circuit, symbolic parameters, all 256 pairs in ONE Aer job with ``parameter_binds``,
  transpiled once and cached; Aer draws the shots), at the shots where its mean
  standard error over these pairs equals ComputeUncompute's at 4096 (derived from the
  closed-form variances at the exact values; for the same estimator that is 4096).
  Its MAE must agree with the anchor's within 4 standard errors of their difference.

All rows are timed against the same anchor; each row also reports the mean absolute
error (MAE) of every method against the exact value (checked against Qiskit
``Statevector`` fidelities). Before timing, the shot estimates of both sides must
lie within 4 standard errors of the exact value (else the comparison is void).

The SWAP test's estimate has standard error ``sqrt(1 - F²) / sqrt(shots)``, the
compute-uncompute estimate ``sqrt(F (1 - F)) / sqrt(shots)``: at equal shots the
SWAP test is the noisier one (it needs no inverse circuit, and works for mixed states
and registers prepared separately, where compute-uncompute needs both preparations
as one unitary circuit).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from qsem.circuits import CNOT, RY, RZ, Circuit, Parameter
from qsem.circuits.templates import compute_uncompute
from qsem.simulators import TorchSimulator
from qsem.simulators.estimators import DEFAULT_METHOD, estimate_overlap, overlap_variance
from qsem.simulators.similarity import overlap, swap_test_circuits
from qsem.simulators.swap_circuits import _swap_circuit

from .harness import AgreementError, Config, check_close, floor_bytes, measure, row

NAME = "similarity"
N_QUBITS, PAIRS, SHOTS = 4, 256, 4096
SIGMAS = 4.0


def ansatz(prefix: str) -> tuple[Circuit, list[str]]:
    """RY, RZ per wire + CNOT chain; parameter names ``{prefix}{i}_{0|1}``."""
    c = Circuit.qubits(N_QUBITS)
    names = []
    for i in range(N_QUBITS):
        ry, rz = f"{prefix}{i}_0", f"{prefix}{i}_1"
        names += [ry, rz]
        c.add(RY(Parameter(ry), wires=i), RZ(Parameter(rz), wires=i))
    for i in range(N_QUBITS - 1):
        c.add(CNOT(wires=[i, i + 1]))
    return c, names


def qiskit_ansatz() -> Any:
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    p = ParameterVector("t", 2 * N_QUBITS)
    qc = QuantumCircuit(N_QUBITS)
    for i in range(N_QUBITS):
        qc.ry(p[2 * i], i)
        qc.rz(p[2 * i + 1], i)
    for i in range(N_QUBITS - 1):
        qc.cx(i, i + 1)
    return qc


def qiskit_reference(ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Exact |<a|b>|² from Qiskit Statevectors (an independent check of the exact values)."""
    from qiskit.quantum_info import Statevector

    qc = qiskit_ansatz()
    out = []
    for a, b in zip(ta, tb, strict=True):
        sa = Statevector(qc.assign_parameters(a))
        sb = Statevector(qc.assign_parameters(b))
        out.append(abs(sa.inner(sb)) ** 2)
    return np.asarray(out)


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    from qiskit_aer.primitives import SamplerV2
    from qiskit_machine_learning.state_fidelities import ComputeUncompute

    from qsem.simulators.aer import AerBackend

    g = torch.Generator().manual_seed(cfg.seed)
    ta = torch.rand(PAIRS, 2 * N_QUBITS, generator=g, dtype=torch.float64) * 2 * math.pi
    tb = torch.rand(PAIRS, 2 * N_QUBITS, generator=g, dtype=torch.float64) * 2 * math.pi

    # qsem exact: one batched run per register, then overlap
    circ, names = ansatz("t")
    sim = TorchSimulator("statevector", dtype=torch.complex128)

    def qsem_exact() -> torch.Tensor:
        sa = sim.run(circ, {n: ta[:, k] for k, n in enumerate(names)})
        sb = sim.run(circ, {n: tb[:, k] for k, n in enumerate(names)})
        return overlap(sa, sb, check=False)

    # qsem SWAP test on Aer: one job, 256 parameter rows
    prep_a, names_a = ansatz("a")
    prep_b, names_b = ansatz("b")
    values = torch.cat([ta, tb], dim=1)
    aer = AerBackend()

    def qsem_aer_swap(sampling: str = "backend") -> Any:
        return swap_test_circuits(
            prep_a, prep_b, backend=aer, values=values, names=names_a + names_b,
            shots=SHOTS, seed=cfg.seed, sampling=sampling,
        )  # fmt: skip

    def qsem_aer_swap_sampled() -> Any:
        return qsem_aer_swap("exact")

    # anchor: ComputeUncompute on Aer's SamplerV2
    qc = qiskit_ansatz()
    fid = ComputeUncompute(SamplerV2(default_shots=SHOTS, seed=cfg.seed))
    va, vb = ta.numpy(), tb.numpy()

    def anchor() -> np.ndarray:
        job = fid.run([qc] * PAIRS, [qc] * PAIRS, va, vb)
        return np.asarray(job.result().fidelities, dtype=np.float64)

    # agreement (untimed): exact vs Qiskit Statevector; shot estimates within 4 SE
    exact = qsem_exact()
    ref = torch.from_numpy(qiskit_reference(va, vb))
    dev_exact = check_close(f"{NAME} exact overlap vs Qiskit Statevector", exact, ref, 1e-9)
    est = qsem_aer_swap()
    est_s = qsem_aer_swap_sampled()
    cu = torch.from_numpy(anchor())
    se_swap = torch.sqrt((1 - exact**2).clamp(min=0) / SHOTS)
    se_cu = torch.sqrt((exact * (1 - exact)).clamp(min=0) / SHOTS)
    checks = (
        ("SWAP test on Aer", est.raw, se_swap),
        ("SWAP test on Aer (exact, sampled)", est_s.raw, se_swap),
        ("ComputeUncompute", cu, se_cu),
    )
    for what, value, se in checks:
        bad = int(((value - exact).abs() > SIGMAS * se + 1e-12).sum())
        if bad:
            raise AgreementError(f"{NAME}: {what}: {bad} of {PAIRS} pairs beyond {SIGMAS} SE")
    mae = {
        "qsem_exact": float((exact - ref).abs().mean()),
        "qsem_aer_swap": float((est.estimate - exact).abs().mean()),
        "qsem_aer_swap_raw": float((est.raw - exact).abs().mean()),
        "qsem_aer_swap_sampled": float((est_s.estimate - exact).abs().mean()),
        "anchor_compute_uncompute": float((cu - exact).abs().mean()),
    }
    coverage = float(est.contains(exact).double().mean())
    cfg.log(
        f"    agreement: exact vs Qiskit {dev_exact:.1e}; MAE SWAP/Aer "
        f"{mae['qsem_aer_swap']:.4f}, ComputeUncompute {mae['anchor_compute_uncompute']:.4f}; "
        f"Wilson 95% coverage {coverage:.3f}"
    )

    units = {
        "qsem_exact": qsem_exact,
        "qsem_aer_swap": qsem_aer_swap,
        "qsem_aer_swap_sampled": qsem_aer_swap_sampled,
        "anchor": anchor,
    }
    reps = {
        "qsem_exact": cfg.repeats,
        "qsem_aer_swap": cfg.anchor_repeats,
        "qsem_aer_swap_sampled": cfg.repeats,
        "anchor": cfg.anchor_repeats,
    }
    warm = {
        "qsem_exact": cfg.warmup,
        "qsem_aer_swap": cfg.anchor_warmup,
        "qsem_aer_swap_sampled": cfg.warmup,
        "anchor": cfg.anchor_warmup,
    }
    st = measure(units, reps, warm, cfg.log)
    anchor_name = f"qiskit-ml ComputeUncompute (Aer SamplerV2, {SHOTS} shots)"

    # Equal error, with qsem's DEFAULT shot estimator: estimate_overlap on AerBackend,
    # method DEFAULT_METHOD (compute-uncompute), default sampling ("auto": Aer's exact
    # probabilities, qsem draws seeded Binomial counts; the informative variant below has
    # Aer draw the shots, sampling="backend").
    # Its shots are those at which its mean standard error over these pairs equals
    # ComputeUncompute's at SHOTS, from the closed-form variances at the exact values (not
    # tuned to a draw); for the same estimator this comes out as SHOTS itself.
    def mean_se(method: str, shots: int) -> float:
        return float(overlap_variance(exact.clamp(0, 1), shots, method).sqrt().mean())

    se_anchor = float(se_cu.mean())
    shots_eq = math.ceil(SHOTS * (mean_se(DEFAULT_METHOD, SHOTS) / se_anchor) ** 2)
    shots_eq_swap = math.ceil(SHOTS * (mean_se("swap", SHOTS) / se_anchor) ** 2)
    pa = {n: ta[:, k] for k, n in enumerate(names)}
    pb = {n: tb[:, k] for k, n in enumerate(names)}

    def eq_default() -> Any:  # qsem's default estimator (default sampling: exact + Binomial)
        return estimate_overlap(circ, pa, pb, backend=aer, shots=shots_eq, seed=cfg.seed + 1)

    def eq_sampled() -> Any:  # the same estimator, Aer drawing the shots
        return estimate_overlap(
            circ, pa, pb, backend=aer, shots=shots_eq, seed=cfg.seed + 1, sampling="backend"
        )

    eq = eq_default()
    se_eq = overlap_variance(exact.clamp(0, 1), shots_eq, DEFAULT_METHOD).sqrt()
    bad = int(((eq.raw - exact).abs() > SIGMAS * se_eq + 1e-12).sum())
    if bad:
        raise AgreementError(f"{NAME}: default estimator: {bad} of {PAIRS} pairs beyond 4 SE")
    mae["qsem_default_equal_error"] = float((eq.estimate - exact).abs().mean())
    mae["qsem_default_sampled_equal_error"] = float((eq_sampled().estimate - exact).abs().mean())
    # MAEs of two independent estimators with equal standard errors differ by sampling
    # noise only: the standard error of a mean of PAIRS absolute errors.
    err_eq = (eq.estimate - exact).abs()
    err_cu = (cu - exact).abs()
    mae_se = math.sqrt(float(err_eq.var() + err_cu.var()) / PAIRS)
    mae_gap = mae["qsem_default_equal_error"] - mae["anchor_compute_uncompute"]
    cfg.log(
        f"    equal error: {DEFAULT_METHOD} (qsem default) at {shots_eq} shots per pair "
        f"(SWAP test would need {shots_eq_swap}); MAE default "
        f"{mae['qsem_default_equal_error']:.4f}, sampled "
        f"{mae['qsem_default_sampled_equal_error']:.4f}, ComputeUncompute "
        f"{mae['anchor_compute_uncompute']:.4f} (gap {mae_gap:+.4f}, SE of the gap {mae_se:.4f})"
    )
    if abs(mae_gap) > SIGMAS * mae_se:
        raise AgreementError(f"{NAME}: equal-error MAEs differ by {mae_gap:+.4f} > {SIGMAS} SE")
    st_eq = measure(
        {"eq_default": eq_default, "eq_sampled": eq_sampled, "anchor": anchor},
        {"eq_default": cfg.anchor_repeats, "eq_sampled": cfg.repeats, "anchor": cfg.anchor_repeats},
        {"eq_default": 0, "eq_sampled": cfg.warmup, "anchor": 0},  # the MAE calls warmed up
        cfg.log,
    )

    # floors: the exact row runs the 4-qubit ansatz on both registers (complex128); the
    # SWAP-test rows run the 9-qubit SWAP-test circuit on Aer (complex128) for every pair
    floor_exact = floor_bytes(circ, "statevector", PAIRS, torch.complex128, backward=False, runs=2)
    floor_swap = floor_bytes(
        _swap_circuit(prep_a, prep_b, False), "statevector", PAIRS, torch.complex128,
        backward=False,
    )  # fmt: skip
    floor_cu = floor_bytes(
        compute_uncompute(prep_a, prep_b), "statevector", PAIRS, torch.complex128, backward=False
    )
    common = {
        "mae": mae,
        "swap_wilson95_coverage": coverage,
        "size": {"qubits": N_QUBITS, "pairs": PAIRS, "shots": SHOTS},
        "agreement": {"max_abs_exact_vs_qiskit": dev_exact},
    }
    return {
        f"{NAME}[exact]": row(
            qsem=st["qsem_exact"],
            anchor=anchor_name,
            anchor_stats=st["anchor"],
            target=">= 300",
            floor_bytes=floor_exact,
            notes=(
                f"{PAIRS} pairs of {N_QUBITS}-qubit states (RY,RZ per wire + CNOT chain): qsem "
                "torch engine complex128, batched run per register + overlap (exact; MAE "
                f"{mae['qsem_exact']:.1e} vs Qiskit Statevector) vs ComputeUncompute at {SHOTS} "
                f"shots (MAE {mae['anchor_compute_uncompute']:.4f})."
            ),
            **common,
        ),
        f"{NAME}[aer_swap]": row(
            qsem=st["qsem_aer_swap"],
            anchor=anchor_name,
            anchor_stats=st["anchor"],
            target=">= 2",
            floor_bytes=floor_swap,
            notes=(
                f"qsem SWAP test (9 qubits) on AerBackend, {PAIRS} pairs in one job, {SHOTS} "
                f"shots: MAE {mae['qsem_aer_swap']:.4f} (SE sqrt(1-F²)/64) vs ComputeUncompute "
                f"(4 qubits, U_a U_b^†) MAE {mae['anchor_compute_uncompute']:.4f} "
                "(SE sqrt(F(1-F))/64); Wilson 95% interval coverage "
                f"{coverage:.3f}. Aer draws the shots on both sides; its per-shot measurement "
                "sampling on 9 qubits is most of the SWAP-test time (the exact ancilla "
                "probabilities of all 256 pairs take one fast job: row aer_swap_sampled)."
            ),
            **common,
        ),
        f"{NAME}[equal_error]": row(
            qsem=st_eq["eq_default"],
            anchor=anchor_name,
            anchor_stats=st_eq["anchor"],
            target=">= 5",
            floor_bytes=floor_cu,
            notes=(
                f"at equal error: qsem's default shot estimator, estimate_overlap(..., "
                f"backend=AerBackend(), shots={shots_eq}) (method {DEFAULT_METHOD}: "
                f"U_a then U_b^†, P(0…0); default sampling: Aer's exact probabilities, qsem "
                f"draws Binomial counts, {PAIRS} pairs in one job) at "
                f"the shots where its mean standard error over these pairs equals "
                f"ComputeUncompute's at {SHOTS} (closed-form variances at the exact values): "
                f"MAE {mae['qsem_default_equal_error']:.4f} against ComputeUncompute's "
                f"{mae['anchor_compute_uncompute']:.4f} (gap {mae_gap:+.4f}, its SE "
                f"{mae_se:.4f}). The SWAP test would need {shots_eq_swap} shots for the same "
                f"error (row aer_swap at {SHOTS}). With sampling='backend' (Aer draws the "
                f"{PAIRS}x{shots_eq} shots, ~0.6 us each, as ComputeUncompute does) MAE "
                f"{mae['qsem_default_sampled_equal_error']:.4f} in "
                f"{st_eq['eq_sampled'].median * 1e3:.1f} ms, "
                f"{st_eq['anchor'].median / st_eq['eq_sampled'].median:.0f}x the anchor's speed "
                "(not the default sampling, so not the row's ratio)."
            ),
            shots_equal_error=shots_eq,
            shots_equal_error_swap=shots_eq_swap,
            mae_gap={"value": mae_gap, "se": mae_se},
            equal_error_sampled={
                "ratio": st_eq["anchor"].median / st_eq["eq_sampled"].median,
                "ratio_min": st_eq["anchor"].min / st_eq["eq_sampled"].min,
                "qsem_timing": st_eq["eq_sampled"].as_dict(),
            },
            **common,
        ),
        f"{NAME}[aer_swap_sampled]": row(
            qsem=st["qsem_aer_swap_sampled"],
            anchor=anchor_name,
            anchor_stats=st["anchor"],
            target=None,
            floor_bytes=floor_swap,
            notes=(
                "informative: the same SWAP test, Aer computes the exact ancilla probability of "
                "all 256 pairs in one job (save_probabilities) and qsem draws the 4096 shots per "
                "pair (Binomial(4096, P0), seeded; sampling='exact') — the distribution of "
                "Aer's own measurement sampling of the final state, without its per-shot cost; "
                f"MAE {mae['qsem_aer_swap_sampled']:.4f}. The anchor still lets Aer draw its "
                "shots, so this is not the like-for-like row."
            ),
            **common,
        ),
    }
