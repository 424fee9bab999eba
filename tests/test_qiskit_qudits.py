"""Qudit circuits survive Qiskit and OpenQASM 3 round trips (qsem.circuits.qiskit_qudits).

"The same circuit" is checked twice: the JSON form (classes, wires, subspaces,
symbolic parameters, matrices: ``Circuit.to_json``) is identical, and the states
simulated before and after agree to 1e-10 (complex128) with bound values; the
exported circuit itself is checked against Qiskit's ``Statevector``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ATOL_PRIMITIVES
from test_backend_aer import CASES, NAMES, random_circuit, random_values

from qsem.circuits import RY, TRX, TRY, Circuit, Controlled, Parameter, ParameterVector, TAdd
from qsem.circuits.qiskit_export import QubitLayout
from qsem.simulators import TorchSimulator

qiskit = pytest.importorskip("qiskit")
pytest.importorskip("qiskit_qasm3_import")
from qiskit.quantum_info import Statevector  # noqa: E402

SEEDS = range(12)


def _state(c: Circuit, values: dict[str, object]) -> torch.Tensor:
    binds = {k: v for k, v in values.items() if k in c.parameters}
    return TorchSimulator(dtype=torch.complex128).run(c, binds).vector


def _values(seed: int) -> dict[str, object]:
    row = random_values(1, seed)[0]
    return {n: float(row[i]) for i, n in enumerate(NAMES)}


@pytest.mark.parametrize("case", ["qutrits", "mixed", "mixed_qudits"])
@pytest.mark.parametrize("route", ["qiskit", "qasm3"])
def test_random_qudit_circuits_round_trip(case: str, route: str) -> None:
    """Seeded random circuits (12 per case through Qiskit, 3 through OpenQASM 3, whose
    dumps synthesises every UnitaryGate and is slow): same JSON, same state."""
    for seed in SEEDS if route == "qiskit" else SEEDS[:3]:
        c = random_circuit(CASES[case], seed, n_ops=8)
        back = Circuit.from_qiskit(c.to_qiskit()) if route == "qiskit" else None
        if back is None:
            back = Circuit.from_qasm3(c.to_qasm3())
        assert back.dims == c.dims
        assert json.loads(back.to_json()) == json.loads(c.to_json()), seed
        vals = _values(seed)
        diff = (_state(back, vals) - _state(c, vals)).abs().max()
        assert float(diff) < ATOL_PRIMITIVES


def test_export_is_the_encoded_circuit_and_bound_parameters_come_back_as_numbers() -> None:
    """The exported circuit's Statevector is qsem's state on the encoded levels; after
    ``assign_parameters`` the restored circuit holds the numbers (vector elements, scaled
    parameters, controlled subspace rotations)."""
    w, a = ParameterVector("w", 2), Parameter("a")
    c = Circuit([3, 2, 3])
    c.add(TRY(w[0], wires=0, subspace=(0, 2)), RY(w[1], wires=1), TAdd(wires=[0, 2]))
    c.add(Controlled(TRX(2 * a, wires=2, subspace=(1, 2)), [1]))
    qc = c.to_qiskit()
    assert qc.metadata["qsem"]["qubits"] == [[4, 3], [2], [1, 0]]
    values = {"w": torch.tensor([0.4, -1.3], dtype=torch.float64), "a": 0.7}
    binds = {
        p: values["a"] if p.name == "a" else float(values["w"][p.index]) for p in qc.parameters
    }
    bound = qc.assign_parameters(binds)
    sv = Statevector(bound).data
    idx = QubitLayout.of(c.dims).valid_indices(range(3))
    expect = _state(c, values).numpy()
    assert np.abs(sv[idx] - expect).max() < ATOL_PRIMITIVES
    back = Circuit.from_qiskit(bound)
    assert back.parameters == [] and back.dims == c.dims
    assert [type(op) for op in back.ops] == [type(op) for op in c.ops]
    assert back.ops[3].params[0] == pytest.approx(1.4, abs=1e-15)  # 2 * a
    assert float((_state(back, {}) - _state(c, values)).abs().max()) < ATOL_PRIMITIVES
    # a partly bound circuit keeps the free parameters symbolic
    part = Circuit.from_qiskit(
        qc.assign_parameters({p: 0.1 for p in qc.parameters if p.name == "a"})
    )
    assert part.parameters == ["w"]


def test_plain_qiskit_circuits_and_changed_records_import_as_qubits() -> None:
    """No record: qubits. A record that no longer matches (a gate appended): a warning,
    and qubits. A qubit circuit records nothing."""
    plain = qiskit.QuantumCircuit(2)
    plain.h(0)
    assert Circuit.from_qiskit(plain).dims == (2, 2)
    assert Circuit.qubits(2).add(RY(0.3, wires=0)).to_qiskit().metadata == {}
    qc = Circuit([3, 2]).add(TRY(0.2, wires=0, subspace=(1, 2))).to_qiskit()
    qc.x(0)
    with pytest.warns(UserWarning, match="imports as qubits"):
        c = Circuit.from_qiskit(qc)
    assert c.dims == (2, 2, 2)


def test_qasm3_annotation_is_the_documented_form() -> None:
    """The encoding rides in one `@qsem.qudits {json}` annotation on the qubit declaration,
    which Qiskit's own importer accepts (and ignores: it gives the encoded qubits)."""
    from qiskit import qasm3

    c = Circuit([3]).add(TRY(Parameter("t"), wires=0, subspace=(0, 1)))
    text = c.to_qasm3()
    lines = text.splitlines()
    (k,) = [i for i, line in enumerate(lines) if line.startswith("@qsem.qudits {")]
    assert lines[0].startswith("OPENQASM 3") and lines[k + 1].startswith("qubit[2]")
    meta = json.loads(lines[k][len("@qsem.qudits ") :])
    assert meta["dims"] == [3] and meta["qubits"] == [[1, 0]]
    assert Circuit.from_qasm3(text).parameters == ["t"]
    assert qasm3.loads(text).num_qubits == 2
    assert Circuit.from_qasm3(text.replace(lines[k] + "\n", "")).dims == (2, 2)


def test_interop_page_qudit_example_runs() -> None:
    """The qudit round-trip example of docs/interop.md runs as written."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "interop.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (code,) = [b for b in blocks if "assign_parameters([0.3])" in b]
    ns: dict[str, object] = {}
    exec(compile(code, "docs/interop.md", "exec"), ns)
    assert ns["bound"].ops[0].params == (0.3,)  # type: ignore[attr-defined]
