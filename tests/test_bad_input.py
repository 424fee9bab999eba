"""Bad input (DESIGN.md §11): every public entry point of the circuit IR and the torch
engine fails with a qsem error whose message starts with ``argument '<name>': ``.

Each case asserts the exact error class (``qsem/errors.py``), the argument the
message names, and fragments a notebook user needs to fix the call (the expected form,
the value got, the tolerance where one applies). The last sections check that valid
edge values (p = 0, p = d²/(d²-1), γ = 1, ...) keep working, against closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

from qsem.circuits import (
    CNOT,
    CRX,
    CSWAP,
    RX,
    RY,
    SWAP,
    TRX,
    U3,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Controlled,
    Depolarizing,
    DimensionError,
    GellMann,
    H,
    Hermitian,
    InvalidStateError,
    Kraus,
    MemoryLimitError,
    NotCPTPError,
    NotUnitaryError,
    Parameter,
    PauliString,
    PhaseDamping,
    QsemError,
    QsemTypeError,
    QsemValueError,
    Toffoli,
    TritFlip,
    Unitary,
    X,
)
from qsem.simulators import (
    TorchSimulator,
    check_density_matrix,
    counts,
    entropy,
    expval,
    probs,
    purity,
    reduced_density_matrix,
    sample,
    simulate,
)

NAN, INF = float("nan"), float("inf")
F64 = torch.float64
C128 = torch.complex128


def expect_error(
    fn: Callable[[], object], cls: type[QsemError], arg: str, *fragments: str
) -> QsemError:
    """Run ``fn``; it must raise exactly ``cls`` naming ``arg`` and containing ``fragments``."""
    with pytest.raises(QsemError) as info:
        fn()
    err = info.value
    msg = str(err)
    assert type(err) is cls, f"expected {cls.__name__}, got {type(err).__name__}: {msg}"
    assert msg.startswith(f"argument '{arg}': "), msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} missing from {msg!r}"
    return err


def case(
    id_: str, fn: Callable[[], object], cls: type[QsemError], arg: str, *fragments: str
) -> object:
    return pytest.param(fn, cls, arg, fragments, id=id_)


def run_bad(cases: list[object]) -> Callable[..., None]:
    @pytest.mark.parametrize(("fn", "cls", "arg", "fragments"), cases)
    def test(fn: Callable[[], object], cls: type[QsemError], arg: str, fragments: tuple) -> None:
        expect_error(fn, cls, arg, *fragments)

    return test


def q(n: int) -> Circuit:
    return Circuit.qubits(n)


def q3(n: int) -> Circuit:
    return Circuit.qutrits(n)


def bell() -> Circuit:
    return q(2).add(H(wires=0), CNOT(wires=[0, 1]))


def bell_state(mode: str = "statevector"):  # type: ignore[no-untyped-def]
    return TorchSimulator(mode, dtype=C128).run(bell())


def rho(*rows: list[complex]) -> torch.Tensor:
    return torch.tensor(rows, dtype=C128)


# ---------------------------------------------------------------------------------------------
# Circuit: dims, operations, wires
# ---------------------------------------------------------------------------------------------
test_circuit_dims = run_bad(
    [
        case("str", lambda: Circuit("23"), QsemTypeError, "dims", "sequence of ints", "'23'"),
        case("none", lambda: Circuit(None), QsemTypeError, "dims", "got None"),
        case("set", lambda: Circuit({2, 3}), QsemTypeError, "dims", "sequence"),
        case("int", lambda: Circuit(3), QsemTypeError, "dims", "Circuit.qubits(3)"),
        case("empty", lambda: Circuit([]), QsemValueError, "dims", "at least one wire"),
        case("d-one", lambda: Circuit([2, 1]), QsemValueError, "dims", "dims[1]", ">= 2", "got 1"),
        case("d-zero", lambda: Circuit([0]), QsemValueError, "dims", "dims[0]", "got 0"),
        case("d-negative", lambda: Circuit([3, -3]), QsemValueError, "dims", "got -3"),
        case(
            "d-float", lambda: Circuit([2, 3.0]), QsemTypeError, "dims", "dims[1]", "3.0", "float"
        ),
        case("d-str", lambda: Circuit([2, "3"]), QsemTypeError, "dims", "'3'"),
        case("d-bool", lambda: Circuit([True, 2]), QsemTypeError, "dims", "dims[0]", "True"),
        case("qubits-zero", lambda: Circuit.qubits(0), QsemValueError, "n", "positive", "got 0"),
        case("qubits-float", lambda: Circuit.qubits(2.0), QsemTypeError, "n", "2.0"),
        case("qutrits-negative", lambda: Circuit.qutrits(-1), QsemValueError, "n", "got -1"),
    ]
)


def test_circuit_dims_accepts_numpy_ints() -> None:
    assert Circuit(np.array([2, 3])).dims == (2, 3)
    assert Circuit([np.int64(3), 2]).dims == (3, 2)
    assert Circuit.qubits(np.int64(2)).dims == (2, 2)


test_circuit_ops = run_bad(
    [
        case("str", lambda: q(1).add("RX"), QsemTypeError, "ops", "Operation", "str"),
        case("none", lambda: q(1).add(None), QsemTypeError, "ops", "NoneType"),
        case("class-not-instance", lambda: q(1).add(RX), QsemTypeError, "ops", "class RX", "RX("),
        case("ctor", lambda: Circuit([2], ops=[3]), QsemTypeError, "ops", "int"),
        case(
            "observable", lambda: q(1).add(PauliString("Z", 0)), QsemTypeError, "ops", "PauliString"
        ),
    ]
)

test_wires = run_bad(
    [
        case(
            "out-of-range",
            lambda: q(2).add(RX(0.1, wires=2)),
            QsemValueError,
            "wires",
            "RX uses wire(s) [2]",
            "wires 0..1",
        ),
        case(
            "out-of-range-2q", lambda: q(2).add(CNOT(wires=[0, 3])), QsemValueError, "wires", "[3]"
        ),
        case(
            "out-of-range-control",
            lambda: q(2).add(Controlled(X(wires=0), control_wires=[5])),
            QsemValueError,
            "wires",
            "[5]",
        ),
        case("repeated", lambda: CNOT(wires=[1, 1]), QsemValueError, "wires", "distinct", "[1, 1]"),
        case(
            "repeated-toffoli",
            lambda: Toffoli(wires=[0, 1, 0]),
            QsemValueError,
            "wires",
            "distinct",
        ),
        case(
            "negative", lambda: RX(0.1, wires=-1), QsemValueError, "wires", "non-negative", "[-1]"
        ),
        case("float", lambda: RX(0.1, wires=1.0), QsemTypeError, "wires", "1.0"),
        case("str", lambda: RX(0.1, wires="0"), QsemTypeError, "wires", "'0'"),
        case("bool", lambda: RX(0.1, wires=True), QsemTypeError, "wires", "True"),
        case("none", lambda: RX(0.1, wires=None), QsemTypeError, "wires", "None"),
        case("mixed-list", lambda: CNOT(wires=[0, "1"]), QsemTypeError, "wires", "integers"),
        case(
            "empty",
            lambda: Unitary(np.eye(2), wires=[]),
            QsemValueError,
            "wires",
            "at least one wire",
        ),
        case("count-cnot", lambda: CNOT(wires=[0]), QsemValueError, "wires", "2 wire(s)", "[0]"),
        case("count-rx", lambda: RX(0.1, wires=[0, 1]), QsemValueError, "wires", "1 wire(s)"),
        case("count-crx", lambda: CRX(0.1, wires=[0]), QsemValueError, "wires", "2 wires"),
        case("count-toffoli", lambda: Toffoli(wires=[0, 1]), QsemValueError, "wires", "3 wires"),
        case(
            "count-pauli",
            lambda: PauliString("XZ", wires=[0]),
            QsemValueError,
            "wires",
            "2 Paulis need 2 wires",
        ),
        case(
            "count-gellmann", lambda: GellMann(1, wires=[0, 1]), QsemValueError, "wires", "one wire"
        ),
        case(
            "control-overlap",
            lambda: Controlled(X(wires=0), control_wires=[0]),
            QsemValueError,
            "control_wires",
            "overlap",
        ),
        case(
            "control-negative",
            lambda: Controlled(X(wires=1), control_wires=-1),
            QsemValueError,
            "control_wires",
            "non-negative",
        ),
        case(
            "control-values-count",
            lambda: Controlled(X(wires=1), control_wires=[0], control_values=[1, 1]),
            QsemValueError,
            "control_values",
            "need 1",
        ),
        case(
            "control-values-negative",
            lambda: Controlled(X(wires=1), control_wires=[0], control_values=[-1]),
            QsemValueError,
            "control_values",
            "non-negative",
        ),
        case(
            "control-values-str",
            lambda: Controlled(X(wires=1), control_wires=[0], control_values="1"),
            QsemTypeError,
            "control_values",
            "'1'",
        ),
        case(
            "control-values-float",
            lambda: Controlled(X(wires=1), control_wires=[0], control_values=[1.0]),
            QsemTypeError,
            "control_values",
            "integer",
        ),
        case(
            "controlled-base-channel",
            lambda: Controlled(Depolarizing(0.1, wires=1), control_wires=0),
            QsemTypeError,
            "base",
            "Gate",
            "Depolarizing",
        ),
        case(
            "subspace-same",
            lambda: TRX(0.1, wires=0, subspace=(1, 1)),
            QsemValueError,
            "subspace",
            "distinct",
            "(1, 1)",
        ),
        case(
            "subspace-negative",
            lambda: TRX(0.1, wires=0, subspace=(-1, 1)),
            QsemValueError,
            "subspace",
        ),
        case(
            "subspace-three",
            lambda: TRX(0.1, wires=0, subspace=(0, 1, 2)),
            QsemValueError,
            "subspace",
        ),
        case(
            "subspace-str",
            lambda: TRX(0.1, wires=0, subspace="01"),
            QsemTypeError,
            "subspace",
            "'01'",
        ),
        case("subspace-int", lambda: TRX(0.1, wires=0, subspace=1), QsemTypeError, "subspace"),
        case(
            "subspace-float",
            lambda: TRX(0.1, wires=0, subspace=(0, 1.5)),
            QsemTypeError,
            "subspace",
        ),
    ]
)


def test_wires_accept_numpy() -> None:
    gate = CNOT(wires=np.array([1, 0]))
    assert gate.wires == (1, 0)
    assert RX(0.1, wires=np.int64(1)).wires == (1,)


# ---------------------------------------------------------------------------------------------
# Dimension mismatches between wires and operations
# ---------------------------------------------------------------------------------------------
test_dimension_mismatch = run_bad(
    [
        case(
            "rx-on-qutrit",
            lambda: q3(1).add(RX(0.1, wires=0)),
            DimensionError,
            "wires",
            "RX needs wire dimensions [2]",
            "dimensions [3]",
        ),
        case("h-on-qutrit", lambda: q3(1).add(H(wires=0)), DimensionError, "wires", "[2]"),
        case(
            "adjoint-rx-on-qutrit",
            lambda: q3(1).add(RX(0.1, wires=0).adjoint()),
            DimensionError,
            "wires",
        ),
        case(
            "crx-target-qutrit",
            lambda: Circuit([2, 3]).add(CRX(0.1, wires=[0, 1])),
            DimensionError,
            "wires",
            "[3]",
        ),
        case(
            "trx-level-beyond-d",
            lambda: q3(1).add(TRX(0.1, wires=0, subspace=(0, 3))),
            DimensionError,
            "subspace",
            "level 3",
            "dimension 3",
        ),
        case(
            "trx-level2-on-qubit",
            lambda: q(1).add(TRX(0.1, wires=0, subspace=(1, 2))),
            DimensionError,
            "subspace",
            "level 2",
            "dimension 2",
        ),
        case(
            "swap-qubit-qutrit",
            lambda: Circuit([2, 3]).add(SWAP(wires=[0, 1])),
            DimensionError,
            "wires",
            "equal dimension",
            "[2, 3]",
        ),
        case(
            "cswap-unequal-targets",
            lambda: Circuit([2, 2, 3]).add(CSWAP(wires=[0, 1, 2])),
            DimensionError,
            "wires",
            "equal dimension",
        ),
        case(
            "cnot-on-qutrits",
            lambda: q3(2).add(CNOT(wires=[0, 1])),
            DimensionError,
            "wires",
            "[2, 2]",
            "[3, 3]",
        ),
        case(
            "toffoli-qutrit-target",
            lambda: Circuit([2, 2, 3]).add(Toffoli(wires=[0, 1, 2])),
            DimensionError,
            "wires",
        ),
        case(
            "control-value-beyond-d",
            lambda: q(2).add(Controlled(X(wires=1), control_wires=[0], control_values=[2])),
            DimensionError,
            "control_values",
            "value 2",
            "dimension 2",
        ),
        case(
            "unitary-size",
            lambda: q3(1).add(Unitary(np.eye(2), wires=0)),
            DimensionError,
            "matrix",
            "size 2",
            "[3]",
        ),
        case(
            "unitary-size-2wires",
            lambda: Circuit([2, 3]).add(Unitary(np.eye(4), wires=[0, 1])),
            DimensionError,
            "matrix",
            "size 4",
            "product 6",
        ),
        case(
            "kraus-size",
            lambda: q3(1).add(Kraus([np.eye(2)], wires=0)),
            DimensionError,
            "operators",
            "size 2",
            "[3]",
        ),
        case(
            "bitflip-on-qutrit",
            lambda: q3(1).add(BitFlip(0.1, wires=0)),
            DimensionError,
            "wires",
            "[2]",
        ),
        case(
            "tritflip-on-qubit",
            lambda: q(1).add(TritFlip(0.1, 0.1, 0.1, wires=0)),
            DimensionError,
            "wires",
            "[3]",
        ),
        case(
            "amplitude-damping-count-qutrit",
            lambda: q3(1).add(AmplitudeDamping(0.1, wires=0)),
            DimensionError,
            "gammas",
            "dimension 3",
            "2 decay probabilities",
            "got 1",
        ),
        case(
            "amplitude-damping-count-qubit",
            lambda: q(1).add(AmplitudeDamping(0.1, 0.2, wires=0)),
            DimensionError,
            "gammas",
            "got 2",
        ),
        case(
            "add-circuit-other-dims",
            lambda: q(2).add(q3(2)),
            DimensionError,
            "ops",
            "[3, 3]",
            "[2, 2]",
        ),
        case("plus-circuit-other-dims", lambda: q(2) + q3(2), DimensionError, "ops"),
        case("plus-circuit-other-width", lambda: q(2) + q(3), DimensionError, "ops"),
        case(
            "compose-dims",
            lambda: Circuit([2, 3]).compose(q3(1), wires=[0]),
            DimensionError,
            "wires",
            "[2]",
            "[3]",
        ),
        case(
            "compose-count",
            lambda: q(3).compose(q(2), wires=[0]),
            QsemValueError,
            "wires",
            "need 2 wires",
        ),
        case(
            "compose-out-of-range",
            lambda: q(2).compose(q(1), wires=[5]),
            QsemValueError,
            "wires",
            "[5]",
        ),
        case(
            "compose-not-circuit",
            lambda: q(2).compose("c", wires=[0]),
            QsemTypeError,
            "other",
            "Circuit",
        ),
    ]
)


def _expval_on(circuit: Circuit, obs: object) -> object:
    return expval(simulate(circuit), obs)  # type: ignore[arg-type]


test_observables = run_bad(
    [
        case(
            "pauli-on-qutrit",
            lambda: _expval_on(q3(1), PauliString("Z", wires=0)),
            DimensionError,
            "wires",
            "qubits",
            "[3]",
            "GellMann",
        ),
        case(
            "gellmann-index-beyond-qubit",
            lambda: _expval_on(q(1), GellMann(4, wires=0)),
            DimensionError,
            "index",
            "1..3",
            "got 4",
        ),
        case(
            "gellmann-index-beyond-qutrit",
            lambda: GellMann(9, wires=0),
            QsemValueError,
            "index",
            "1..8",
            "dim=",
            "got 9",
        ),
        case(
            "gellmann-dim-not-the-wires",
            lambda: _expval_on(q3(1), GellMann(9, wires=0, dim=4)),
            DimensionError,
            "dim",
            "dimension 4",
            "dimension 3",
        ),
        case(
            "hermitian-size",
            lambda: _expval_on(q3(1), Hermitian(np.eye(2), wires=0)),
            DimensionError,
            "matrix",
            "size 2",
        ),
        case(
            "wire-out-of-range",
            lambda: _expval_on(q(2), PauliString("Z", wires=2)),
            QsemValueError,
            "observables",
            "[2]",
        ),
        case("not-observable", lambda: _expval_on(q(1), "Z"), QsemTypeError, "observables", "str"),
        case("gellmann-index-zero", lambda: GellMann(0, wires=0), QsemValueError, "index", ">= 1"),
        case("gellmann-index-float", lambda: GellMann(1.0, wires=0), QsemValueError, "index"),
        case(
            "pauli-letters",
            lambda: PauliString("XQ", wires=[0, 1]),
            QsemValueError,
            "paulis",
            "I, X, Y, Z",
            "'XQ'",
        ),
        case("pauli-empty", lambda: PauliString("", wires=[0]), QsemValueError, "paulis"),
        case(
            "coeff-nan",
            lambda: PauliString("Z", wires=0, coeff=NAN),
            QsemValueError,
            "coeff",
            "finite",
        ),
        case("coeff-str", lambda: GellMann(1, wires=0, coeff="2"), QsemTypeError, "coeff"),
        case(
            "hermitian-not-hermitian",
            lambda: Hermitian([[0, 1], [0, 0]], wires=0),
            QsemValueError,
            "matrix",
            "not Hermitian",
            "max |H - H^†| = 1",
            "atol 1e-08",
        ),
        case(
            "hermitian-shape",
            lambda: Hermitian(np.ones((2, 3)), wires=0),
            QsemValueError,
            "matrix",
            "square",
            "(2, 3)",
        ),
        case(
            "hermitian-nan",
            lambda: Hermitian([[NAN, 0], [0, 1]], wires=0),
            QsemValueError,
            "matrix",
            "NaN",
        ),
        case("hermitian-str", lambda: Hermitian("Z", wires=0), QsemTypeError, "matrix", "numeric"),
    ]
)


# ---------------------------------------------------------------------------------------------
# Binding symbolic parameters
# ---------------------------------------------------------------------------------------------
def _sym() -> Circuit:
    return q(1).add(RX(Parameter("x"), wires=0))


test_bind = run_bad(
    [
        case("unknown-name", lambda: _sym().bind({"y": 0.1}), QsemValueError, "values", "['y']"),
        case("not-mapping", lambda: _sym().bind([0.1]), QsemTypeError, "values", "mapping", "list"),
        case("nan", lambda: _sym().bind({"x": NAN}), QsemValueError, "values['x']", "finite"),
        case("str", lambda: _sym().bind({"x": "0.1"}), QsemTypeError, "values['x']", "str"),
        case(
            "channel-range",
            lambda: q(1).add(Depolarizing(Parameter("p"), wires=0)).bind({"p": 2.0}),
            QsemValueError,
            "p",
            "[0, 1.33333]",
            "got 2",
        ),
    ]
)


# ---------------------------------------------------------------------------------------------
# Gate parameters, at construction
# ---------------------------------------------------------------------------------------------
test_params_construction = run_bad(
    [
        case("nan", lambda: RX(NAN, wires=0), QsemValueError, "RX.params[0]", "finite", "nan"),
        case("inf", lambda: RY(INF, wires=0), QsemValueError, "RY.params[0]", "inf"),
        case("neg-inf", lambda: U3(0.1, -INF, 0.2, wires=0), QsemValueError, "U3.params[1]"),
        case(
            "tensor-nan",
            lambda: RX(torch.tensor(NAN), wires=0),
            QsemValueError,
            "RX.params[0]",
            "NaN or inf",
        ),
        case(
            "tensor-inf",
            lambda: RX(torch.tensor(INF, dtype=F64), wires=0),
            QsemValueError,
            "RX.params[0]",
        ),
        case(
            "batch-one-nan",
            lambda: RX(torch.tensor([0.1, NAN, 0.3]), wires=0),
            QsemValueError,
            "RX.params[0]",
            "batch index(es) [1]",
        ),
        case(
            "complex-tensor",
            lambda: RX(torch.tensor(0.5 + 0.5j), wires=0),
            QsemValueError,
            "RX.params[0]",
            "real",
            "complex",
        ),
        case("complex-number", lambda: RX(0.5j, wires=0), QsemTypeError, "RX.params[0]", "complex"),
        case(
            "rank2-tensor",
            lambda: RX(torch.zeros(2, 2), wires=0),
            QsemValueError,
            "RX.params[0]",
            "shape () or (B,)",
            "(2, 2)",
        ),
        case(
            "empty-batch",
            lambda: RX(torch.zeros(0), wires=0),
            QsemValueError,
            "RX.params[0]",
            "at least one value",
        ),
        case("bool", lambda: RX(True, wires=0), QsemTypeError, "RX.params[0]", "bool"),
        case(
            "bool-tensor",
            lambda: RX(torch.tensor(True), wires=0),
            QsemTypeError,
            "RX.params[0]",
            "bool",
        ),
        case("str", lambda: RX("0.1", wires=0), QsemTypeError, "RX.params[0]", "str"),
        case("none", lambda: RX(None, wires=0), QsemTypeError, "RX.params[0]", "NoneType"),
        case("list", lambda: RX([0.1, 0.2], wires=0), QsemTypeError, "RX.params[0]", "list"),
        case(
            "count-u3",
            lambda: U3(0.1, 0.2, wires=0),
            QsemValueError,
            "params",
            "U3 takes 3 parameter(s), got 2",
        ),
        case(
            "count-crx",
            lambda: CRX(0.1, 0.2, wires=[0, 1]),
            QsemValueError,
            "params",
            "CRX takes 1",
        ),
        case(
            "count-channel",
            lambda: Depolarizing(0.1, 0.2, wires=0),
            QsemValueError,
            "params",
            "Depolarizing takes 1",
        ),
        case(
            "amplitude-damping-none",
            lambda: AmplitudeDamping(wires=0),
            QsemValueError,
            "gammas",
            "d - 1",
        ),
        case("parameter-empty-name", lambda: Parameter(""), QsemTypeError, "name", "non-empty"),
        case("parameter-int-name", lambda: Parameter(3), QsemTypeError, "name"),
        case("parameter-nan-scale", lambda: Parameter("x", NAN), QsemValueError, "scale", "finite"),
        case("parameter-nan-mul", lambda: Parameter("x") * NAN, QsemValueError, "scale"),
    ]
)


# ---------------------------------------------------------------------------------------------
# Parameters at run time
# ---------------------------------------------------------------------------------------------
def _two_sym() -> Circuit:
    return q(1).add(RX(Parameter("x"), wires=0), RY(Parameter("y"), wires=0))


def _run(circuit: Circuit, params: object = None, **kw: object) -> object:
    return TorchSimulator(**kw).run(circuit, params)  # type: ignore[arg-type]


test_params_run = run_bad(
    [
        case(
            "batch-mismatch-bound",
            lambda: _run(_two_sym(), {"x": torch.zeros(3), "y": torch.zeros(4)}),
            QsemValueError,
            "params",
            "batch sizes differ",
            "3",
            "4",
            "params['y']",
        ),
        case(
            "batch-mismatch-concrete",
            lambda: _run(q(2).add(RX(torch.zeros(3), wires=0), RY(torch.zeros(4), wires=1))),
            QsemValueError,
            "params",
            "batch sizes differ",
        ),
        case(
            "batch-mismatch-in-one-gate",
            lambda: _run(q(1).add(U3(torch.zeros(3), torch.zeros(4), 0.0, wires=0))),
            QsemValueError,
            "params",
            "different batch sizes",
        ),
        case(
            "batch-mismatch-bound-vs-concrete",
            lambda: _run(
                q(1).add(RX(Parameter("x"), wires=0), RY(torch.zeros(2), wires=0)),
                {"x": torch.zeros(5)},
            ),
            QsemValueError,
            "params",
            "batch sizes differ",
        ),
        case("unbound", lambda: _run(_two_sym(), {"x": 0.1}), QsemValueError, "params", "['y']"),
        case("unbound-none", lambda: _run(_sym()), QsemValueError, "params", "['x']"),
        case("unbound-simulate", lambda: simulate(_sym()), QsemValueError, "params", "['x']"),
        case(
            "unbound-concrete-matrix",
            lambda: RX(Parameter("x"), wires=0).concrete_matrix((2,)),
            QsemValueError,
            "params",
            "'x'",
        ),
        case(
            "extra-name",
            lambda: _run(_sym(), {"x": 0.1, "z": 0.2}),
            QsemValueError,
            "params",
            "['z']",
        ),
        case("not-mapping", lambda: _run(_sym(), [0.1]), QsemTypeError, "params", "mapping"),
        case("nan", lambda: _run(_sym(), {"x": NAN}), QsemValueError, "params['x']", "finite"),
        case(
            "inf-tensor",
            lambda: _run(_sym(), {"x": torch.tensor(INF)}),
            QsemValueError,
            "params['x']",
        ),
        case(
            "batch-one-nan",
            lambda: _run(_sym(), {"x": torch.tensor([0.0, 1.0, NAN])}),
            QsemValueError,
            "params['x']",
            "NaN",
        ),
        case(
            "complex",
            lambda: _run(_sym(), {"x": torch.tensor(1j)}),
            QsemValueError,
            "params['x']",
            "real",
        ),
        case(
            "rank2",
            lambda: _run(_sym(), {"x": torch.zeros(2, 3)}),
            QsemValueError,
            "params['x']",
            "(2, 3)",
        ),
        case("bool", lambda: _run(_sym(), {"x": False}), QsemTypeError, "params['x']"),
        case("str", lambda: _run(_sym(), {"x": "0.1"}), QsemTypeError, "params['x']", "str"),
        case(
            "depolarizing-bound-out-of-range",
            lambda: _run(
                q(1).add(Depolarizing(Parameter("p"), wires=0)), {"p": 1.5}, mode="density_matrix"
            ),
            QsemValueError,
            "p",
            "[0, 1.33333]",
            "1.5",
        ),
        case(
            "amplitude-damping-bound-batch-out-of-range",
            lambda: _run(
                q(1).add(AmplitudeDamping(Parameter("g"), wires=0)),
                {"g": torch.tensor([0.5, 1.5])},
                mode="density_matrix",
            ),
            QsemValueError,
            "gammas[0]",
            "[0, 1]",
            "1.5",
        ),
        case(
            "tritflip-bound-sum",
            lambda: _run(
                q3(1).add(TritFlip(Parameter("a"), 0.3, 0.3, wires=0)),
                {"a": 0.5},
                mode="density_matrix",
            ),
            QsemValueError,
            "params",
            "p01 + p02 + p12 <= 1",
        ),
    ]
)


# ---------------------------------------------------------------------------------------------
# Non-unitary unitaries, non-CPTP channels, probabilities out of range
# ---------------------------------------------------------------------------------------------
def _nearly_unitary(eps: float, dtype: torch.dtype) -> torch.Tensor:
    u = torch.eye(2, dtype=dtype)
    u[0, 0] += eps
    return u


test_unitary_and_channels = run_bad(
    [
        case(
            "unitary-not-unitary",
            lambda: Unitary([[1, 1], [0, 1]], wires=0),
            NotUnitaryError,
            "matrix",
            "not unitary",
            "max |U^†U - I| = 1",
            "atol 1e-10",
        ),
        case(
            "unitary-scaled",
            lambda: Unitary(0.5 * np.eye(2), wires=0),
            NotUnitaryError,
            "matrix",
            "= 0.75",
            "atol 1e-10",
        ),
        case(
            "unitary-complex64-tolerance",
            lambda: Unitary(_nearly_unitary(1e-3, torch.complex64), wires=0),
            NotUnitaryError,
            "matrix",
            "= 0.002",
            "atol 1e-05",
        ),
        case(
            "unitary-user-atol",
            lambda: Unitary(_nearly_unitary(1e-3, C128), wires=0, atol=1e-4),
            NotUnitaryError,
            "matrix",
            "atol 0.0001",
        ),
        case(
            "unitary-batch-one-bad",
            lambda: Unitary(torch.stack([torch.eye(2), 2 * torch.eye(2)]), wires=0),
            NotUnitaryError,
            "matrix",
            "= 3",
        ),
        case(
            "unitary-shape",
            lambda: Unitary(np.ones((2, 3)), wires=0),
            QsemValueError,
            "matrix",
            "(D, D) or (B, D, D)",
            "(2, 3)",
        ),
        case("unitary-vector", lambda: Unitary([1, 0], wires=0), QsemValueError, "matrix", "(2,)"),
        case(
            "unitary-nan",
            lambda: Unitary([[NAN, 0], [0, 1]], wires=0),
            QsemValueError,
            "matrix",
            "NaN",
        ),
        case("unitary-str", lambda: Unitary("I", wires=0), QsemTypeError, "matrix", "numeric"),
        case("unitary-ragged", lambda: Unitary([[1, 0], [0]], wires=0), QsemTypeError, "matrix"),
        case(
            "kraus-not-cptp",
            lambda: Kraus([0.5 * np.eye(2)], wires=0),
            NotCPTPError,
            "operators",
            "not trace preserving",
            "max |Σ K^†K - I| = 0.75",
            "atol 1e-10",
        ),
        case(
            "kraus-too-much",
            lambda: Kraus([np.eye(2), np.eye(2)], wires=0),
            NotCPTPError,
            "operators",
            "= 1",
        ),
        case(
            "kraus-nan",
            lambda: Kraus([[[NAN, 0], [0, 1]]], wires=0),
            QsemValueError,
            "operators",
            "NaN",
        ),
        case(
            "kraus-shape",
            lambda: Kraus(np.ones((2, 2, 3)), wires=0),
            QsemValueError,
            "operators",
            "(r, D, D)",
            "(2, 2, 3)",
        ),
        case(
            "kraus-empty",
            lambda: Kraus(np.zeros((0, 2, 2)), wires=0),
            QsemValueError,
            "operators",
            "(0, 2, 2)",
        ),
        case("kraus-str", lambda: Kraus("K", wires=0), QsemTypeError, "operators", "numeric"),
        case(
            "depolarizing-above-qubit",
            lambda: q(1).add(Depolarizing(1.34, wires=0)),
            QsemValueError,
            "p",
            "dimension 2",
            "d²/(d²-1)",
            "[0, 1.33333]",
            "got 1.34",
            "tolerance",
        ),
        case(
            "depolarizing-above-qutrit",
            lambda: q3(1).add(Depolarizing(1.13, wires=0)),
            QsemValueError,
            "p",
            "dimension 3",
            "[0, 1.125]",
            "got 1.13",
        ),
        case(
            "depolarizing-negative",
            lambda: q(1).add(Depolarizing(-0.01, wires=0)),
            QsemValueError,
            "p",
            "got -0.01",
        ),
        case(
            "depolarizing-batch-one-bad",
            lambda: q(1).add(Depolarizing(torch.tensor([0.1, 1.5]), wires=0)),
            QsemValueError,
            "p",
            "[0.1, 1.5]",
        ),
        case(
            "amplitude-damping-above-one",
            lambda: q(1).add(AmplitudeDamping(1.01, wires=0)),
            QsemValueError,
            "gammas[0]",
            "[0, 1]",
            "1.01",
        ),
        case(
            "amplitude-damping-qutrit-second",
            lambda: q3(1).add(AmplitudeDamping(0.2, 1.5, wires=0)),
            QsemValueError,
            "gammas[1]",
            "1.5",
        ),
        case(
            "amplitude-damping-negative",
            lambda: q(1).add(AmplitudeDamping(-0.2, wires=0)),
            QsemValueError,
            "gammas[0]",
            "-0.2",
        ),
        case(
            "tritflip-sum",
            lambda: q3(1).add(TritFlip(0.5, 0.4, 0.3, wires=0)),
            QsemValueError,
            "params",
            "p01 + p02 + p12 <= 1",
            "1.2",
            "0.5 + 0.4 + 0.3",
        ),
        case(
            "tritflip-one-above",
            lambda: q3(1).add(TritFlip(1.5, 0.0, 0.0, wires=0)),
            QsemValueError,
            "p01",
            "1.5",
        ),
        case(
            "tritflip-negative",
            lambda: q3(1).add(TritFlip(0.1, 0.1, -0.1, wires=0)),
            QsemValueError,
            "p12",
            "-0.1",
        ),
        case(
            "bitflip-above-one",
            lambda: q(1).add(BitFlip(1.5, wires=0)),
            QsemValueError,
            "p",
            "[0, 1]",
        ),
        case(
            "phase-damping-above-one",
            lambda: q(1).add(PhaseDamping(2.0, wires=0)),
            QsemValueError,
            "gamma",
            "[0, 1]",
        ),
    ]
)


# ---------------------------------------------------------------------------------------------
# Initial states
# ---------------------------------------------------------------------------------------------
def _run_init(
    init: object, mode: str = "statevector", circuit: Circuit | None = None, params: object = None
) -> object:
    c = circuit if circuit is not None else q(1)
    return TorchSimulator(mode, dtype=C128).run(c, params, initial_state=init)  # type: ignore[arg-type]


_PLUS = torch.tensor([1, 1], dtype=C128) / math.sqrt(2)

test_initial_state = run_bad(
    [
        case(
            "wrong-size",
            lambda: _run_init(torch.ones(3) / math.sqrt(3), circuit=q(2)),
            QsemValueError,
            "initial_state",
            "size 3",
            "dimension 4",
        ),
        case(
            "not-normalised",
            lambda: _run_init(torch.tensor([1.0, 1.0])),
            InvalidStateError,
            "initial_state",
            "not normalised",
            "1.414",
            "expected 1",
            "tolerance",
        ),
        case(
            "batch-one-not-normalised",
            lambda: _run_init(torch.tensor([[1.0, 0.0], [0.6, 0.6], [0.0, 1.0]])),
            InvalidStateError,
            "initial_state",
            "not normalised",
        ),
        case(
            "nan-vector",
            lambda: _run_init(torch.tensor([NAN, 1.0])),
            QsemValueError,
            "initial_state",
            "NaN",
        ),
        case(
            "nan-density",
            lambda: _run_init(rho([NAN, 0], [0, 1]), "density_matrix"),
            QsemValueError,
            "initial_state",
            "NaN",
        ),
        case(
            "rank4",
            lambda: _run_init(torch.zeros(1, 1, 2, 2), "density_matrix"),
            QsemValueError,
            "initial_state",
            "(1, 1, 2, 2)",
        ),
        case(
            "density-not-hermitian",
            lambda: _run_init(rho([0.5, 0.5], [0, 0.5]), "density_matrix"),
            InvalidStateError,
            "initial_state",
            "not Hermitian",
            "= 0.5",
        ),
        case(
            "density-not-psd",
            lambda: _run_init(rho([1.5, 0], [0, -0.5]), "density_matrix"),
            InvalidStateError,
            "initial_state",
            "positive semidefinite",
            "-0.5",
        ),
        case(
            "density-trace",
            lambda: _run_init(rho([0.5, 0], [0, 0.2]), "density_matrix"),
            InvalidStateError,
            "initial_state",
            "trace",
            "0.7",
            "not 1",
            "tol",
        ),
        case(
            "density-batch-one-bad",
            lambda: _run_init(
                torch.stack([rho([1, 0], [0, 0]), rho([0.5, 0], [0, 0.2])]), "density_matrix"
            ),
            InvalidStateError,
            "initial_state",
            "trace",
        ),
        case(
            "density-in-statevector-mode-3d",
            lambda: _run_init(rho([1, 0], [0, 0])[None]),
            QsemValueError,
            "initial_state",
            "mode='density_matrix'",
        ),
        case(
            "density-in-statevector-mode-2d",
            lambda: _run_init(rho([0.5, 0], [0, 0.5])),
            InvalidStateError,
            "initial_state",
            "not normalised",
            "mode='density_matrix'",
        ),
        case(
            "batch-mismatch",
            lambda: _run_init(
                torch.stack([_PLUS, _PLUS]), circuit=_sym(), params={"x": torch.zeros(3)}
            ),
            QsemValueError,
            "initial_state",
            "batch size 2",
            "batch size 3",
        ),
        case(
            "density-batch-mismatch",
            lambda: _run_init(
                torch.stack([rho([1, 0], [0, 0])] * 2),
                "density_matrix",
                circuit=_sym(),
                params={"x": torch.zeros(3)},
            ),
            QsemValueError,
            "initial_state",
            "batch size 2",
        ),
        case(
            "levels-out-of-range",
            lambda: _run_init([0, 2], circuit=q(2)),
            QsemValueError,
            "initial_state",
            "one level per wire",
            "[0, 2]",
        ),
        case(
            "levels-count",
            lambda: _run_init([0], circuit=q(2)),
            QsemValueError,
            "initial_state",
            "one level per wire",
        ),
        case("levels-float", lambda: _run_init([0.0]), QsemValueError, "initial_state"),
        case("str", lambda: _run_init("0"), QsemTypeError, "initial_state", "str"),
        case(
            "check-density-matrix-nan",
            lambda: check_density_matrix(rho([NAN, 0], [0, 1])),
            QsemValueError,
            "state",
            "NaN",
        ),
        case(
            "check-density-matrix-shape",
            lambda: check_density_matrix(torch.eye(3)[:2]),
            QsemValueError,
            "state",
            "(..., D, D)",
            "(2, 3)",
        ),
        case(
            "check-density-matrix-type",
            lambda: check_density_matrix(np.eye(2)),
            QsemTypeError,
            "state",
            "ndarray",
        ),
    ]
)


# ---------------------------------------------------------------------------------------------
# Simulator settings and measurements
# ---------------------------------------------------------------------------------------------
def _channel_circuit() -> Circuit:
    return q(1).add(H(wires=0), Depolarizing(0.1, wires=0))


test_simulator = run_bad(
    [
        case(
            "mode",
            lambda: TorchSimulator("mixed"),
            QsemValueError,
            "mode",
            "statevector",
            "density_matrix",
            "'mixed'",
        ),
        case("mode-simulate", lambda: simulate(q(1), mode="sv"), QsemValueError, "mode", "'sv'"),
        case(
            "dtype-float32",
            lambda: TorchSimulator(dtype=torch.float32),
            QsemValueError,
            "dtype",
            "torch.complex64 or torch.complex128",
            "torch.float32",
        ),
        case("dtype-float64", lambda: TorchSimulator(dtype=torch.float64), QsemValueError, "dtype"),
        case(
            "dtype-complex32",
            lambda: TorchSimulator(dtype=torch.complex32),
            QsemValueError,
            "dtype",
            "complex32",
        ),
        case(
            "dtype-str",
            lambda: TorchSimulator(dtype="complex64"),
            QsemValueError,
            "dtype",
            "'complex64'",
        ),
        case(
            "device-unknown",
            lambda: TorchSimulator(device="gpu0"),
            QsemValueError,
            "device",
            "'gpu0'",
        ),
        case(
            "device-bad-index", lambda: TorchSimulator(device="cuda:abc"), QsemValueError, "device"
        ),
        case("device-type", lambda: simulate(q(1), device="tpu"), QsemValueError, "device"),
        case(
            "channel-in-statevector",
            lambda: TorchSimulator("statevector").run(_channel_circuit()),
            QsemValueError,
            "mode",
            "Depolarizing",
            "mode='density_matrix'",
        ),
        case(
            "channel-in-statevector-simulate",
            lambda: simulate(_channel_circuit(), mode="statevector"),
            QsemValueError,
            "mode",
        ),
        case(
            "max-block-dim",
            lambda: TorchSimulator(max_block_dim=1),
            QsemValueError,
            "max_block_dim",
            ">= 2",
        ),
        case(
            "max-memory-zero",
            lambda: TorchSimulator(max_memory=0),
            QsemValueError,
            "max_memory",
            "positive",
        ),
        case(
            "max-memory-float", lambda: TorchSimulator(max_memory=2.5), QsemValueError, "max_memory"
        ),
        case(
            "run-not-circuit",
            lambda: TorchSimulator().run("circuit"),
            QsemTypeError,
            "circuit",
            "Circuit",
            "str",
        ),
    ]
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda() -> None:
    expect_error(
        lambda: TorchSimulator(device="cuda"),
        QsemValueError,
        "device",
        "'cuda'",
        "CUDA is not available",
    )
    expect_error(
        lambda: simulate(q(1), device=torch.device("cuda", 0)),
        QsemValueError,
        "device",
        "CUDA is not available",
    )


test_measurements = run_bad(
    [
        case(
            "probs-wire-out-of-range",
            lambda: probs(bell_state(), wires=[2]),
            QsemValueError,
            "wires",
            "[2]",
            "2 wires",
        ),
        case("probs-wire-negative", lambda: probs(bell_state(), wires=-1), QsemValueError, "wires"),
        case(
            "probs-wire-repeated",
            lambda: probs(bell_state(), wires=[0, 0]),
            QsemValueError,
            "wires",
            "distinct",
        ),
        case("probs-wire-type", lambda: probs(bell_state(), wires="0"), QsemTypeError, "wires"),
        case(
            "rdm-out-of-range",
            lambda: reduced_density_matrix(bell_state(), [1, 4]),
            QsemValueError,
            "wires",
            "[4]",
        ),
        case(
            "purity-out-of-range",
            lambda: purity(bell_state("density_matrix"), wires=3),
            QsemValueError,
            "wires",
        ),
        case(
            "entropy-out-of-range",
            lambda: entropy(bell_state(), wires=[9]),
            QsemValueError,
            "wires",
        ),
        case(
            "sample-out-of-range",
            lambda: sample(bell_state(), 10, wires=[2]),
            QsemValueError,
            "wires",
        ),
        case(
            "shots-zero",
            lambda: sample(bell_state(), 0),
            QsemValueError,
            "shots",
            "positive integer",
            "got 0",
        ),
        case("shots-negative", lambda: sample(bell_state(), -5), QsemValueError, "shots", "-5"),
        case("shots-float", lambda: sample(bell_state(), 10.0), QsemTypeError, "shots", "10.0"),
        case("shots-str", lambda: sample(bell_state(), "10"), QsemTypeError, "shots"),
        case("shots-bool", lambda: sample(bell_state(), True), QsemTypeError, "shots"),
        case("seed-str", lambda: sample(bell_state(), 10, seed="a"), QsemTypeError, "seed"),
        case(
            "entropy-base-one",
            lambda: entropy(bell_state(), [0], base=1),
            QsemValueError,
            "base",
            "> 1",
            "got 1",
        ),
        case(
            "entropy-base-below-one",
            lambda: entropy(bell_state(), [0], base=0.5),
            QsemValueError,
            "base",
        ),
        case(
            "entropy-base-negative",
            lambda: entropy(bell_state(), [0], base=-2),
            QsemValueError,
            "base",
        ),
        case(
            "entropy-base-nan", lambda: entropy(bell_state(), [0], base=NAN), QsemValueError, "base"
        ),
        case(
            "entropy-base-inf",
            lambda: entropy(bell_state(), [0], base=INF),
            QsemValueError,
            "base",
            "finite",
        ),
        case(
            "entropy-base-str", lambda: entropy(bell_state(), [0], base="2"), QsemTypeError, "base"
        ),
        case("state-not-state", lambda: probs(torch.ones(2)), QsemTypeError, "state", "Tensor"),
        case(
            "vector-of-density-state",
            lambda: bell_state("density_matrix").vector,
            QsemValueError,
            "state",
            "density-matrix",
        ),
        case(
            "counts-shape",
            lambda: counts(torch.zeros(2, 3, 1)),
            QsemValueError,
            "samples",
            "(2, 3, 1)",
        ),
    ]
)


def test_measurements_accept_numpy_ints() -> None:
    s = bell_state()
    out = sample(s, np.int64(16), seed=np.int64(3))
    assert out.shape == (16, 2)
    torch.testing.assert_close(
        entropy(s, [0], base=np.float64(2.0)), torch.tensor(1.0, dtype=F64), atol=ATOL_F64, rtol=0
    )


# ---------------------------------------------------------------------------------------------
# Memory: refuse before allocating, with the size needed
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("circuit", "mode", "dtype", "size"),
    [
        pytest.param(q(40).add(H(wires=0)), "statevector", torch.complex64, "8 TiB", id="sv-40q"),
        pytest.param(q(40), "statevector", C128, "16 TiB", id="sv-40q-c128"),
        pytest.param(
            q(20).add(H(wires=3)), "density_matrix", torch.complex64, "8 TiB", id="dm-20q"
        ),
        pytest.param(q3(26), "statevector", torch.complex64, "18.5 TiB", id="sv-26-qutrits"),
        pytest.param(Circuit([2, 3] * 6), "density_matrix", C128, "32.4 GiB", id="dm-mixed"),
        pytest.param(q(32), "statevector", torch.complex64, "32 GiB", id="sv-32q"),
    ],
)
def test_register_too_large_is_refused(
    circuit: Circuit, mode: str, dtype: torch.dtype, size: str
) -> None:
    err = expect_error(
        lambda: TorchSimulator(mode, dtype=dtype, max_memory=1 << 34).run(circuit),
        MemoryLimitError,
        "circuit",
        f"needs {size} for the state",
        mode,
        "(max_memory)",
    )
    assert isinstance(err, MemoryError)


def test_register_too_large_for_this_machine() -> None:
    # No max_memory: the limit is what the machine has free; 8 TiB exceeds any CI runner.
    expect_error(lambda: simulate(q(40)), MemoryLimitError, "circuit", "8 TiB", "available")
    expect_error(
        lambda: simulate(q(20).add(Depolarizing(0.1, wires=0))),
        MemoryLimitError,
        "circuit",
        "density_matrix",
        "8 TiB",
    )


def test_max_memory_refuses_a_small_register() -> None:
    sim = TorchSimulator(max_memory=1000)
    # 2^8 amplitudes * 8 B = 2 KiB of state, about 6 KiB to simulate.
    expect_error(
        lambda: sim.run(q(8)),
        MemoryLimitError,
        "circuit",
        "needs 2 KiB",
        "6 KiB",
        "1e+03 B",
        "max_memory",
    )
    # The batch counts: 100 copies of a 4-qubit state need 12.5 KiB.
    batched = TorchSimulator(max_memory=20_000)
    expect_error(
        lambda: batched.run(_sym_wide(4), {"x": torch.zeros(100)}),
        MemoryLimitError,
        "circuit",
        "batch 100",
        "12.5 KiB",
    )


def _sym_wide(n: int) -> Circuit:
    return q(n).add(RX(Parameter("x"), wires=0))


def test_register_that_fits_runs() -> None:
    sim = TorchSimulator(dtype=C128, max_memory=1 << 20)
    p = probs(sim.run(q(8).add(H(wires=0))), wires=[0])
    torch.testing.assert_close(p, torch.tensor([0.5, 0.5], dtype=F64), atol=ATOL_F64, rtol=0)
    batched = TorchSimulator(dtype=C128, max_memory=20_000).run(
        _sym_wide(4), {"x": torch.zeros(10)}
    )
    assert batched.vector.shape == (10, 16)


# ---------------------------------------------------------------------------------------------
# Valid edge values keep working (closed forms)
# ---------------------------------------------------------------------------------------------
def _dm(circuit: Circuit, params: dict | None = None, init: object = None) -> torch.Tensor:
    sim = TorchSimulator("density_matrix", dtype=C128)
    return sim.run(circuit, params, initial_state=init).density_matrix


def _diag(*values: float) -> torch.Tensor:
    return torch.diag(torch.tensor(values, dtype=C128))


EDGE_CASES = [
    pytest.param(
        q(1).add(H(wires=0), Depolarizing(0.0, wires=0)),
        torch.full((2, 2), 0.5, dtype=C128),
        id="depolarizing-p0",
    ),
    pytest.param(
        q(1).add(Depolarizing(4 / 3, wires=0)), _diag(1 / 3, 2 / 3), id="depolarizing-qubit-max"
    ),
    pytest.param(q(1).add(Depolarizing(1.0, wires=0)), _diag(0.5, 0.5), id="depolarizing-qubit-p1"),
    pytest.param(
        q3(1).add(Depolarizing(9 / 8, wires=0)),
        _diag(1 / 4, 3 / 8, 3 / 8),
        id="depolarizing-qutrit-max",
    ),
    pytest.param(
        Circuit([4]).add(Depolarizing(16 / 15, wires=0)),
        _diag(-1 / 15 + 4 / 15, 4 / 15, 4 / 15, 4 / 15),
        id="depolarizing-d4-max",
    ),
    pytest.param(
        q(1).add(Depolarizing(4 / 3 + 1e-13, wires=0)),
        _diag(1 / 3, 2 / 3),
        id="depolarizing-rounding-slack",
    ),
    pytest.param(
        q(1).add(X(wires=0), AmplitudeDamping(1.0, wires=0)),
        _diag(1, 0),
        id="amplitude-damping-gamma1",
    ),
    pytest.param(
        q(1).add(X(wires=0), AmplitudeDamping(0.0, wires=0)),
        _diag(0, 1),
        id="amplitude-damping-gamma0",
    ),
    pytest.param(
        q3(1).add(TRX(math.pi, wires=0, subspace=(0, 2)), AmplitudeDamping(1.0, 1.0, wires=0)),
        _diag(0, 1, 0),
        id="amplitude-damping-qutrit-gamma1",
    ),
    pytest.param(q(1).add(BitFlip(1.0, wires=0)), _diag(0, 1), id="bitflip-p1"),
    pytest.param(
        q(1).add(BitFlip(torch.tensor(1 + 1e-13, dtype=F64), wires=0)),
        _diag(0, 1),
        id="bitflip-rounding-slack",
    ),
    pytest.param(
        q(1).add(H(wires=0), PhaseDamping(1.0, wires=0)), _diag(0.5, 0.5), id="phase-damping-gamma1"
    ),
    pytest.param(
        q3(1).add(TritFlip(0.5, 0.25, 0.25, wires=0)), _diag(0.25, 0.5, 0.25), id="tritflip-sum1"
    ),
    pytest.param(q3(1).add(TritFlip(0.0, 0.0, 0.0, wires=0)), _diag(1, 0, 0), id="tritflip-zero"),
]


@pytest.mark.parametrize(("circuit", "expected"), EDGE_CASES)
def test_channel_edge_values(circuit: Circuit, expected: torch.Tensor) -> None:
    torch.testing.assert_close(_dm(circuit), expected, atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_depolarizing_edges_batched_and_symbolic(d: int) -> None:
    """p = 0 and p = d²/(d²-1) in one batch, and bound at run time to a symbolic p."""
    pmax = d * d / (d * d - 1)
    zero = np.zeros((d, d))
    zero[0, 0] = 1
    e0 = torch.tensor(zero, dtype=C128)
    full = (1 - pmax) * e0 + pmax * torch.eye(d, dtype=C128) / d
    expected = torch.stack([e0, full])
    batched = Circuit([d]).add(Depolarizing(torch.tensor([0.0, pmax], dtype=F64), wires=0))
    torch.testing.assert_close(_dm(batched), expected, atol=ATOL_F64, rtol=0)
    symbolic = Circuit([d]).add(Depolarizing(Parameter("p"), wires=0))
    got = _dm(symbolic, {"p": torch.tensor([0.0, pmax], dtype=F64)})
    torch.testing.assert_close(got, expected, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(_dm(symbolic.bind({"p": pmax})), full, atol=ATOL_F64, rtol=0)


def test_edge_valid_inputs_accepted() -> None:
    """Values right at a tolerance are accepted: nearly-unitary, nearly-normalised, p = 1."""
    Unitary(_nearly_unitary(1e-12, C128), wires=0)
    Kraus([np.eye(2) * (1 + 1e-12)], wires=0)
    Hermitian(np.array([[1, 1e-12], [0, -1]]), wires=0)
    init = torch.tensor([1 + 1e-12, 0], dtype=C128)
    state = TorchSimulator(dtype=C128).run(q(1), initial_state=init)
    torch.testing.assert_close(probs(state), torch.tensor([1.0, 0.0], dtype=F64), atol=1e-9, rtol=0)
    q3(1).add(TritFlip(1.0, 0.0, 0.0, wires=0), AmplitudeDamping(0.0, 1.0, wires=0))


# Gradients with respect to a channel probability at the edge of its range. Each
# expectation value is linear in the probability, so the derivative is a constant.
GRAD_EDGES = [
    pytest.param(
        lambda p: Depolarizing(p, wires=0),
        True,
        PauliString("X", 0),
        0.0,
        -1.0,
        id="depolarizing-p0",
    ),
    pytest.param(
        lambda p: AmplitudeDamping(p, wires=0),
        True,
        PauliString("Z", 0),
        0.0,
        1.0,
        id="amplitude-damping-gamma0",
    ),
    pytest.param(
        lambda p: AmplitudeDamping(p, wires=0),
        True,
        PauliString("Z", 0),
        1.0,
        1.0,
        id="amplitude-damping-gamma1",
        marks=pytest.mark.xfail(
            strict=True,
            reason="<Z> is linear in gamma, but K_0 = diag(1, sqrt(1-gamma)) enters twice, "
            "so autograd forms 0 * inf = NaN at gamma = 1 (the decay term is linear since it "
            "is given as a weight); needs a superoperator step with diagonal 1 - gamma",
        ),
    ),
    pytest.param(
        lambda p: BitFlip(p, wires=0), False, PauliString("Z", 0), 0.0, -2.0, id="bitflip-p0"
    ),
    pytest.param(
        lambda p: BitFlip(p, wires=0), False, PauliString("Z", 0), 1.0, -2.0, id="bitflip-p1"
    ),
]


@pytest.mark.parametrize(("make", "hadamard", "obs", "value", "slope"), GRAD_EDGES)
def test_channel_gradient_at_edge_values(
    make: Callable[[torch.Tensor], object],
    hadamard: bool,
    obs: PauliString,
    value: float,
    slope: float,
) -> None:
    p = torch.tensor(value, dtype=F64, requires_grad=True)
    c = q(1)
    if hadamard:
        c.add(H(wires=0))
    c.add(make(p))  # type: ignore[arg-type]
    out = expval(TorchSimulator("density_matrix", dtype=C128).run(c), obs)
    (grad,) = torch.autograd.grad(out, p)
    torch.testing.assert_close(grad, torch.tensor(slope, dtype=F64), atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------
# Bad input the engine (simulators/engine.py, owned by the lead) does not yet reject
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_unavailable_device_type_is_refused() -> None:
    expect_error(lambda: TorchSimulator(device="mps").run(q(1)), QsemValueError, "device", "'mps'")


def test_bound_bool_tensor_is_refused() -> None:
    expect_error(
        lambda: _run(_sym(), {"x": torch.tensor(True)}), QsemTypeError, "params['x']", "bool"
    )


def test_bound_empty_batch_is_refused() -> None:
    expect_error(lambda: _run(_sym(), {"x": torch.zeros(0)}), QsemValueError, "params['x']", "(0,)")


def test_max_memory_bool_is_refused() -> None:
    expect_error(lambda: TorchSimulator(max_memory=True), QsemValueError, "max_memory")


def test_simulate_not_a_circuit() -> None:
    expect_error(lambda: simulate("circuit"), QsemTypeError, "circuit", "Circuit")
