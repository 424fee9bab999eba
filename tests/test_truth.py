"""Qutrit truth states and Kleene logic (qsem.truth) against the standard tables.

The Kleene strong three-valued tables are written out below by hand (rows: a,
columns: b, both in the order T, F, U); the lifted gates are run with the torch
engine on every basis input and on superposed and mixed inputs, whose output
probabilities are worked out from those tables.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ATOL_F64, SHOT_SIGMAS

from qsem.circuits import (
    RY,
    Circuit,
    Controlled,
    H,
    Parameter,
    QsemTypeError,
    QsemValueError,
    SubspaceRY,
)
from qsem.simulators import TorchSimulator, reduced_density_matrix
from qsem.truth import (
    AND_TABLE,
    IMPLIES_TABLE,
    NOT_MATRIX,
    OR_TABLE,
    Truth,
    as_truth,
    evaluate,
    format_truth_table,
    kleene_and,
    kleene_circuit,
    kleene_implies,
    kleene_not,
    kleene_or,
    kleene_unitary,
    most_likely,
    not_gate,
    sample_truth_probabilities,
    truth_density_matrix,
    truth_distribution,
    truth_probabilities,
    truth_state,
)

C128 = torch.complex128
T, F, U = Truth.T, Truth.F, Truth.U

# The standard tables of Kleene's strong logic (e.g. Kleene 1952, §64).
NOT_HAND = {T: F, F: T, U: U}
AND_HAND = {
    T: {T: T, F: F, U: U},
    F: {T: F, F: F, U: F},
    U: {T: U, F: F, U: U},
}
OR_HAND = {
    T: {T: T, F: T, U: T},
    F: {T: T, F: F, U: U},
    U: {T: T, F: U, U: U},
}
IMPLIES_HAND = {
    T: {T: T, F: F, U: U},
    F: {T: T, F: T, U: T},
    U: {T: T, F: U, U: U},
}
HAND = {"and": AND_HAND, "or": OR_HAND, "implies": IMPLIES_HAND}
FUNCS = {"and": kleene_and, "or": kleene_or, "implies": kleene_implies}
PAIRS = list(itertools.product([T, F, U], repeat=2))


def close(a: torch.Tensor, b: object, atol: float = ATOL_F64) -> None:
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# Classical logic
# ---------------------------------------------------------------------------------------------
def test_basis_codes_and_labels() -> None:
    assert (int(T), int(F), int(U)) == (0, 1, 2)
    for label, value in [("T", T), ("true", T), ("F", F), ("False", F), ("u", U), ("unknown", U)]:
        assert as_truth(label) is value
    assert as_truth(2) is U and as_truth(np.int64(1)) is F and str(U) == "U"


@pytest.mark.parametrize("a", [T, F, U])
def test_not_table(a: Truth) -> None:
    assert kleene_not(a) is NOT_HAND[a]
    assert kleene_not(int(a)) is NOT_HAND[a]


@pytest.mark.parametrize("op", ["and", "or", "implies"])
def test_binary_tables_scalars_arrays_tensors(op: str) -> None:
    fn, hand = FUNCS[op], HAND[op]
    for a, b in PAIRS:
        assert fn(a, b) is hand[a][b]
        assert fn(a.name, int(b)) is hand[a][b]
    codes_a = np.array([int(a) for a, _ in PAIRS])
    codes_b = np.array([int(b) for _, b in PAIRS])
    expected = [int(hand[a][b]) for a, b in PAIRS]
    assert fn(codes_a, codes_b).tolist() == expected
    assert fn(torch.as_tensor(codes_a), torch.as_tensor(codes_b)).tolist() == expected
    table = {"and": AND_TABLE, "or": OR_TABLE, "implies": IMPLIES_TABLE}[op]
    assert table.tolist() == [[int(hand[a][b]) for b in (T, F, U)] for a in (T, F, U)]


def test_implication_is_not_a_or_b_and_de_morgan() -> None:
    for a, b in PAIRS:
        assert kleene_implies(a, b) is kleene_or(kleene_not(a), b)
        assert kleene_not(kleene_and(a, b)) is kleene_or(kleene_not(a), kleene_not(b))


def test_format_truth_table() -> None:
    assert format_truth_table("and").splitlines()[2:] == [
        "      T | T F U",
        "      F | F F F",
        "      U | U F U",
    ]
    assert format_truth_table("not").splitlines() == ["NOT T = F", "NOT F = T", "NOT U = U"]


# ---------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------
def test_label_state_distribution_conversions() -> None:
    close(truth_state("F"), [0, 1, 0])
    close(truth_distribution(U), [0.0, 0.0, 1.0])
    close(truth_density_matrix("T"), torch.diag(torch.tensor([1, 0, 0], dtype=C128)))
    close(
        truth_density_matrix([0.2, 0.3, 0.5]), torch.diag(torch.tensor([0.2, 0.3, 0.5], dtype=C128))
    )
    v = torch.tensor([1, 1j, 0], dtype=C128) / math.sqrt(2)
    close(truth_density_matrix(v, coherent=True), torch.outer(v, v.conj()))
    assert most_likely(torch.tensor([0.1, 0.2, 0.7])) is U
    assert most_likely(torch.tensor([[0.6, 0.2, 0.2], [0.1, 0.8, 0.1]])).tolist() == [0, 1]


# ---------------------------------------------------------------------------------------------
# Lifted gates
# ---------------------------------------------------------------------------------------------
def test_not_matrix_is_the_t_f_swap() -> None:
    hand = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=C128)
    close(NOT_MATRIX, hand)
    close(NOT_MATRIX.mH @ NOT_MATRIX, torch.eye(3, dtype=C128))
    amps = torch.tensor([0.36**0.5, 0.48**0.5 * 1j, -(0.16**0.5)], dtype=C128)
    out = TorchSimulator(dtype=C128).run(Circuit.qutrits(1).add(not_gate(0)), initial_state=amps)
    close(out.vector, amps[[1, 0, 2]])  # amplitudes of T and F exchanged, phases kept


@pytest.mark.parametrize("op", ["and", "or", "implies"])
def test_kleene_unitary_is_a_unitary_permutation(op: str) -> None:
    u = kleene_unitary(op)
    assert u.shape == (27, 27)
    close(u.mH @ u, torch.eye(27, dtype=C128))
    assert bool(((u == 0) | (u == 1)).all())
    for a, b in PAIRS:
        for c in range(3):
            out = 9 * int(a) + 3 * int(b) + (c + int(HAND[op][a][b])) % 3
            assert u[out, 9 * int(a) + 3 * int(b) + c] == 1


@pytest.mark.parametrize("op", ["and", "or", "implies"])
@pytest.mark.parametrize("form", ["unitary", "controlled"])
def test_lifted_gates_on_all_basis_inputs(op: str, form: str) -> None:
    circuit = kleene_circuit(op, form=form)
    sim = TorchSimulator(dtype=C128)
    for a, b in PAIRS:
        state = sim.run(circuit, initial_state=[int(a), int(b), 0])
        expected = torch.zeros(27, dtype=C128)
        expected[9 * int(a) + 3 * int(b) + int(HAND[op][a][b])] = 1  # inputs kept, output written
        close(state.vector, expected)
        close(evaluate(op, a, b), truth_distribution(HAND[op][a][b]))


@pytest.mark.parametrize("op", ["and", "or", "implies"])
def test_controlled_form_equals_the_permutation_unitary(op: str) -> None:
    psi = torch.randn(27, dtype=C128)
    psi = psi / torch.linalg.vector_norm(psi)
    sim = TorchSimulator(dtype=C128)
    out = sim.run(kleene_circuit(op, form="controlled"), initial_state=psi).vector
    close(out, kleene_unitary(op) @ psi)


def test_not_on_basis_superposition_and_mixture() -> None:
    for a in (T, F, U):
        close(evaluate("not", a), truth_distribution(NOT_HAND[a]))
    close(evaluate("not", torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)), [0.0, 0.36, 0.64])
    close(evaluate("not", truth_density_matrix([0.2, 0.3, 0.5])), [0.3, 0.2, 0.5])


# a = (|T> + |U>)/√2, b = (|F> + |U>)/√2: pairs (T,F), (T,U), (U,F), (U,U) with 1/4 each
SUPERPOSED = {
    "and": [0.0, 0.5, 0.5],  # F, U, F, U
    "or": [0.5, 0.0, 0.5],  # T, T, U, U
    "implies": [0.0, 0.25, 0.75],  # F, U, U, U
}


@pytest.mark.parametrize("op", ["and", "or", "implies"])
def test_lifted_gates_on_superpositions_and_mixtures(op: str) -> None:
    s = 1 / math.sqrt(2)
    a = torch.tensor([s, 0, s], dtype=C128)
    b = torch.tensor([0, s, -s * 1j], dtype=C128)  # relative phases do not matter
    close(evaluate(op, a, b), SUPERPOSED[op])
    # the same as classical mixtures of the inputs
    close(
        evaluate(op, truth_density_matrix([0.5, 0, 0.5]), truth_density_matrix([0, 0.5, 0.5])),
        SUPERPOSED[op],
    )
    # general product input: P(out = k) = Σ_{f(a,b) = k} p_a q_b from the hand table
    p = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    q = torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    expected = torch.zeros(3, dtype=torch.float64)
    for x, y in PAIRS:
        expected[int(HAND[op][x][y])] += p[int(x)] * q[int(y)]
    phases = torch.exp(1j * torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64))
    close(evaluate(op, p.sqrt() * phases, truth_density_matrix(q)), expected)


def test_output_of_a_superposed_and_is_entangled_with_the_inputs() -> None:
    s = 1 / math.sqrt(2)
    init = torch.kron(
        torch.kron(torch.tensor([s, 0, s], dtype=C128), truth_state(F)), truth_state(T)
    )
    state = TorchSimulator(dtype=C128).run(kleene_circuit("and"), initial_state=init)
    # (|T,F,F> + |U,F,F>)/√2: AND is F either way, the output factors out as |F>
    close(reduced_density_matrix(state, [2]), truth_density_matrix(F))
    init = torch.kron(
        torch.kron(torch.tensor([s, 0, s], dtype=C128), truth_state(T)), truth_state(T)
    )
    state = TorchSimulator(dtype=C128).run(kleene_circuit("and"), initial_state=init)
    # (|T,T,T> + |U,T,U>)/√2: the output is maximally mixed on {T, U}
    close(reduced_density_matrix(state, [2]), truth_density_matrix([0.5, 0.0, 0.5]))


def test_and_on_two_qutrits_alone_is_not_injective() -> None:
    images = {(int(a), int(kleene_and(a, b))) for a, b in PAIRS}
    assert len(images) < 9  # so (a, b) -> (a, a AND b) cannot be a unitary


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def truth_register() -> Circuit:
    """A qubit (wire 0) controlling a rotation of the truth qutrit (wire 1)."""
    return Circuit([2, 3]).add(
        H(wires=0),
        SubspaceRY(1.2, wires=1, subspace=(0, 2)),
        Controlled(SubspaceRY(math.pi, wires=1, subspace=(0, 1)), control_wires=[0]),
    )


def test_truth_probabilities_from_a_state() -> None:
    state = TorchSimulator(dtype=C128).run(truth_register())
    c, s = math.cos(0.6) ** 2, math.sin(0.6) ** 2
    # qubit 0: T/U split (c, s); qubit 1: T moved to F -> average
    close(truth_probabilities(state, 1), [c / 2, c / 2, s])
    batched = TorchSimulator(dtype=C128).run(
        Circuit([2, 3]).add(
            RY(Parameter("x"), wires=0),
            Controlled(SubspaceRY(math.pi, wires=1, subspace=(0, 2)), [0]),
        ),
        {"x": torch.tensor([0.0, math.pi], dtype=torch.float64)},
    )
    close(truth_probabilities(batched, 1), [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def test_sampled_truth_probabilities() -> None:
    state = TorchSimulator(dtype=C128).run(truth_register())
    exact = truth_probabilities(state, 1)
    shots = 4000
    est = sample_truth_probabilities(state, 1, shots, seed=11)
    sigma = torch.sqrt(exact * (1 - exact) / shots)
    assert bool(((est - exact).abs() <= SHOT_SIGMAS * sigma + 1e-12).all())
    close(est.sum(), 1.0)
    close(sample_truth_probabilities(state, 1, shots, seed=11), est)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: as_truth("maybe"), QsemValueError, "argument 'value'.*maybe"),
        (lambda: as_truth(3), QsemValueError, "argument 'value'"),
        (lambda: as_truth(1.0), QsemTypeError, "argument 'value'"),
        (lambda: kleene_not(True), QsemTypeError, "argument 'a'"),
        (lambda: kleene_and(T, 7), QsemValueError, "argument 'b'"),
        (lambda: kleene_or(torch.tensor([0.0]), T), QsemTypeError, "argument 'a'"),
        (lambda: kleene_or(torch.tensor([0, 3]), T), QsemValueError, "argument 'a'"),
        (lambda: format_truth_table("xor"), QsemValueError, "argument 'op'"),
        (lambda: truth_state([1.0, 1.0, 0.0]), QsemValueError, "argument 'value'.*norm"),
        (lambda: truth_state([1.0, 0.0]), QsemValueError, "argument 'value'"),
        (lambda: truth_density_matrix([0.5, 0.6, -0.1]), QsemValueError, "argument 'value'"),
        (lambda: truth_density_matrix([0.5, 0.6, 0.1]), QsemValueError, "argument 'value'.*sum"),
        (lambda: kleene_unitary("nand"), QsemValueError, "argument 'op'"),
        (lambda: kleene_circuit("and", form="dense"), QsemValueError, "argument 'form'"),
        (lambda: kleene_circuit("and", wires=[0, 1]), QsemValueError, "argument 'wires'"),
        (lambda: evaluate("and", T), QsemValueError, "argument 'inputs'"),
        (lambda: evaluate("xor", T, F), QsemValueError, "argument 'op'"),
        (
            lambda: evaluate("not", torch.eye(3, dtype=C128)),
            QsemValueError,
            "argument 'inputs\\[0\\]'",
        ),
        (lambda: truth_probabilities(torch.ones(3), 0), QsemTypeError, "argument 'state'"),
        (
            lambda: truth_probabilities(TorchSimulator().run(Circuit([2, 3])), 0),
            QsemValueError,
            "argument 'wire'.*qutrit",
        ),
        (
            lambda: truth_probabilities(TorchSimulator().run(Circuit([2, 3])), 5),
            QsemValueError,
            "argument 'wire'",
        ),
        (lambda: most_likely(torch.ones(4)), QsemValueError, "argument 'p'"),
    ],
)
def test_bad_input_names_the_argument(build, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        build()


# ---------------------------------------------------------------------------------------------
# The documentation's examples
# ---------------------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[1] / "docs" / "truth.md"
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_doc_examples_run(index: int) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(DOC_BLOCKS[index], f"docs/truth.md[{index}]", "exec"), {})
