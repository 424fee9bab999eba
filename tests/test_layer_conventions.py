"""Regression tests for the faults of a new user's first session (issue 11, item 1):
QuantumLayer's TorchLayer conventions, ParameterVector shapes, ParameterVectors on every
backend, the Qiskit export of ParameterVectors and the lazy backend imports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ATOL_BACKENDS, ATOL_F64

from qsem.circuits import (
    CNOT,
    RY,
    TRY,
    TSWAP,
    Circuit,
    Controlled,
    GellMann,
    ParameterVector,
    PauliString,
    QsemValueError,
    TAdd,
)
from qsem.simulators import QuantumLayer, TorchBackend, TorchSimulator, expval_bridge

DOCS = Path(__file__).resolve().parents[1] / "docs"
F64 = torch.float64


def _layer_circuit() -> Circuit:
    x, w = ParameterVector("x", 2), ParameterVector("w", 2)
    c = Circuit.qubits(2).add(RY(x[0], wires=0), RY(x[1], wires=1), CNOT(wires=[0, 1]))
    return c.add(RY(w[0], wires=0), RY(w[1], wires=1))


def _obs() -> list[PauliString]:
    return [PauliString("Z", wires=[i]) for i in range(2)]


def test_documented_quantum_layer_example_runs_as_written() -> None:
    """The example of docs/simulators.md (float32 Linear layers around the circuit)."""
    text = (DOCS / "simulators.md").read_text()
    (code,) = [
        b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "QuantumLayer(" in b
    ]
    ns: dict[str, object] = {}
    exec(compile(code, "docs/simulators.md", "exec"), ns)
    model = ns["model"]
    out = model(torch.rand(5, 4))  # type: ignore[operator]
    assert out.shape == (5, 1) and out.dtype == torch.float32
    out.sum().backward()


@pytest.mark.parametrize("diff_method", ["best", "parameter-shift"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_output_has_the_input_dtype(diff_method: str, dtype: torch.dtype) -> None:
    layer = QuantumLayer(_layer_circuit(), _obs(), weight_shapes={"w": 2}, diff_method=diff_method)
    x = torch.rand(3, 2, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype
    ref = layer(x.to(F64))
    torch.testing.assert_close(out.to(F64), ref, atol=ATOL_BACKENDS, rtol=0)


def test_layer_weights_follow_the_global_seed_and_a_generator() -> None:
    def weights(**kw: object) -> torch.Tensor:
        layer = QuantumLayer(_layer_circuit(), _obs(), weight_shapes={"w": 2}, **kw)
        return layer.weights["w"].detach()

    torch.manual_seed(1)
    a = weights()
    torch.manual_seed(1)
    b = weights()
    torch.manual_seed(2)
    c = weights()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)
    # the global generator is the source: the same draw as torch.rand after manual_seed(1)
    torch.manual_seed(1)
    torch.testing.assert_close(a, 2 * torch.pi * torch.rand(2, dtype=F64), atol=0, rtol=0)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    torch.testing.assert_close(weights(generator=g1), weights(generator=g2), atol=0, rtol=0)
    assert float(a.min()) >= 0 and float(a.max()) < 2 * torch.pi


def test_layer_init_method() -> None:
    layer = QuantumLayer(
        _layer_circuit(), _obs(), weight_shapes={"w": 2}, init_method=torch.nn.init.zeros_
    )
    assert torch.equal(layer.weights["w"].detach(), torch.zeros(2, dtype=F64))
    given = torch.tensor([0.1, 0.2])
    layer = QuantumLayer(_layer_circuit(), _obs(), weight_shapes={"w": 2}, init_method={"w": given})
    torch.testing.assert_close(layer.weights["w"].detach(), given.to(F64))
    with pytest.raises(QsemValueError, match=r"argument 'init_method'.*shape"):
        QuantumLayer(
            _layer_circuit(), _obs(), weight_shapes={"w": 2}, init_method={"w": torch.zeros(3)}
        )
    with pytest.raises(QsemValueError, match=r"argument 'init_method'.*no entry"):
        QuantumLayer(_layer_circuit(), _obs(), weight_shapes={"w": 2}, init_method={})


@pytest.mark.parametrize("shape", [(3,), (5, 3), (1,), (5, 1)])
def test_parameter_vector_refuses_wrong_lengths(shape: tuple[int, ...]) -> None:
    w = ParameterVector("w", 2)
    c = Circuit.qubits(1).add(RY(w[0], wires=0), RY(w[1], wires=0))
    value = torch.rand(shape, dtype=F64)
    msg = r"ParameterVector 'w' has 2 elements: expected shape \(2,\) or \(B, 2\)"
    with pytest.raises(QsemValueError, match=msg) as err:
        TorchSimulator().run(c, {"w": value})
    assert "\n" not in str(err.value)
    with pytest.raises(QsemValueError, match=msg):
        c.bind({"w": value})
    with pytest.raises(QsemValueError, match=msg):
        expval_bridge(c, {"w": value}, PauliString("Z", wires=[0]))
    TorchSimulator().run(c, {"w": torch.rand(5, 2, dtype=F64)})  # the right length runs


def _readme_circuit() -> Circuit:
    w = ParameterVector("w", 3)
    c = Circuit([3, 3, 2])
    c.add(TRY(w[0], wires=0, subspace=(0, 1)), TRY(w[1], wires=1, subspace=(1, 2)))
    c.add(TAdd(wires=[0, 1]), RY(w[2], wires=2), Controlled(TSWAP(wires=[0, 1]), control_wires=[2]))
    return c


def test_backends_accept_parameter_vectors() -> None:
    """The README's circuit (a ParameterVector) goes to AerBackend.expval."""
    from qsem.simulators import AerBackend

    c = _readme_circuit()
    values = torch.rand(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    obs = GellMann(3, wires=[1])
    ref = torch.stack(
        [TorchSimulator(dtype=torch.complex128).run(c, {"w": v}).vector for v in values]
    )
    lam = obs.local_matrix((3,))
    full = np.kron(np.kron(np.eye(3), lam), np.eye(2))
    expected = torch.from_numpy(
        np.einsum("bi,ij,bj->b", ref.numpy().conj(), full, ref.numpy()).real
    )[:, None]
    for be in (AerBackend(), TorchBackend()):
        out = be.expval(c, values, ["w"], obs)
        torch.testing.assert_close(out, expected, atol=ATOL_BACKENDS, rtol=0)
    with pytest.raises(QsemValueError, match=r"argument 'values'.*\(N, 3\)"):
        AerBackend().expval(c, values[:, :2], ["w"], obs)


def test_pennylane_backend_accepts_parameter_vectors() -> None:
    from qsem.simulators import PennyLaneBackend

    w = ParameterVector("w", 2)
    c = Circuit.qubits(2).add(RY(w[0], wires=0), RY(w[1], wires=1), CNOT(wires=[0, 1]))
    values = torch.tensor([[0.3, -0.7], [1.1, 0.4]], dtype=F64)
    out = PennyLaneBackend().expval(c, values, ["w"], [PauliString("ZZ", wires=[0, 1])])
    # <Z0 Z1> after CNOT = <Z1> before it = cos(w1)
    torch.testing.assert_close(out[:, 0], torch.cos(values[:, 1]), atol=ATOL_F64, rtol=0)


def test_aer_to_qiskit_exports_a_parameter_vector() -> None:
    """Each element of a ParameterVector is its own Qiskit parameter."""
    from qiskit.circuit import ParameterVector as QiskitVector
    from qiskit.quantum_info import Statevector

    from qsem.simulators import AerBackend

    w = ParameterVector("w", 3)
    c = Circuit.qubits(3).add(*[RY(w[i], wires=i) for i in range(3)])
    qc, params = AerBackend().to_qiskit(c)
    assert isinstance(params["w"], QiskitVector) and len(params["w"]) == 3
    assert len(qc.parameters) == 3
    vals = [0.3, 1.2, -0.8]
    bound = qc.assign_parameters(dict(zip(params["w"], vals, strict=True)))
    psi = TorchSimulator(dtype=torch.complex128).run(c, {"w": torch.tensor(vals)}).vector
    np.testing.assert_allclose(Statevector(bound).data, psi.numpy(), atol=ATOL_F64)


def test_backends_import_lazily_and_name_their_extra() -> None:
    """One fresh interpreter: importing qsem.simulators imports neither Qiskit nor PennyLane;
    the lazy names resolve; without qiskit, AerBackend() names the extra qsem[aer]."""
    code = (
        "import sys\n"
        "import qsem.simulators\n"
        "assert 'qiskit' not in sys.modules and 'pennylane' not in sys.modules\n"
        "sys.modules['qiskit'] = None; sys.modules['qiskit_aer'] = None\n"
        "from qsem.simulators import AerBackend, PennyLaneBackend\n"
        "try:\n    AerBackend()\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("MissingDependencyError"), run.stdout + run.stderr
    assert "qsem[aer]" in run.stdout and len(run.stdout.strip().splitlines()) == 1
