"""Generated tasks for the semantic models (three-valued Kleene queries, ...)."""

from __future__ import annotations

from .kleene import (
    KleeneDataset,
    KleeneTaskConfig,
    KnowledgeBase,
    Literal,
    Query,
    Rule,
    forward_chain,
    generate_kb,
    make_dataset,
    solve_query,
    tokenize,
)

__all__ = [
    "KleeneDataset",
    "KleeneTaskConfig",
    "KnowledgeBase",
    "Literal",
    "Query",
    "Rule",
    "forward_chain",
    "generate_kb",
    "make_dataset",
    "solve_query",
    "tokenize",
]
