"""Two users who read Kleene queries differently, and one shared model for both.

* ``open`` world: an unknown stays unknown (``|U>``), the task's own labels;
* ``closed`` world: what cannot be derived is false, unknown means ``|F>``
  (``U -> F``; T and F stay).

The queries on which the two differ (open-world label U) are the *disputed*
ones. :func:`simulate_users` draws each user's labelled queries (at most a few
dozen, each user their own draw) and a common held-out set from a pool of
queries the base model never saw; :func:`personalise_users` fits a personal
reading per user (:func:`qsem.edge.personalise_user`), and one *shared* reading
on both users' labels together, and scores all of them on each user's held-out
labels.

>>> world_labels(torch.tensor([0, 1, 2]), "closed").tolist()
[0, 1, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.models import SemanticModel
from qsem.tasks.kleene import LABELS, VOCAB, KleeneDataset
from qsem.truth import Truth

from .personal import (
    PersonalConfig,
    PersonalReading,
    UserData,
    UserFit,
    fit_reading,
    personalise_user,
    reading_accuracy,
)
from .store import HistoryStore

__all__ = [
    "WORLDS",
    "PersonaliseResult",
    "personalise_users",
    "query_text",
    "simulate_users",
    "world_labels",
]

#: the readings a simulated user can have.
WORLDS = ("open", "closed")


def world_labels(labels: torch.Tensor, world: str) -> torch.Tensor:
    """The labels a user of ``world`` gives for the open-world ``labels`` (closed: U -> F)."""
    if world not in WORLDS:
        raise arg_error("world", f"expected one of {WORLDS}, got {world!r}")
    if world == "open":
        return labels.clone()
    return torch.where(labels == int(Truth.U), int(Truth.F), labels)


def query_text(data: KleeneDataset, i: int) -> str:
    """``kb K: pP(eE)? | FACT_T LINK_++ ... QUERY`` — the query and its tokens."""
    q = data.queries[i]
    toks = " ".join(VOCAB[int(t)] for t in data.tokens[i] if int(t) != 0)
    return f"kb {q.kb}: p{q.pred}(e{q.entity})? | {toks}"


def simulate_users(
    pool: KleeneDataset,
    n_labels: int,
    seed: int,
    worlds: Sequence[str] = WORLDS,
    *,
    n_test: int | None = None,
) -> list[UserData]:
    """One user per world: ``n_labels`` labelled queries each (drawn per user) and a common
    held-out set (``n_test`` queries, default all others), disjoint from every labelled one.

    The pool is split first (held-out / labellable) with ``seed``; user ``i`` draws
    its labelled queries from the labellable part with ``seed + 1 + i``.
    """
    if not isinstance(pool, KleeneDataset):
        raise arg_error("pool", f"expected a KleeneDataset, got {type(pool).__name__}",
                        QsemTypeError)  # fmt: skip
    if isinstance(n_labels, bool) or not isinstance(n_labels, int) or n_labels < 1:
        raise arg_error("n_labels", f"expected a positive integer, got {n_labels!r}")
    n = len(pool)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_lab = max(n // 4, n_labels)
    if n - n_lab < 1:
        raise arg_error("n_labels", f"{n_labels} labels leave no held-out query in {n}")
    labellable, held = perm[:n_lab], perm[n_lab:]
    if n_test is not None:
        held = held[:n_test]
    users = []
    for i, world in enumerate(worlds):
        g = torch.Generator().manual_seed(seed + 1 + i)
        mine = labellable[torch.randperm(len(labellable), generator=g)[:n_labels]]
        truth = pool.labels
        users.append(UserData(
            name=f"{world}-world", world=world,
            train_tokens=pool.tokens[mine], train_labels=world_labels(truth[mine], world),
            test_tokens=pool.tokens[held], test_labels=world_labels(truth[held], world),
            disputed=truth[held] == int(Truth.U),
            train_queries=[query_text(pool, int(j)) for j in mine],
            test_queries=[query_text(pool, int(j)) for j in held],
        ))  # fmt: skip
    return users


@dataclass
class PersonaliseResult:
    """What :func:`personalise_users` measured (``as_dict`` gives the JSON-ready part).

    ``per_user_accuracy``: each user's personal reading on their held-out labels;
    ``base_accuracy``: the base model unpersonalised on the same; ``shared_accuracy``:
    the shared reading per user, plus ``"disputed"`` (all users' held-out labels on
    the disputed queries) and ``"mean"``; ``examples``: held-out disputed queries with
    each user's personal answer; ``fits``: the :class:`UserFit` per user (readings).
    """

    per_user_accuracy: dict[str, float]
    personal_disputed_accuracy: dict[str, float]
    base_accuracy: dict[str, float]
    shared_accuracy: dict[str, float]
    labels_per_user: dict[str, int]
    users: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    fits: dict[str, UserFit] = field(repr=False)
    shared: PersonalReading = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "per_user_accuracy", "personal_disputed_accuracy", "base_accuracy",
            "shared_accuracy", "labels_per_user", "users", "examples")}  # fmt: skip


@torch.no_grad()
def _answers(reading: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    reading.eval()
    return reading(tokens).argmax(dim=1)


def personalise_users(
    model: SemanticModel,
    users: Sequence[UserData],
    cfg: PersonalConfig | None = None,
    *,
    store: HistoryStore | None = None,
    log: Callable[[int, dict[str, Any]], None] | None = None,
    n_examples: int = 6,
) -> PersonaliseResult:
    """Personal readings for ``users`` on the trained ``model`` (left unchanged), and one
    shared reading fitted on all users' labels together; accuracies on held-out labels.

    ``store``: each user's history is written to it (:func:`personalise_user`).
    """
    cfg = cfg or PersonalConfig()
    if not users:
        raise arg_error("users", "give at least one user")
    fits = {u.name: personalise_user(model, u, cfg, store=store, log=log) for u in users}
    shared = PersonalReading(model, cfg.calibration_init)
    fit_reading(shared, torch.cat([_pad(u.train_tokens, users) for u in users]),
                torch.cat([u.train_labels for u in users]), cfg)  # fmt: skip
    shared_acc: dict[str, float] = {}
    hits, total = 0, 0
    personal_disputed: dict[str, float] = {}
    for u in users:
        shared_acc[u.name] = reading_accuracy(shared, u.test_tokens, u.test_labels)
        d = u.disputed
        pred = _answers(shared, u.test_tokens[d])
        hits += int((pred == u.test_labels[d]).sum())
        total += int(d.sum())
        personal_disputed[u.name] = reading_accuracy(
            fits[u.name].reading, u.test_tokens[d], u.test_labels[d]
        )
    shared_acc["disputed"] = hits / total if total else float("nan")
    shared_acc["mean"] = sum(shared_acc[u.name] for u in users) / len(users)
    users_out = []
    for u in users:
        f = fits[u.name]
        users_out.append({
            "user": u.name, "world": u.world, "labels": len(u.train_labels),
            "accuracy": f.accuracy, "base_accuracy": f.base_accuracy,
            "disputed_accuracy": personal_disputed[u.name],
            "shared_accuracy": shared_acc[u.name], "theta": f.theta, "events": len(f.events),
            "calibration": [[round(float(x), 4) for x in row]
                            for row in f.reading.calibration.detach()],
            "slice_weights": [round(float(x), 4) for x in f.reading.slice_weights.detach()],
        })  # fmt: skip
    return PersonaliseResult(
        per_user_accuracy={u.name: fits[u.name].accuracy for u in users},
        personal_disputed_accuracy=personal_disputed,
        base_accuracy={u.name: fits[u.name].base_accuracy for u in users},
        shared_accuracy=shared_acc,
        labels_per_user={u.name: len(u.train_labels) for u in users},
        users=users_out,
        examples=_examples(users, fits, shared, n_examples),
        fits=fits,
        shared=shared,
    )


def _pad(tokens: torch.Tensor, users: Sequence[UserData]) -> torch.Tensor:
    """``tokens`` right-padded to the longest labelled query of ``users``."""
    width = max(u.train_tokens.shape[1] for u in users)
    return torch.nn.functional.pad(tokens, (0, width - tokens.shape[1]))


def _examples(
    users: Sequence[UserData], fits: dict[str, UserFit], shared: PersonalReading, n: int
) -> list[dict[str, Any]]:
    """The first ``n`` held-out queries the personal readings answer differently."""
    first = users[0]
    answers = {u.name: _answers(fits[u.name].reading, first.test_tokens) for u in users}
    shared_ans = _answers(shared, first.test_tokens)
    rows: list[dict[str, Any]] = []
    for i in range(len(first.test_labels)):
        if len({int(a[i]) for a in answers.values()}) < 2:
            continue
        row: dict[str, Any] = {"query": first.test_queries[i] if first.test_queries else str(i)}
        for u in users:
            row[f"{u.name} answer"] = LABELS[int(answers[u.name][i])]
            row[f"{u.name} label"] = LABELS[int(u.test_labels[i])]
        row["shared answer"] = LABELS[int(shared_ans[i])]
        rows.append(row)
        if len(rows) >= n:
            break
    return rows
