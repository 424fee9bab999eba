"""Conventions a PennyLane user expects (issue 18, item 4): the PennyLane backend picks
its device by itself, GellMann reads GellMann(index, wires=...), and the overlap
estimate has one name."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

from qsem.circuits import (
    RY,
    TRY,
    Circuit,
    Depolarizing,
    DimensionError,
    GellMann,
    H,
    Parameter,
    QsemValueError,
    TritFlip,
    gell_mann_matrices,
)
from qsem.simulators import TorchBackend

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# PennyLaneBackend picks default.qutrit(.mixed) by itself
# ---------------------------------------------------------------------------------------------
def _circuits() -> dict[str, Circuit]:
    t = Parameter("t")
    return {
        "default.qubit": Circuit.qubits(2).add(H(wires=0), RY(t, wires=1)),
        "default.mixed": Circuit.qubits(2).add(RY(t, wires=1), Depolarizing(0.1, wires=0)),
        "default.qutrit": Circuit.qutrits(2).add(TRY(t, wires=1, subspace=(1, 2))),
        "default.qutrit.mixed": Circuit.qutrits(1).add(
            TRY(t, wires=0, subspace=(0, 2)), TritFlip(0.1, 0.05, 0.02, wires=0)
        ),
    }


@pytest.mark.parametrize("device", list(_circuits()))
def test_pennylane_backend_picks_the_device(device: str) -> None:
    """PennyLaneBackend() runs qubit/qutrit, pure/noisy circuits on the matching default
    device, and agrees with the torch engine (values from PennyLane's own device)."""
    pytest.importorskip("pennylane")
    from qsem.simulators import PennyLaneBackend

    c = _circuits()[device]
    backend = PennyLaneBackend()
    assert backend.device_for(c) == device
    values = torch.tensor([[0.3], [-1.2]], dtype=F64)
    obs = [GellMann(3, wires=0), GellMann(1, wires=c.num_wires - 1)]
    got = backend.expval(c, values, ["t"], obs)
    ref = TorchBackend(dtype=torch.complex128).expval(c, values, ["t"], obs)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=ATOL_F64)


def test_pennylane_backend_names_the_fix() -> None:
    pytest.importorskip("pennylane")
    from qsem.simulators import PennyLaneBackend

    vals = torch.zeros(1, 0, dtype=F64)
    mixed = Circuit([2, 3]).add(H(wires=0))
    with pytest.raises(QsemValueError, match=r"no device for mixed qubit/qutrit.*backend='torch'"):
        PennyLaneBackend().probs(mixed, vals, [], [0])
    qutrit = Circuit.qutrits(1).add(TRY(0.2, wires=0, subspace=(0, 1)))
    with pytest.raises(QsemValueError, match=r"leave device unset.*default.qutrit"):
        PennyLaneBackend("default.qubit").probs(qutrit, vals, [], [0])
    assert repr(PennyLaneBackend()) == "PennyLaneBackend(device='auto')"


# ---------------------------------------------------------------------------------------------
# GellMann(index, wires=...)
# ---------------------------------------------------------------------------------------------
def test_gell_mann_index_and_wires_read_unambiguously() -> None:
    g = GellMann(8, wires=1)
    assert g.index == 8 and g.wires == (1,)
    np.testing.assert_allclose(g.local_matrix((3,)), gell_mann_matrices(3)[7])
    # qubit wires: 1, 2, 3 are X, Y, Z
    np.testing.assert_allclose(GellMann(2, wires=0).local_matrix((2,)), [[0, -1j], [1j, 0]])
    with pytest.raises(QsemValueError, match=r"argument 'index'.*1\.\.8, got 9"):
        GellMann(9, wires=0, dim=3)  # refused at construction
    with pytest.raises(QsemValueError, match=r"argument 'index'.*>= 1"):
        GellMann(0, wires=0)
    with pytest.raises(QsemValueError, match="argument 'wires'"):
        GellMann(3)  # type: ignore[call-arg]
    with pytest.raises(DimensionError, match="argument 'dim'"):
        GellMann(3, wires=0, dim=3).local_matrix((4,))
    with pytest.raises(DimensionError, match=r"1\.\.3, got 4"):
        GellMann(4, wires=0).local_matrix((2,))  # without dim=: checked against the wire


@pytest.mark.parametrize("index", [9, 15, 99])
def test_gell_mann_index_beyond_qutrits_needs_dim(index: int) -> None:
    """Without dim= the index is refused at construction beyond the qutrit range 1..8."""
    refused = rf"^argument 'index': must be 1\.\.8 .*pass dim=d.*got {index}$"
    with pytest.raises(QsemValueError, match=refused):
        GellMann(index, wires=0)
    g = GellMann(index, wires=0, dim=10)  # a 10-level qudit has 99 matrices
    np.testing.assert_allclose(g.local_matrix((10,)), gell_mann_matrices(10)[index - 1])
    with pytest.raises(QsemValueError, match=r"argument 'index'.*1\.\.15, got"):
        GellMann(max(index, 16), wires=0, dim=4)


@pytest.mark.parametrize("index", [0, -1, 2.5, 1.0, True, "3", None])
def test_gell_mann_non_integer_or_small_index_refused_at_construction(index: object) -> None:
    with pytest.raises(QsemValueError, match=r"^argument 'index': must be an integer >= 1"):
        GellMann(index, wires=0)  # type: ignore[arg-type]


def test_gell_mann_positional_wires_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match=r"GellMann\(index, wires=..."):
        old = GellMann(4, 1, 2.0)  # type: ignore[misc]
    assert (old.index, old.wires, old.coeff) == (4, (1,), 2.0)
    np.testing.assert_allclose(
        old.local_matrix((3,)), GellMann(4, wires=1, coeff=2.0).local_matrix((3,))
    )


# ---------------------------------------------------------------------------------------------
# One name for the overlap estimate
# ---------------------------------------------------------------------------------------------
def test_overlap_estimate_has_one_name() -> None:
    import qsem.simulators as sims
    from qsem.simulators import OverlapEstimate, swap_test_estimate

    a = torch.tensor([1.0, 0.0], dtype=torch.complex128)
    est = swap_test_estimate(a, a, shots=100, seed=1)
    assert type(est) is OverlapEstimate
    assert "SwapTestEstimate" not in sims.__all__
    for name in ("", ".similarity", ".shot_estimates"):
        mod = importlib.import_module("qsem.simulators" + name)
        with pytest.warns(DeprecationWarning, match="SwapTestEstimate is deprecated"):
            alias = mod.SwapTestEstimate
        assert alias is OverlapEstimate


def test_the_former_name_of_the_projection_module_forwards_with_a_warning() -> None:
    old = importlib.import_module("qsem.tensors.edge")  # documented as deprecated
    new = importlib.import_module("qsem.tensors.projection")
    assert old.__all__
    for name in old.__all__:
        with pytest.warns(DeprecationWarning, match=f"import {name} from qsem.tensors"):
            assert getattr(old, name) is getattr(new, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = old.no_such_name


@pytest.mark.parametrize(
    "module",
    [
        "qsem.circuits.observables",
        "qsem.circuits.qiskit_qudits",
        "qsem.simulators.pennylane_backend",
        "qsem.simulators.readout",
        "qsem.simulators.backend",
        "qsem.simulators.plan_superops",
        "qsem.circuits.rotations",
        "qsem.simulators.plan_exec",
        "qsem.threads",
        "qsem.simulators.native",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest

    pytest.importorskip("pennylane")
    pytest.importorskip("qiskit")
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
