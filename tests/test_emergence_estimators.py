"""Overlap estimators of two bindings of one circuit: compute–uncompute, SWAP, destructive.

References: the exact ``overlap`` of the two simulated states (statevectors; density
matrices for circuits with channels), the closed forms ``F(1 − F)/N`` and
``(1 − F²)/N`` for the variance of the shot estimates, and the exact coverage of the
binomial interval summed over every count ``k = 0..N`` with SciPy's binomial pmf.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ATOL_BACKENDS, ATOL_F64, SHOT_SIGMAS
from scipy import stats

from qsem.circuits import (
    CNOT,
    RY,
    RZ,
    TRY,
    TRZ,
    Circuit,
    Controlled,
    Depolarizing,
    Parameter,
    ParameterVector,
    QsemTypeError,
    QsemValueError,
)
from qsem.emergence import QuantumDetector
from qsem.simulators import simulate
from qsem.simulators.estimators import (
    DEFAULT_METHOD,
    OVERLAP_METHODS,
    estimate_overlap,
    overlap_variance,
    two_bindings,
)
from qsem.simulators.shot_estimates import (
    OverlapEstimate,
    binomial_interval,
    estimate_from_counts,
)
from qsem.simulators.similarity import overlap

C128 = torch.complex128


def qubit_circuit(n: int = 2) -> Circuit:
    c = Circuit.qubits(n)
    for w in range(n):
        c.add(RY(Parameter(f"y{w}"), wires=w), RZ(Parameter(f"z{w}"), wires=w))
    for w in range(n - 1):
        c.add(CNOT(wires=[w, w + 1]))
    c.add(RY(Parameter("y0") * 0.5, wires=n - 1))
    return c


def qutrit_circuit() -> Circuit:
    w = ParameterVector("w", 3)
    c = Circuit([3, 2])
    c.add(TRY(w[0], wires=0, subspace=(0, 1)), TRY(w[1], wires=0, subspace=(1, 2)))
    c.add(TRZ(Parameter("p"), wires=0, subspace=(0, 2)), RY(w[2], wires=1))
    c.add(Controlled(RY(Parameter("p") * 0.7, wires=1), control_wires=[0], control_values=[2]))
    c.add(RZ(0.4, wires=1))
    return c


def random_params(circuit: Circuit, n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, k in circuit.parameter_lengths.items():
        shape = (n,) if k is None else (n, k)
        out[name] = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    return out


def reference(circuit: Circuit, pa: dict, pb: dict) -> np.ndarray:
    sa = simulate(circuit, pa, dtype=C128)
    sb = simulate(circuit, pb, dtype=C128)
    return overlap(sa, sb).numpy()


# ---------------------------------------------------------------------------------
# exact values
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", OVERLAP_METHODS)
@pytest.mark.parametrize("seed", range(3))
def test_exact_equals_overlap_of_the_states_qubits(method, seed):
    c = qubit_circuit(2 + seed % 2)
    pa, pb = random_params(c, 5, seed), random_params(c, 5, seed + 10)
    f = estimate_overlap(c, pa, pb, method=method)
    assert isinstance(f, torch.Tensor) and f.shape == (5,) and f.dtype == torch.float64
    np.testing.assert_allclose(f.numpy(), reference(c, pa, pb), atol=ATOL_F64)


@pytest.mark.parametrize("method", OVERLAP_METHODS)
def test_exact_equals_overlap_qutrit_and_vector_parameters(method):
    c = qutrit_circuit()
    pa, pb = random_params(c, 4, 1), random_params(c, 4, 2)
    f = estimate_overlap(c, pa, pb, method=method)
    np.testing.assert_allclose(f.numpy(), reference(c, pa, pb), atol=ATOL_F64)


def test_scalars_broadcast_and_closed_form():
    c = Circuit.qubits(1).add(RY(Parameter("x"), wires=0))
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    for method in OVERLAP_METHODS:
        f = estimate_overlap(c, {"x": x}, {"x": 0.25}, method=method)
        np.testing.assert_allclose(f.numpy(), torch.cos((x - 0.25) / 2).pow(2).numpy(), atol=1e-12)
    f1 = estimate_overlap(c, {"x": 0.3}, {"x": 0.3})
    assert f1.shape == (1,) and float(f1) == pytest.approx(1.0, abs=1e-12)


def test_swap_forms_on_mixed_states_give_tr_rho_sigma():
    c = qubit_circuit(2).add(Depolarizing(0.2, wires=0))
    pa, pb = random_params(c, 3, 5), random_params(c, 3, 6)
    ref = reference(c, pa, pb)  # density matrices: Tr(ρσ)
    for method in ("swap", "destructive"):
        f = estimate_overlap(c, pa, pb, method=method)
        np.testing.assert_allclose(f.numpy(), ref, atol=ATOL_F64)
    with pytest.raises(QsemValueError, match=r"^argument 'method': compute_uncompute"):
        estimate_overlap(c, pa, pb, method="compute_uncompute")


def test_two_bindings_renames_every_parameter():
    c = qutrit_circuit()
    prep_a, prep_b, values, names = two_bindings(
        c, random_params(c, 2, 0), {"w": [1, 2, 3], "p": 0}
    )
    assert prep_a.parameters == ["a0", "a1", "a2", "a3"] and prep_b.parameters[0] == "b0"
    assert names == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]
    assert values.shape == (2, 8) and values[:, 4:].tolist() == [[1, 2, 0, 3]] * 2


# ---------------------------------------------------------------------------------
# shots: unbiased, closed-form variance, coverage
# ---------------------------------------------------------------------------------


def angle_for(f: float) -> float:
    """RY angle difference with ``cos²(Δ/2) = F``."""
    return 2 * math.acos(math.sqrt(f))


@pytest.mark.parametrize("method", OVERLAP_METHODS)
@pytest.mark.parametrize("fid", [0.5, 0.95])
def test_shot_estimates_unbiased_with_closed_form_variance(method, fid):
    """R independent rows of N shots (one seeded job): mean and variance of the raw estimate.

    Tolerances: the mean within SHOT_SIGMAS standard errors ``sqrt(v / R)``; the sample
    variance within SHOT_SIGMAS of its own standard error ``v sqrt(2/(R−1) + κ/R)``
    (κ: the excess kurtosis of the scaled binomial count).
    """
    reps, n = 3000, 200
    c = Circuit.qubits(1).add(RY(Parameter("x"), wires=0))
    x = torch.full((reps,), angle_for(fid), dtype=torch.float64)
    est = estimate_overlap(c, {"x": x}, {"x": 0.0}, method=method, shots=n, seed=17)
    assert isinstance(est, OverlapEstimate) and est.estimate.shape == (reps,)
    raw = est.raw.numpy()
    v = float(overlap_variance(fid, n, method))
    assert abs(raw.mean() - fid) <= SHOT_SIGMAS * math.sqrt(v / reps)
    p = fid if method == "compute_uncompute" else (1 + fid) / 2
    kurt = (1 - 6 * p * (1 - p)) / (n * p * (1 - p))
    se_var = v * math.sqrt(2 / (reps - 1) + kurt / reps)
    assert abs(raw.var(ddof=1) - v) <= SHOT_SIGMAS * se_var


def exact_coverage(fid: float, n: int, mapping: str, confidence: float = 0.95) -> float:
    k = np.arange(n + 1)
    p = fid if mapping == "direct" else (1 + fid) / 2
    est = estimate_from_counts(torch.as_tensor(k), n, confidence=confidence, mapping=mapping)
    inside = est.contains(fid).numpy()
    return float(stats.binom.pmf(k, n, p)[inside].sum())


@pytest.mark.parametrize("method", OVERLAP_METHODS)
@pytest.mark.parametrize("fid", [0.3, 0.9, 0.99])
def test_intervals_cover_at_the_nominal_rate(method, fid):
    reps, n = 2000, 300
    mapping = "direct" if method == "compute_uncompute" else "swap"
    cover = exact_coverage(fid, n, mapping)
    assert cover >= 0.92  # Wilson: close to nominal (0.95), slightly below at some p
    c = Circuit.qubits(1).add(RY(Parameter("x"), wires=0))
    x = torch.full((reps,), angle_for(fid), dtype=torch.float64)
    est = estimate_overlap(c, {"x": x}, {"x": 0.0}, method=method, shots=n, seed=23)
    seen = float(est.contains(fid).double().mean())
    assert abs(seen - cover) <= SHOT_SIGMAS * math.sqrt(cover * (1 - cover) / reps)


def test_direct_mapping_interval_is_the_binomial_interval():
    low, high = binomial_interval(970, 1000)
    est = estimate_from_counts(970, 1000, mapping="direct")
    assert float(est.estimate) == 0.97 and float(est.raw) == 0.97
    assert float(est.low) == float(low) and float(est.high) == float(high)
    assert float(est.std_error) == pytest.approx(math.sqrt(0.97 * 0.03 / 1000))
    swap = estimate_from_counts(985, 1000)
    assert isinstance(swap, OverlapEstimate) and swap.mapping == "swap"
    assert float(swap.raw) == pytest.approx(0.97) and float(swap.low) == pytest.approx(
        2 * float(binomial_interval(985, 1000)[0]) - 1
    )
    assert est.as_dict()["mapping"] == "direct"


def test_sampling_exact_and_backend_agree_in_distribution():
    c = qubit_circuit(2)
    pa, pb = random_params(c, 4, 3), random_params(c, 4, 4)
    ref = reference(c, pa, pb)
    for sampling in ("backend", "exact"):
        est = estimate_overlap(c, pa, pb, shots=5000, seed=1, sampling=sampling)
        sd = np.sqrt(ref * (1 - ref) / 5000)
        assert np.all(np.abs(est.raw.numpy() - ref) <= SHOT_SIGMAS * sd + 1e-12)
        again = estimate_overlap(c, pa, pb, shots=5000, seed=1, sampling=sampling)
        assert torch.equal(est.p0, again.p0)


def test_default_method_and_closed_form_ratio():
    assert DEFAULT_METHOD == "compute_uncompute"
    for f in (0.9, 0.99, 0.999):
        ratio = overlap_variance(f, 1, "swap") / overlap_variance(f, 1, "compute_uncompute")
        assert float(ratio) == pytest.approx((1 + f) / f)


def test_quantum_detector_on_shot_estimates():
    c = Circuit.qubits(1).add(RY(Parameter("x"), wires=0))
    det = QuantumDetector(0.01)
    far = estimate_overlap(c, {"x": angle_for(0.9)}, {"x": 0.0}, shots=2000, seed=0)
    near = estimate_overlap(c, {"x": angle_for(0.999)}, {"x": 0.0}, shots=2000, seed=0)
    assert det.update(0, near) is None
    e = det.update(1, far)
    assert e is not None and e.low is not None and e.low > 0.01
    assert e.low <= 0.1 <= e.high


# ---------------------------------------------------------------------------------
# Aer
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", OVERLAP_METHODS)
def test_aer_exact_and_shots(method):
    pytest.importorskip("qiskit_aer")
    from qsem.simulators.aer import AerBackend

    for c, seed in ((qubit_circuit(2), 0), (qutrit_circuit(), 1)):
        pa, pb = random_params(c, 3, seed), random_params(c, 3, seed + 7)
        ref = reference(c, pa, pb)
        f = estimate_overlap(c, pa, pb, method=method, backend=AerBackend())
        np.testing.assert_allclose(f.numpy(), ref, atol=ATOL_BACKENDS)
    est = estimate_overlap(c, pa, pb, method=method, backend=AerBackend(), shots=4000, seed=5)
    sd = np.sqrt(overlap_variance(torch.as_tensor(ref), 4000, method).numpy())
    assert np.all(np.abs(est.raw.numpy() - ref) <= SHOT_SIGMAS * sd + 1e-12)


# ---------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name", "cls"),
    [
        ({"method": "hadamard"}, "method", QsemValueError),
        ({"interval": "exact"}, "interval", QsemValueError),
        ({"shots": 0}, "shots", QsemValueError),
        ({"shots": 10, "confidence": 1.5}, "confidence", QsemValueError),
        ({"params_a": {}}, "params_a", QsemValueError),
        ({"params_b": {"x": 0.0, "q": 1.0}}, "params_b", QsemValueError),
        (
            {"params_a": {"x": torch.zeros(3)}, "params_b": {"x": torch.zeros(2)}},
            "params_b",
            QsemValueError,
        ),
        ({"params_a": {"x": "a"}}, "params_a['x']", QsemTypeError),
        ({"params_a": {"x": torch.zeros(2, 2)}}, "params_a['x']", QsemValueError),
        ({"params_a": [0.0]}, "params_a", QsemTypeError),
        ({"circuit": "c"}, "circuit", QsemTypeError),
        ({"backend": "aer"}, "backend", QsemTypeError),
        ({"sampling": "both"}, "sampling", QsemValueError),
    ],
)
def test_bad_input_names_the_argument(kwargs, name, cls):
    args = {
        "circuit": Circuit.qubits(1).add(RY(Parameter("x"), wires=0)),
        "params_a": {"x": 0.1},
        "params_b": {"x": 0.2},
    }
    for k in list(kwargs):
        if k in args:
            args[k] = kwargs.pop(k)
    with pytest.raises(cls) as info:
        estimate_overlap(args["circuit"], args["params_a"], args["params_b"], **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"argument '{name}'") and "\n" not in msg


def test_pooled_estimate_of_the_mean_overlap():
    c = qubit_circuit(2)
    pa, pb = random_params(c, 6, 8), random_params(c, 6, 9)
    ref = reference(c, pa, pb)
    for method in OVERLAP_METHODS:
        est = estimate_overlap(c, pa, pb, method=method, shots=3000, seed=4)
        pooled = est.pooled()
        assert pooled.shots == 18000 and pooled.estimate.shape == ()
        assert float(pooled.raw) == pytest.approx(float(est.raw.mean()), abs=1e-12)
        sd = math.sqrt(float(overlap_variance(torch.as_tensor(ref), 18000, method).mean()))
        assert abs(float(pooled.raw) - ref.mean()) <= SHOT_SIGMAS * sd
    det = QuantumDetector(0.01)
    with pytest.raises(QsemValueError, match=r"^argument 'value': a batch of 6 estimates"):
        det.update(0, est)
    assert det.update(0, pooled) is not None  # the random pairs are far apart
