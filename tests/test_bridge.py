"""The hybrid autograd bridge: parameter-shift gradients through one backend job."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ATOL_BACKENDS, ATOL_F64, SHOT_SIGMAS

from qsem.circuits import (
    CNOT,
    CRX,
    RX,
    RY,
    RZ,
    TRX,
    TRY,
    U3,
    Circuit,
    Controlled,
    Depolarizing,
    GellMann,
    Parameter,
    ParameterVector,
    PauliString,
    TAdd,
)
from qsem.circuits.errors import QsemTypeError, QsemValueError
from qsem.simulators.backend import TorchBackend
from qsem.simulators.bridge import QuantumLayer, expand, expval_bridge, make_backend, probs_bridge

F64 = torch.float64


class CountingBackend(TorchBackend):
    """The torch backend, counting jobs and the rows each job carried."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[int] = []

    def expval(self, circuit, values, names, observables, *, shots=None, seed=None):  # type: ignore[no-untyped-def]
        self.jobs.append(int(values.shape[0]))
        return super().expval(circuit, values, names, observables, shots=shots, seed=seed)

    def probs(self, circuit, values, names, wires, *, shots=None, seed=None):  # type: ignore[no-untyped-def]
        self.jobs.append(int(values.shape[0]))
        return super().probs(circuit, values, names, wires, shots=shots, seed=seed)


def mixed_circuit() -> tuple[Circuit, list[object]]:
    x, w = ParameterVector("x", 3), ParameterVector("w", 4)
    c = Circuit([3, 2, 2]).add(
        TRY(x[0], wires=0, subspace=(0, 1)), RY(x[1], wires=1), RY(x[2], wires=2),
        Controlled(TRY(2 * w[0], wires=0, subspace=(1, 2)), control_wires=[1]),
        TRX(w[1], wires=0, subspace=(0, 2)), CRX(w[2], wires=[1, 2]), CNOT(wires=[2, 1]),
        U3(w[3], w[0], -x[2], wires=2), RZ(Parameter("s"), wires=1),
    )  # fmt: skip
    obs = [GellMann(3, wires=[0]), GellMann(4, wires=[0]), PauliString("XZ", wires=[1, 2])]
    return c, obs


def inputs(batch: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "x": torch.rand(batch, 3, generator=g, dtype=F64).requires_grad_(),
        "w": torch.rand(4, generator=g, dtype=F64).requires_grad_(),
        "s": torch.tensor(0.4, dtype=F64).requires_grad_(),
    }


def grads(out: torch.Tensor, params: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    loss = (out**2).sum() + out.sum()
    return list(torch.autograd.grad(loss, list(params.values())))


def test_parameter_shift_equals_autograd_for_inputs_weights_shared_and_scaled() -> None:
    c, obs = mixed_circuit()
    p = inputs()
    ref = expval_bridge(c, p, obs, diff_method="backprop")
    out = expval_bridge(c, p, obs, diff_method="parameter-shift")
    torch.testing.assert_close(out, ref, atol=ATOL_F64, rtol=0)
    for a, b in zip(grads(out, p), grads(ref, p), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_backward_is_one_backend_job_with_every_shifted_row() -> None:
    c, obs = mixed_circuit()
    p = inputs(batch=6)
    be = CountingBackend()
    out = expval_bridge(c, p, obs, backend=be)
    assert be.jobs == [6]
    grads(out, p)
    rules = [col.rule for col in expand(c).columns]
    expected_rows = 6 * sum(len(r) for r in rules if r)
    assert be.jobs == [6, expected_rows]
    # two-term rules for qubit rotations, four-term for qutrit/controlled rotations
    assert sorted({len(r) for r in rules if r}) == [2, 4]


def test_probabilities_through_the_bridge() -> None:
    c, _ = mixed_circuit()
    p = inputs()
    ref = probs_bridge(c, p, [0, 2], diff_method="backprop")
    out = probs_bridge(c, p, [0, 2])
    assert out.shape == (5, 6)
    torch.testing.assert_close(out, ref, atol=ATOL_F64, rtol=0)
    for a, b in zip(grads(out, p), grads(ref, p), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_unbatched_inputs_give_unbatched_outputs() -> None:
    c = Circuit.qubits(1).add(RY(Parameter("t"), wires=0))
    t = torch.tensor(0.7, dtype=F64, requires_grad=True)
    out = expval_bridge(c, {"t": t}, PauliString("Z", wires=[0]))
    assert out.shape == (1,)
    out.sum().backward()
    assert t.grad is not None
    assert float(t.grad) == pytest.approx(-math.sin(0.7), abs=1e-12)


def test_concrete_requires_grad_tensors_in_gates_get_gradients() -> None:
    theta = torch.tensor(0.3, dtype=F64, requires_grad=True)
    c = Circuit.qubits(2).add(RX(theta, wires=0), CNOT(wires=[0, 1]))
    out = expval_bridge(c, None, PauliString("Z", wires=[1]))
    out.sum().backward()
    assert float(theta.grad) == pytest.approx(-math.sin(0.3), abs=1e-12)  # type: ignore[arg-type]


def test_shot_estimates_lie_within_standard_errors() -> None:
    c = Circuit.qubits(2).add(RY(Parameter("a"), wires=0), CNOT(wires=[0, 1]))
    a = torch.tensor([0.2, 1.0, 2.5], dtype=F64, requires_grad=True)
    shots = 20000
    est = expval_bridge(c, {"a": a}, PauliString("Z", wires=[1]), shots=shots, seed=11)
    exact = torch.cos(a.detach())[:, None]
    stderr = torch.sqrt((1 - exact**2) / shots)
    assert bool(((est - exact).abs() <= SHOT_SIGMAS * stderr + 1e-12).all())
    est.sum().backward()
    # shifted estimates at ±π/2: each has variance (1 - cos²)/shots; the gradient's stderr
    grad_err = torch.sqrt(0.25 * 2 * (1 - torch.sin(a.detach()) ** 2) / shots + 1e-12)
    assert bool(((a.grad + torch.sin(a.detach())).abs() <= SHOT_SIGMAS * grad_err + 1e-9).all())  # type: ignore[operator]


def test_shot_runs_are_seeded() -> None:
    c = Circuit.qubits(1).add(RY(Parameter("a"), wires=0))
    a = torch.tensor([0.4, 0.9], dtype=F64)
    one = expval_bridge(c, {"a": a}, PauliString("Z", wires=[0]), shots=100, seed=5)
    two = expval_bridge(c, {"a": a}, PauliString("Z", wires=[0]), shots=100, seed=5)
    three = expval_bridge(c, {"a": a}, PauliString("Z", wires=[0]), shots=100, seed=6)
    assert torch.equal(one, two)
    assert not torch.equal(one, three)


def test_quantum_layer_trains_inside_a_module() -> None:
    """A hybrid model (linear -> circuit -> linear) learns a toy target by parameter shift."""
    torch.manual_seed(0)
    x, w = ParameterVector("x", 2), ParameterVector("w", 4)
    c = Circuit.qubits(2).add(
        RY(x[0], wires=0), RY(x[1], wires=1), RY(w[0], wires=0), RY(w[1], wires=1),
        CNOT(wires=[0, 1]), RX(w[2], wires=0), RX(w[3], wires=1),
    )  # fmt: skip
    obs = [PauliString("Z", wires=[i]) for i in range(2)]
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 2, dtype=F64),
        QuantumLayer(c, obs, weight_shapes={"w": 4}, diff_method="parameter-shift"),
        torch.nn.Linear(2, 1, dtype=F64),
    )
    data = torch.rand(32, 3, dtype=F64)
    target = torch.sin(data.sum(-1, keepdim=True))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        loss = ((model(data) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]


def test_layer_backprop_and_shift_agree() -> None:
    x, w = ParameterVector("x", 2), ParameterVector("w", 6)
    c = Circuit([3, 3]).add(
        TRY(x[0], wires=0), TRY(x[1], wires=1), TRY(w[0], wires=0, subspace=(1, 2)),
        TAdd(wires=[0, 1]), TRX(w[1], wires=1), TRY(w[2], wires=1, subspace=(0, 2)),
        Controlled(TRY(w[3], wires=1), control_wires=[0], control_values=[2]),
        TRX(w[4] * 0.5, wires=0), TRY(w[5], wires=0),
    )  # fmt: skip
    layers = [
        QuantumLayer(c, probs_wires=[0], weight_shapes={"w": 6}, diff_method=m, seed=0)
        for m in ("backprop", "parameter-shift")
    ]
    xin = torch.rand(4, 2, dtype=F64)
    outs, gs = [], []
    for layer in layers:
        out = layer(xin)
        (out * torch.arange(3, dtype=F64)).sum().backward()
        outs.append(out.detach())
        gs.append(layer.weights["w"].grad.clone())  # type: ignore[union-attr]
    torch.testing.assert_close(outs[0], outs[1], atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(gs[0], gs[1], atol=ATOL_BACKENDS, rtol=0)


def test_channel_parameters_need_the_torch_backend_for_gradients() -> None:
    p = torch.tensor(0.1, dtype=F64, requires_grad=True)
    c = Circuit.qubits(1).add(RY(0.4, wires=0), Depolarizing(p, wires=0))
    out = expval_bridge(
        c, None, PauliString("Z", wires=[0]), backend=TorchBackend(mode="density_matrix")
    )
    with pytest.raises(QsemValueError, match=r"argument 'params'.*channel"):
        out.sum().backward()
    ok = expval_bridge(c, None, PauliString("Z", wires=[0]), diff_method="backprop")
    ok.sum().backward()
    assert float(p.grad) == pytest.approx(-math.cos(0.4), abs=1e-12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match", "error"),
    [
        ({"backend": "cirq"}, "argument 'backend'", QsemValueError),
        ({"diff_method": "finite-diff"}, "argument 'diff_method'", QsemValueError),
        ({"diff_method": "adjoint", "shots": 100}, "argument 'diff_method'", QsemValueError),
        ({"shots": 0}, "argument 'shots'", QsemValueError),
        ({"shots": 1.5}, "argument 'shots'", QsemTypeError),  # the one shots rule: a type error
    ],
)
def test_bad_bridge_arguments(kwargs: dict[str, object], match: str, error: type) -> None:
    c = Circuit.qubits(1).add(RY(Parameter("a"), wires=0))
    with pytest.raises(error, match=match):
        expval_bridge(c, {"a": 0.1}, PauliString("Z", wires=[0]), **kwargs)  # type: ignore[arg-type]


def test_bad_layer_arguments() -> None:
    c = Circuit.qubits(1).add(RY(Parameter("x"), wires=0), RY(Parameter("w"), wires=0))
    with pytest.raises(QsemValueError, match="argument 'input_name'"):
        QuantumLayer(c, PauliString("Z", wires=[0]), input_name="y", weight_shapes={"w": 0})
    with pytest.raises(QsemValueError, match="argument 'weight_shapes'"):
        QuantumLayer(c, PauliString("Z", wires=[0]))
    with pytest.raises(QsemValueError, match="argument 'observables'"):
        QuantumLayer(c, weight_shapes={"w": 0})
    with pytest.raises(QsemValueError, match="argument 'params'"):
        expval_bridge(c, {"x": 0.1}, PauliString("Z", wires=[0]))


def test_make_backend_returns_instances_unchanged() -> None:
    be = TorchBackend()
    assert make_backend(be) is be
    assert isinstance(make_backend("torch"), TorchBackend)


def test_columns_without_gradient_are_not_shifted() -> None:
    """Inputs that need no gradient add no shifted rows; the weight gradient is unchanged."""
    c, obs = mixed_circuit()
    p = inputs(batch=4)
    p["x"] = p["x"].detach()  # data, not trainable
    be = CountingBackend()
    out = expval_bridge(c, p, obs, backend=be)
    grads_w = torch.autograd.grad(out.sum(), [p["w"], p["s"]])
    columns = expand(c).columns
    weight_rows = sum(
        len(col.rule)
        for col in columns
        if col.rule and col.source is not None and col.source.name != "x"
    )
    assert be.jobs == [4, 4 * weight_rows]
    ref = expval_bridge(c, p, obs, diff_method="backprop")
    ref_w = torch.autograd.grad(ref.sum(), [p["w"], p["s"]])
    for a, b in zip(grads_w, ref_w, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
