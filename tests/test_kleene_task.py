"""The three-valued Kleene task: generator, exact forward-chaining solver, tokeniser.

The generator's labels (Kleene evaluation along each atom's proof chain) are
checked against a generic forward-chaining solver, the solver against
hand-written knowledge bases, and the depth knob against the round of forward
chaining in which an atom is first derived.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch

from qsem.circuits.errors import QsemValueError
from qsem.tasks.kleene import (
    FALSE,
    TRUE,
    UNKNOWN,
    VOCAB,
    KleeneTaskConfig,
    KnowledgeBase,
    Literal,
    Rule,
    chain_label,
    forward_chain,
    make_dataset,
    solve_query,
    tokenize,
)

SMALL = KleeneTaskConfig(n_entities=12, queries_per_kb=12)


def hand_kb() -> KnowledgeBase:
    """p0, p1 base; p2 := p0 ∧ ¬p1; p3 := ¬p2 -> ¬p3 ... (levels below)."""
    rules = [
        Rule((Literal(0, True), Literal(1, False)), Literal(2, True)),  # p0 ∧ ¬p1 -> p2
        Rule((Literal(2, True),), Literal(3, False)),  # p2 -> ¬p3
    ]
    facts = {(0, 0): True, (1, 0): False, (0, 1): True, (1, 1): True, (1, 2): False}
    return KnowledgeBase(3, 4, [0, 0, 1, 2], facts, rules)


# --------------------------------------------------------------------------
# the solver on hand-written knowledge bases
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "entity", "expected"),
    [
        (0, 0, TRUE),  # a fact
        (1, 0, FALSE),  # a negative fact
        (2, 0, TRUE),  # p0(e0) ∧ ¬p1(e0)
        (3, 0, FALSE),  # ¬p3 derived in two hops
        (2, 1, UNKNOWN),  # body false (p1(e1)): nothing derived, open world
        (3, 1, UNKNOWN),
        (0, 2, UNKNOWN),  # no fact
        (2, 2, UNKNOWN),  # body unknown (p0(e2) missing)
    ],
)
def test_solver_on_hand_written_kb(pred: int, entity: int, expected: int) -> None:
    kb = hand_kb()
    assert solve_query(kb, pred, entity) == expected
    assert chain_label(kb, pred, entity) == expected


def test_solver_or_of_two_rules_and_contradiction() -> None:
    # r derivable by either of two rules (a disjunction the chain generator never makes)
    rules = [
        Rule((Literal(0),), Literal(2)),
        Rule((Literal(1, False),), Literal(2)),
    ]
    kb = KnowledgeBase(2, 3, [0, 0, 1], {(1, 0): False, (0, 1): False}, rules)
    assert solve_query(kb, 2, 0) == TRUE
    assert solve_query(kb, 2, 1) == UNKNOWN
    bad = KnowledgeBase(
        1, 2, [0, 1], {(0, 0): True, (1, 0): True}, [Rule((Literal(0),), Literal(1, False))]
    )
    with pytest.raises(QsemValueError, match="inconsistent"):
        forward_chain(bad)


def test_chain_label_kleene_table_by_hand() -> None:
    """Rule ``¬b0(x) ∧ b1(x) -> h(x)`` on all nine fact combinations, labels by hand.

    ``¬b0``: T->F, F->T, U->U; AND: F dominates, then U; only a T body derives ``h``.
    """
    statuses = {TRUE: True, FALSE: False, UNKNOWN: None}
    combos = [(s0, s1) for s0 in (TRUE, FALSE, UNKNOWN) for s1 in (TRUE, FALSE, UNKNOWN)]
    facts = {}
    for e, (s0, s1) in enumerate(combos):
        for pred, status in ((0, s0), (1, s1)):
            if statuses[status] is not None:
                facts[(pred, e)] = statuses[status]
    rule = Rule((Literal(0, False), Literal(1)), Literal(2))
    kb = KnowledgeBase(len(combos), 3, [0, 0, 1], facts, [rule])
    # body = ¬b0 ∧ b1 per (b0, b1): T only for (F, T); then h = T, else U
    by_hand = {(FALSE, TRUE): TRUE}
    for e, combo in enumerate(combos):
        assert chain_label(kb, 2, e) == by_hand.get(combo, UNKNOWN), combo
    neg = KnowledgeBase(len(combos), 3, [0, 0, 1], facts, [Rule(rule.body, Literal(2, False))])
    assert [chain_label(neg, 2, e) for e in range(len(combos))] == [
        FALSE if c == (FALSE, TRUE) else UNKNOWN for c in combos
    ]


# --------------------------------------------------------------------------
# generator vs solver, depth, balance, determinism
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_side", [0, 2])
def test_generator_labels_match_forward_chaining(seed: int, max_side: int) -> None:
    cfg = replace(SMALL, max_side=max_side)
    data, kbs = make_dataset(cfg, 4, seed)
    closures = [forward_chain(kb) for kb in kbs]
    for q, label in zip(data.queries, data.labels.tolist(), strict=True):
        assert label == q.label == solve_query(kbs[q.kb], q.pred, q.entity, closures[q.kb])
    # every atom of every KB, not only the sampled queries
    for kb, closure in zip(kbs, closures, strict=True):
        for p in range(kb.n_predicates):
            for e in range(kb.n_entities):
                assert chain_label(kb, p, e) == solve_query(kb, p, e, closure)


def _first_round(kb: KnowledgeBase) -> dict[tuple[int, int], int]:
    """Round of naive forward chaining in which each derived atom first appears."""
    known = {(p, e, v): 0 for (p, e), v in kb.facts.items()}
    rnd = 0
    while True:
        rnd += 1
        new = {}
        for rule in kb.rules:
            for e in range(kb.n_entities):
                if all((lit.pred, e, lit.positive) in known for lit in rule.body):
                    atom = (rule.head.pred, e, rule.head.positive)
                    if atom not in known:
                        new[atom] = rnd
        if not new:
            return {(p, e): r for (p, e, _), r in known.items()}
        known.update(new)


@pytest.mark.parametrize(("min_depth", "max_depth"), [(0, 3), (2, 4), (1, 1)])
def test_depth_is_the_number_of_rule_hops(min_depth: int, max_depth: int) -> None:
    cfg = replace(SMALL, min_depth=min_depth, max_depth=max_depth)
    data, kbs = make_dataset(cfg, 5, 11)
    assert set(data.depths.tolist()) == set(range(min_depth, max_depth + 1))
    rounds = [_first_round(kb) for kb in kbs]
    link = {VOCAB.index(t) for t in VOCAB if t.startswith("LINK")}
    for i, q in enumerate(data.queries):
        assert q.depth == kbs[q.kb].level[q.pred]
        assert sum(t in link for t in data.tokens[i].tolist()) == q.depth
        if q.label != UNKNOWN:
            assert rounds[q.kb][(q.pred, q.entity)] == q.depth


def test_classes_and_depths_are_reasonably_balanced() -> None:
    data, _ = make_dataset(KleeneTaskConfig(), 40, 5)
    n = len(data)
    labels = Counter(data.labels.tolist())
    assert set(labels) == {TRUE, FALSE, UNKNOWN}
    assert all(0.25 <= labels[k] / n <= 0.45 for k in labels), labels
    depths = Counter(data.depths.tolist())
    assert max(depths.values()) - min(depths.values()) <= 0.02 * n
    for d in depths:  # every label occurs at every depth
        sel = data.labels[data.depths == d]
        assert all(int((sel == k).sum()) >= 0.15 * len(sel) for k in range(3)), (d, sel)


def test_determinism_by_seed_and_split_by_kb() -> None:
    a, kbs_a = make_dataset(SMALL, 3, 7)
    b, _ = make_dataset(SMALL, 3, 7)
    c, _ = make_dataset(SMALL, 3, 8)
    _, kbs_t = make_dataset(SMALL, 3, 7, split="test")
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
    assert not (a.tokens.shape == c.tokens.shape and torch.equal(a.tokens, c.tokens))
    for ka in kbs_a:  # test KBs are fresh draws, none equal to a training KB
        for kt in kbs_t:
            assert (ka.rules, ka.facts) != (kt.rules, kt.facts)


# --------------------------------------------------------------------------
# tokeniser
# --------------------------------------------------------------------------


def test_tokenize_hand_written_kb() -> None:
    kb = hand_kb()
    names = [VOCAB[t] for t in tokenize(kb, 3, 0)]
    # base p0(e0) = T; rule 1 has side ¬p1 with fact ¬p1(e0) (status F); then p2 -> ¬p3
    assert names == ["FACT_T", "SIDE_-F", "LINK_++", "LINK_+-", "QUERY"]
    assert [VOCAB[t] for t in tokenize(kb, 2, 2)] == ["FACT_U", "SIDE_-F", "LINK_++", "QUERY"]
    assert [VOCAB[t] for t in tokenize(kb, 1, 1)] == ["FACT_T", "QUERY"]


def test_dataset_padding_and_mask() -> None:
    data, kbs = make_dataset(SMALL, 2, 0)
    for i, q in enumerate(data.queries):
        seq = tokenize(kbs[q.kb], q.pred, q.entity)
        assert data.tokens[i, : len(seq)].tolist() == seq
        assert not data.tokens[i, len(seq) :].any()
        assert int(data.mask[i].sum()) == len(seq)


def test_select_keeps_queries_and_trims_padding() -> None:
    data, kbs = make_dataset(SMALL, 3, 1)
    keep = data.depths <= 1
    sub = data.select(keep)
    assert len(sub) == int(keep.sum()) > 0
    assert sub.queries == [q for q, k in zip(data.queries, keep.tolist(), strict=True) if k]
    assert sub.depths.max() <= 1 and sub.tokens.shape[1] < data.tokens.shape[1]
    for i, q in enumerate(sub.queries):  # tokens still those of the query, padding trimmed
        seq = tokenize(kbs[q.kb], q.pred, q.entity)
        assert sub.tokens[i, : len(seq)].tolist() == seq and not sub.tokens[i, len(seq) :].any()
        assert int(sub.labels[i]) == q.label
    assert int(sub.mask.sum(dim=1).max()) == sub.tokens.shape[1]  # no all-padding column
    assert len(data.select(torch.zeros(len(data), dtype=torch.bool))) == 0
    with pytest.raises(QsemValueError, match="argument 'keep'"):
        data.select(keep[:-1])
    with pytest.raises(QsemValueError, match="argument 'keep'"):
        data.select(keep.long())


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_entities": 0}, "n_entities"),
        ({"min_depth": 3, "max_depth": 2}, "min_depth"),
        ({"max_side": -1}, "max_side"),
        ({"max_side": 9}, "max_side"),
        ({"p_absent": 1.5}, "p_absent"),
        ({"plant_fraction": -0.1}, "plant_fraction"),
        ({"plants_per_entity": -1}, "plants_per_entity"),
    ],
)
def test_bad_task_config_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(QsemValueError, match=f"argument '{name}'"):
        KleeneTaskConfig(**kwargs)


def test_bad_dataset_and_query_arguments() -> None:
    with pytest.raises(QsemValueError, match="argument 'n_kbs'"):
        make_dataset(SMALL, 0, 0)
    with pytest.raises(QsemValueError, match="argument 'split'"):
        make_dataset(SMALL, 1, 0, split="dev")
    kb = hand_kb()
    with pytest.raises(QsemValueError, match="argument 'pred'"):
        tokenize(kb, 4, 0)
    with pytest.raises(QsemValueError, match="argument 'entity'"):
        tokenize(kb, 0, -1)
