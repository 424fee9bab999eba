"""Three-valued Kleene queries over generated knowledge bases.

A knowledge base (KB) has entities, unary predicates, ground facts with
negation (``p(e)`` or ``¬p(e)``) and rules ``l_1(x) ∧ ... ∧ l_k(x) -> h(x)``
whose literals may be negated. A query ``r(e)?`` is answered under the
**open-world** reading:

* true (``T``, label 0) if ``r(e)`` is derivable,
* false (``F``, label 1) if ``¬r(e)`` is derivable,
* unknown (``U``, label 2) otherwise (absence of a fact is not falsity).

Labels follow the qutrit truth basis ``|T>=|0>, |F>=|1>, |U>=|2>``.

Structure of the generated KBs
------------------------------
Predicates are arranged in levels ``0..max_depth``. Level-0 predicates are
*base* predicates: only they have facts. Each predicate of level ``k >= 1`` is
*derived* by exactly one rule whose first ("main") body literal is on a
predicate of level ``k - 1`` and whose further ("side") literals (0 to
``max_side`` of them) are on base predicates. So the **depth** of a query
``r(e)`` (the number of rule hops needed) is the level of ``r``; depth 0 queries
are answered by a fact or its absence. Every atom has at most one derivation,
so KBs are consistent by construction (checked by :func:`forward_chain`).

Facts are drawn at random, but for a share of the entities a random derived
atom is *planted* (the facts along its chain are chosen so that the rule chain
fires), otherwise definite answers would be rare at large depth. Queries are
then drawn per KB balanced over depth and, within a depth, over the three
labels (as far as the KB has atoms of each kind).

Tokenisation (the documented choice)
------------------------------------
A query is tokenised together with the facts and rules it depends on, as its
proof chain read from the base upwards::

    FACT_s  [SIDE_(pol,s) ...] LINK_(pol,pol)  [SIDE ...] LINK  ...  QUERY

* ``FACT_s``: the status ``s ∈ {T, F, U}`` of the base atom the chain starts
  from (``T``: fact ``b(e)``, ``F``: fact ``¬b(e)``, ``U``: no fact);
* ``SIDE_(pol,s)``: one side literal of the next rule, with its polarity and
  the status of the entity's fact on that base predicate;
* ``LINK_(pb,ph)``: the rule itself, the polarity of its main body literal and
  of its head;
* ``QUERY``: end of the query.

The tokeniser therefore performs *retrieval* (which rules and facts matter,
in proof order); the model has to perform the three-valued *evaluation*
(Kleene conjunction of the body, polarity of each hop, propagation of
unknown), which is an order-dependent composition over the sequence. Entity
and predicate names do not appear in the tokens, so test KBs (never seen in
training) are answered from the same vocabulary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from qsem.checks import check_int, check_probability
from qsem.circuits.errors import QsemValueError, arg_error
from qsem.truth import Truth, kleene_and, kleene_not

__all__ = [
    "FALSE",
    "LABELS",
    "TRUE",
    "UNKNOWN",
    "VOCAB",
    "VOCAB_SIZE",
    "KleeneDataset",
    "KleeneTaskConfig",
    "KnowledgeBase",
    "Literal",
    "Query",
    "Rule",
    "chain_label",
    "forward_chain",
    "generate_kb",
    "make_dataset",
    "solve_query",
    "tokenize",
]

#: label codes: the qutrit truth codes of :class:`qsem.truth.Truth`
TRUE, FALSE, UNKNOWN = int(Truth.T), int(Truth.F), int(Truth.U)
LABELS = ("T", "F", "U")

# token ids -------------------------------------------------------------------
PAD, QUERY = 0, 1
_FACT0 = 2  # FACT_T, FACT_F, FACT_U
_LINK0 = 5  # LINK_(pb, ph): pb, ph in {+, -}; id = 5 + 2*[pb neg] + [ph neg]
_SIDE0 = 9  # SIDE_(pol, s): id = 9 + 3*[pol neg] + s

VOCAB: tuple[str, ...] = (
    "PAD",
    "QUERY",
    "FACT_T",
    "FACT_F",
    "FACT_U",
    "LINK_++",
    "LINK_+-",
    "LINK_-+",
    "LINK_--",
    "SIDE_+T",
    "SIDE_+F",
    "SIDE_+U",
    "SIDE_-T",
    "SIDE_-F",
    "SIDE_-U",
)
VOCAB_SIZE = len(VOCAB)


@dataclass(frozen=True)
class Literal:
    """``pred(x)`` (``positive``) or ``¬pred(x)``."""

    pred: int
    positive: bool = True

    def __str__(self) -> str:
        return f"{'' if self.positive else '¬'}p{self.pred}(x)"


@dataclass(frozen=True)
class Rule:
    """``body[0] ∧ body[1] ∧ ... -> head`` over one variable; ``body[0]`` is the main literal."""

    body: tuple[Literal, ...]
    head: Literal

    def __str__(self) -> str:
        return " ∧ ".join(map(str, self.body)) + f" -> {self.head}"


@dataclass
class KnowledgeBase:
    """Entities ``0..n_entities-1``, predicates ``0..n_predicates-1``, facts and rules.

    ``facts[(pred, entity)]`` is ``True`` for ``pred(entity)``, ``False`` for
    ``¬pred(entity)``; absent keys are unknown. ``level[pred]`` is 0 for base
    predicates and the number of rule hops otherwise.
    """

    n_entities: int
    n_predicates: int
    level: list[int]
    facts: dict[tuple[int, int], bool]
    rules: list[Rule]
    rule_for: dict[int, int] = field(default_factory=dict)  # derived pred -> rule index

    def __post_init__(self) -> None:
        if not self.rule_for:
            self.rule_for = {r.head.pred: i for i, r in enumerate(self.rules)}

    def status(self, pred: int, entity: int) -> int:
        """Fact status of a base atom: TRUE, FALSE or UNKNOWN (no fact)."""
        v = self.facts.get((pred, entity))
        return UNKNOWN if v is None else (TRUE if v else FALSE)


@dataclass(frozen=True)
class Query:
    """``pred(entity)?`` in knowledge base ``kb`` with its answer and depth."""

    kb: int
    pred: int
    entity: int
    label: int
    depth: int


@dataclass(frozen=True)
class KleeneTaskConfig:
    """Knobs of the generator (all KBs of a dataset share them)."""

    n_entities: int = 40
    base_predicates: int = 6
    derived_per_level: int = 4
    min_depth: int = 0
    max_depth: int = 3
    max_side: int = 2
    p_absent: float = 0.15
    plant_fraction: float = 0.6
    plants_per_entity: int = 2
    p_match: float = 0.8
    queries_per_kb: int = 24

    def __post_init__(self) -> None:
        for name in ("n_entities", "base_predicates", "derived_per_level", "queries_per_kb"):
            check_int(name, getattr(self, name), 1)
        if not 0 <= self.min_depth <= self.max_depth:
            raise arg_error(
                "min_depth",
                f"need 0 <= min_depth <= max_depth, got {self.min_depth}, {self.max_depth}",
            )
        if self.max_side < 0:
            raise arg_error("max_side", f"must be >= 0, got {self.max_side}")
        if self.max_side > self.base_predicates:
            raise arg_error("max_side", "must not exceed base_predicates")
        if self.plants_per_entity < 0:
            raise arg_error("plants_per_entity", f"must be >= 0, got {self.plants_per_entity}")
        for name in ("p_absent", "plant_fraction", "p_match"):
            check_probability(name, getattr(self, name))


# -----------------------------------------------------------------------------
# generation
# -----------------------------------------------------------------------------


def _chain(kb: KnowledgeBase, pred: int) -> list[int]:
    """Predicates from ``pred`` down to its base predicate along main body literals."""
    out = [pred]
    while kb.level[out[-1]] > 0:
        out.append(kb.rules[kb.rule_for[out[-1]]].body[0].pred)
    return out


def generate_kb(cfg: KleeneTaskConfig, rng: np.random.Generator) -> KnowledgeBase:
    """One random knowledge base (see the module docstring for its structure)."""
    n_base = cfg.base_predicates
    level = [0] * n_base
    by_level: list[list[int]] = [list(range(n_base))]
    rules: list[Rule] = []
    for k in range(1, cfg.max_depth + 1):
        preds = []
        for _ in range(cfg.derived_per_level):
            p = len(level)
            level.append(k)
            preds.append(p)
            lower = int(rng.choice(by_level[k - 1]))
            if k > 1 and rng.random() < cfg.p_match:
                # the main literal usually asks for the polarity the lower rule derives
                pol = rules[lower - n_base].head.positive
            else:
                pol = bool(rng.random() < 0.5)
            main = Literal(lower, pol)
            n_side = int(rng.integers(0, cfg.max_side + 1))
            side_preds = rng.choice(n_base, size=n_side, replace=False)
            side = tuple(Literal(int(q), bool(rng.random() < 0.5)) for q in side_preds)
            rules.append(Rule((main, *side), Literal(p, bool(rng.random() < 0.5))))
        by_level.append(preds)
    kb = KnowledgeBase(cfg.n_entities, len(level), level, {}, rules)

    # planted proofs: fix the facts a random derived atom needs, if consistent
    fixed: dict[tuple[int, int], bool] = {}
    derived = [p for p in range(kb.n_predicates) if level[p] > 0]
    weights = np.array([level[p] for p in derived], dtype=float)
    attempts = [(e, a) for e in range(cfg.n_entities) for a in range(cfg.plants_per_entity)]
    for e, _ in attempts:
        if not derived or rng.random() >= cfg.plant_fraction:
            continue
        target = int(rng.choice(derived, p=weights / weights.sum()))
        need: dict[tuple[int, int], bool] = {}
        chain = _chain(kb, target)
        for upper, lower in itertools.pairwise(chain):
            rule = kb.rules[kb.rule_for[upper]]
            for lit in rule.body[1:]:
                need[(lit.pred, e)] = lit.positive
            want = rule.body[0].positive  # value ``lower`` must take
            if level[lower] == 0:
                need[(lower, e)] = want
            # for a derived ``lower`` its own rule's head polarity must equal ``want``
            elif kb.rules[kb.rule_for[lower]].head.positive != want:
                need = {}
                break
        if need and all(fixed.get(k, v) == v for k, v in need.items()):
            fixed.update(need)
    facts: dict[tuple[int, int], bool] = {}
    for e in range(cfg.n_entities):
        for b in range(n_base):
            if (b, e) in fixed:
                facts[(b, e)] = fixed[(b, e)]
            elif rng.random() >= cfg.p_absent:
                facts[(b, e)] = bool(rng.random() < 0.5)
    kb.facts = facts
    return kb


def chain_label(kb: KnowledgeBase, pred: int, entity: int) -> int:
    """Answer by Kleene evaluation along the unique proof chain (the generator's labels).

    The body is the Kleene conjunction (:func:`qsem.truth.kleene_and`) of its
    literals, a negated literal the Kleene negation (:func:`qsem.truth.kleene_not`)
    of its atom's label; the label codes are the truth codes (T = 0, F = 1, U = 2).
    """
    if kb.level[pred] == 0:
        return kb.status(pred, entity)
    rule = kb.rules[kb.rule_for[pred]]
    body = Truth.T
    for lit in rule.body:
        v = Truth(chain_label(kb, lit.pred, entity))
        body = kleene_and(body, v if lit.positive else kleene_not(v))
    # open world: only a satisfied body derives anything
    if body != Truth.T:
        return UNKNOWN
    return TRUE if rule.head.positive else FALSE


# -----------------------------------------------------------------------------
# the exact reference solver
# -----------------------------------------------------------------------------


def forward_chain(kb: KnowledgeBase) -> set[tuple[int, int, bool]]:
    """All derivable ground literals ``(pred, entity, positive)`` by forward chaining.

    Generic: any rules over one variable, any facts. Runs to the fixpoint and
    raises :class:`QsemValueError` if both ``p(e)`` and ``¬p(e)`` are derivable.
    """
    known = {(p, e, v) for (p, e), v in kb.facts.items()}
    changed = True
    while changed:
        changed = False
        for rule in kb.rules:
            for e in range(kb.n_entities):
                if all((lit.pred, e, lit.positive) in known for lit in rule.body):
                    new = (rule.head.pred, e, rule.head.positive)
                    if new not in known:
                        known.add(new)
                        changed = True
    clash = sorted((p, e) for p, e, v in known if v and (p, e, False) in known)
    if clash:
        raise QsemValueError(f"inconsistent knowledge base: p{clash[0][0]}(e{clash[0][1]})")
    return known


def solve_query(
    kb: KnowledgeBase, pred: int, entity: int, closure: set[tuple[int, int, bool]] | None = None
) -> int:
    """Open-world answer to ``pred(entity)?``: TRUE, FALSE or UNKNOWN."""
    known = forward_chain(kb) if closure is None else closure
    if (pred, entity, True) in known:
        return TRUE
    if (pred, entity, False) in known:
        return FALSE
    return UNKNOWN


# -----------------------------------------------------------------------------
# tokenisation
# -----------------------------------------------------------------------------


def tokenize(kb: KnowledgeBase, pred: int, entity: int) -> list[int]:
    """Token ids of ``pred(entity)?`` with its proof chain (see the module docstring)."""
    if not 0 <= pred < kb.n_predicates:
        raise arg_error("pred", f"must lie in 0..{kb.n_predicates - 1}, got {pred}")
    if not 0 <= entity < kb.n_entities:
        raise arg_error("entity", f"must lie in 0..{kb.n_entities - 1}, got {entity}")
    chain = _chain(kb, pred)
    tokens = [_FACT0 + kb.status(chain[-1], entity)]
    for upper in reversed(chain[:-1]):
        rule = kb.rules[kb.rule_for[upper]]
        for lit in rule.body[1:]:
            tokens.append(_SIDE0 + 3 * (not lit.positive) + kb.status(lit.pred, entity))
        tokens.append(_LINK0 + 2 * (not rule.body[0].positive) + (not rule.head.positive))
    tokens.append(QUERY)
    return tokens


# -----------------------------------------------------------------------------
# datasets
# -----------------------------------------------------------------------------


@dataclass
class KleeneDataset:
    """Padded token ids ``(N, L)`` (``PAD`` = 0), labels, depths, KB index per query."""

    tokens: torch.Tensor
    labels: torch.Tensor
    depths: torch.Tensor
    kb_index: torch.Tensor
    queries: list[Query]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """``True`` at real tokens, ``False`` at padding."""
        return self.tokens != PAD

    def select(self, keep: torch.Tensor) -> KleeneDataset:
        """The queries where the boolean ``(N,)`` tensor ``keep`` holds, padding trimmed.

        >>> data.select(data.depths <= 1)  # the depth <= 1 sub-domain  # doctest: +SKIP
        """
        if (
            not isinstance(keep, torch.Tensor)
            or keep.dtype != torch.bool
            or keep.shape != (len(self),)
        ):
            raise arg_error("keep", f"expected a boolean tensor of shape ({len(self)},)")
        idx = keep.nonzero().flatten()
        tokens = self.tokens[idx]
        length = max(int((tokens != PAD).sum(dim=1).max()), 1) if len(idx) else 1
        return KleeneDataset(
            tokens=tokens[:, :length].clone(),
            labels=self.labels[idx].clone(),
            depths=self.depths[idx].clone(),
            kb_index=self.kb_index[idx].clone(),
            queries=[self.queries[int(i)] for i in idx],
        )


def _sample_queries(
    kb: KnowledgeBase, kb_id: int, cfg: KleeneTaskConfig, rng: np.random.Generator
) -> list[Query]:
    depths = list(range(cfg.min_depth, cfg.max_depth + 1))
    pools: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for p in range(kb.n_predicates):
        d = kb.level[p]
        if d not in depths:
            continue
        for e in range(kb.n_entities):
            pools.setdefault((d, chain_label(kb, p, e)), []).append((p, e))
    out: list[Query] = []
    per_depth = np.full(len(depths), cfg.queries_per_kb // len(depths))
    per_depth[: cfg.queries_per_kb % len(depths)] += 1
    rng.shuffle(per_depth)
    for d, n in zip(depths, per_depth, strict=True):
        avail = {y: list(pools.get((d, y), [])) for y in range(3)}
        for y in avail:
            rng.shuffle(avail[y])
        taken = 0
        y = int(rng.integers(3))
        while taken < n and any(avail.values()):
            if avail[y]:
                p, e = avail[y].pop()
                out.append(Query(kb_id, p, e, y, d))
                taken += 1
            y = (y + 1) % 3
    return out


def make_dataset(
    cfg: KleeneTaskConfig, n_kbs: int, seed: int, *, split: str = "train"
) -> tuple[KleeneDataset, list[KnowledgeBase]]:
    """``n_kbs`` fresh KBs and their queries; ``split`` names an independent seed stream.

    Train and test sets made with the same ``seed`` and different ``split``
    share no knowledge base.
    """
    if n_kbs < 1:
        raise arg_error("n_kbs", f"must be >= 1, got {n_kbs}")
    if split not in ("train", "test", "valid"):
        raise arg_error("split", f"expected 'train', 'test' or 'valid', got {split!r}")
    stream = {"train": 0, "test": 1, "valid": 2}[split]
    root = np.random.SeedSequence([int(seed) % 2**32, stream])
    kbs: list[KnowledgeBase] = []
    queries: list[Query] = []
    for i, child in enumerate(root.spawn(n_kbs)):
        rng = np.random.default_rng(child)
        kb = generate_kb(cfg, rng)
        kbs.append(kb)
        queries.extend(_sample_queries(kb, i, cfg, rng))
    seqs = [tokenize(kbs[q.kb], q.pred, q.entity) for q in queries]
    length = max(len(s) for s in seqs)
    tokens = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return (
        KleeneDataset(
            tokens=tokens,
            labels=torch.tensor([q.label for q in queries]),
            depths=torch.tensor([q.depth for q in queries]),
            kb_index=torch.tensor([q.kb for q in queries]),
            queries=queries,
        ),
        kbs,
    )
