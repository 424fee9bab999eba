"""qsem's ``EstimatorGradient`` (Qiskit ML ``BaseEstimatorGradient``) against Qiskit ML's
parameter-shift gradient on Aer's / Qiskit's exact estimators, and in a training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ATOL_PRIMITIVES
from test_qiskit_primitives import (
    AER_POOL,
    CONTROLLED_POOL,
    CountingSimulator,
    _tutorial_data,
    random_observable,
    random_parametrised,
)

from qsem.circuits import QsemError, ReadoutError

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_machine_learning")

from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import Kraus, SparsePauliOp
from qiskit_aer.primitives import EstimatorV2 as AerEstimator
from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient

from qsem.simulators import EstimatorGradient, EstimatorV2


def _items(seed: int, pool: list[str]) -> tuple[list, list, np.ndarray, list]:
    """3 items of one random circuit (1-4 qubits; expressions, a vector, repeated
    parameters), each with its own observable and values; the third item asks for a
    subset of the parameters in a shuffled order."""
    rng = np.random.default_rng(seed)
    n = 1 + seed % 4
    qc = random_parametrised(n, 10, pool, rng)
    obs = [random_observable(n, rng) for _ in range(3)]
    values = rng.uniform(-np.pi, np.pi, (3, qc.num_parameters))
    params = list(qc.parameters)
    subset = [params[i] for i in rng.permutation(len(params))[: max(1, len(params) // 2)]]
    return [qc] * 3, obs, values, [params, params, subset]


def _worst(ours: list, ref: list) -> float:
    worst = 0.0
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def test_gradient_matches_parameter_shift_on_aer_50_random_circuits() -> None:
    """50 seeded random circuits (3 items each, 1-4 qubits): qsem's gradient equals Qiskit
    ML's parameter shift on Aer's exact EstimatorV2 to 1e-10 (expressions such as a*b and
    2a - 0.3 included)."""
    worst = 0.0
    for seed in range(50):
        circuits, obs, values, params = _items(seed, AER_POOL)
        ours = EstimatorGradient().run(circuits, obs, values, params).result()
        ref = ParamShiftEstimatorGradient(AerEstimator()).run(circuits, obs, values, params)
        worst = max(worst, _worst(ours.gradients, ref.result().gradients))
        assert [m["parameters"] for m in ours.metadata] == params
    assert worst < ATOL_PRIMITIVES, worst


def test_gradient_controlled_rotations_match_statevector_estimator() -> None:
    """crx/cry/crz/cp (which Aer binds wrongly) against parameter shift on Qiskit's exact
    StatevectorEstimator, 20 seeded circuits."""
    pool = AER_POOL + CONTROLLED_POOL * 3
    worst = 0.0
    for seed in range(20):
        circuits, obs, values, params = _items(1000 + seed, pool)
        ours = EstimatorGradient().run(circuits, obs, values, params).result()
        ref = ParamShiftEstimatorGradient(StatevectorEstimator()).run(circuits, obs, values, params)
        worst = max(worst, _worst(ours.gradients, ref.result().gradients))
    assert worst < ATOL_PRIMITIVES, worst


def test_gradient_of_a_noisy_circuit_matches_the_shift_rule() -> None:
    """A kraus channel between rotations (density-matrix autograd): each parameter drives
    one RX/RY/RZ, so (f(θ + π/2) - f(θ - π/2)) / 2 on qsem's estimator is exact."""
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    qc = QuantumCircuit(2)
    qc.ry(a, 0)
    qc.cx(0, 1)
    qc.rz(b, 1)
    p = 0.3
    qc.append(Kraus([math.sqrt(1 - p) * np.eye(2), math.sqrt(p) * np.diag([1.0, -1.0])]), [1])
    qc.rx(c, 1)
    obs = SparsePauliOp(["ZY", "XI", "YX"], [0.7, -1.2, 0.4])
    theta = np.array([0.4, -1.1, 2.3])
    got = EstimatorGradient().run([qc], [obs], [theta]).result().gradients[0]
    shifted = theta + np.pi / 2 * np.concatenate([np.eye(3), -np.eye(3)])
    f = EstimatorV2().run([(qc, obs, shifted)]).result()[0].data.evs
    np.testing.assert_allclose(got, (f[:3] - f[3:]) / 2, atol=ATOL_PRIMITIVES, rtol=0)
    assert np.abs(got).max() > 0.05  # not a vacuous comparison


def test_gradient_is_one_engine_pass_per_circuit() -> None:
    """Every item of one circuit goes through ONE batched engine call (a spy counts)."""
    circuits, obs, values, _ = _items(5, AER_POOL)
    spy = CountingSimulator(dtype=torch.complex128)
    grad = EstimatorGradient(EstimatorV2(simulator=spy))
    other = QuantumCircuit(circuits[0].num_qubits)
    other.rx(Parameter("t"), 0)
    grad.run([*circuits, other], [*obs, obs[0]], [*values, [0.3]]).result()
    assert spy.batches == [3, 1] and grad.engine_calls == 2


def _classifier() -> tuple[QuantumCircuit, list, list]:
    x, w = ParameterVector("x", 2), ParameterVector("w", 4)
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.ry(x[1], 1)
    qc.rz(2.0 * x[0] * x[1], 1)  # an expression of two inputs
    qc.ry(w[0], 0)
    qc.ry(w[1], 1)
    qc.cx(0, 1)
    qc.ry(w[2], 0)
    qc.rx(w[3], 1)
    return qc, list(x), list(w)


def test_estimator_qnn_torch_connector_trains_with_qsem_gradient() -> None:
    """EstimatorQNN(gradient=EstimatorGradient()) in TorchConnector (input gradients on):
    its input and weight gradients equal the default-gradient QNN's on Aer to 1e-10,
    and 30 Adam steps on the tutorial's ±1 task (sign(x0 + x1)) lower the loss and beat
    the majority class."""
    from qiskit_machine_learning.connectors import TorchConnector
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    qc, x, w = _classifier()
    est = EstimatorV2()
    grad = EstimatorGradient(est)

    def qnn(estimator: object, gradient: object = None) -> EstimatorQNN:
        return EstimatorQNN(
            circuit=qc,
            observables=SparsePauliOp("ZZ"),
            input_params=x,
            weight_params=w,
            estimator=estimator,
            gradient=gradient,
            input_gradients=True,
            default_precision=0.0,
        )

    ours, ref = qnn(est, grad), qnn(AerEstimator())
    rng = np.random.default_rng(3)
    data = rng.uniform(-1, 1, (16, 2))
    weights = rng.uniform(-np.pi, np.pi, 4)
    gi, gw = ours.backward(data, weights)
    ri, rw = ref.backward(data, weights)
    np.testing.assert_allclose(gi, ri, atol=ATOL_PRIMITIVES, rtol=0)
    np.testing.assert_allclose(gw, rw, atol=ATOL_PRIMITIVES, rtol=0)
    assert grad.engine_calls == 1

    xt, yt = _tutorial_data()
    torch.manual_seed(0)
    model = TorchConnector(ours, initial_weights=np.full(4, 0.1))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xt).reshape(-1), yt)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    acc = float((torch.sign(model(xt).reshape(-1)) == yt).float().mean())
    majority = max(float((yt > 0).float().mean()), float((yt < 0).float().mean()))
    assert losses[-1] < 0.7 * losses[0], losses
    assert acc >= majority + 0.15, (acc, majority)
    assert grad.engine_calls == 1 + 30  # one engine pass per backward


def test_gradient_refuses_bad_input_in_one_line() -> None:
    with pytest.raises(QsemError, match="estimator"):
        EstimatorGradient(AerEstimator())  # type: ignore[arg-type]
    with pytest.raises(QsemError, match="readout"):
        EstimatorGradient(EstimatorV2(readout=[ReadoutError([[0.9, 0.1], [0.1, 0.9]], wires=0)]))
    qc = QuantumCircuit(1)
    qc.rx(Parameter("t"), 0)
    with pytest.raises(QsemError, match="finite"):
        EstimatorGradient().run([qc], [SparsePauliOp("Z")], [[np.nan]]).result()


def test_docstring_example_runs() -> None:
    import doctest

    import qsem.simulators.qiskit_gradient as mod

    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


def test_interop_page_gradient_example_runs() -> None:
    """The EstimatorGradient example of docs/interop.md runs as written and its backward
    pass equals the default parameter-shift gradient on Aer."""
    import re
    from pathlib import Path

    from qiskit_machine_learning.neural_networks import EstimatorQNN

    text = (Path(__file__).resolve().parents[1] / "docs" / "interop.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (code,) = [b for b in blocks if "EstimatorGradient(" in b]
    ns: dict[str, object] = {}
    exec(compile(code, "docs/interop.md", "exec"), ns)
    qnn = ns["qnn"]
    ref = EstimatorQNN(
        circuit=ns["circuit"],
        observables=SparsePauliOp("ZZ"),
        input_params=ns["x"],
        weight_params=ns["w"],
        estimator=AerEstimator(),
        default_precision=0.0,
    )
    data, weights = np.array([[0.3, -0.7], [1.1, 0.2]]), np.array([0.5, -1.3])
    _, ours = qnn.backward(data, weights)  # type: ignore[attr-defined]
    _, theirs = ref.backward(data, weights)
    np.testing.assert_allclose(ours, theirs, atol=ATOL_PRIMITIVES, rtol=0)


def test_program_cache_reimports_a_changed_circuit() -> None:
    """Program.cached: the same content gives the same program (imported once); a gate
    appended in place, a changed global phase or a custom gate gives a fresh import."""
    from qiskit.circuit import Gate

    from qsem.simulators.qiskit_program import Program

    qc = QuantumCircuit(2)
    qc.ry(Parameter("a"), 0)
    qc.cx(0, 1)
    first = Program.cached(qc)
    assert Program.cached(qc) is first and Program.cached(qc.copy()) is first
    qc.rz(Parameter("b"), 1)
    second = Program.cached(qc)
    assert second is not first and second.num_parameters == 2
    qc.global_phase = 0.3
    assert Program.cached(qc) is not second
    custom = Gate("mine", 1, [])
    custom.definition = QuantumCircuit(1)
    custom.definition.x(0)
    other = QuantumCircuit(1)
    other.append(custom, [0])
    assert Program.cached(other) is not Program.cached(other)  # not memoised
    obs = SparsePauliOp("ZI")
    values = EstimatorV2().run([(qc, obs, [0.4, 0.9])]).result()[0].data.evs
    ref = AerEstimator().run([(qc, obs, [0.4, 0.9])]).result()[0].data.evs
    np.testing.assert_allclose(values, ref, atol=ATOL_PRIMITIVES, rtol=0)
