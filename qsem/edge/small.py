"""A small model per user on the edge: narrowed, then compressed, measured against the full one.

From a user's :class:`~qsem.edge.PersonalReading` of the shared model:

1. **full** — the shared model and the user's personal parameters;
2. **narrowed** — the composer MLP (almost all parameters) pruned to ``hidden``
   neurons by attribution on the user's own labels through the user's calibration
   (:func:`qsem.narrow.attribution_scores`, :func:`qsem.narrow.keep_masks`,
   :func:`qsem.narrow.prune_neurons`), recovered by distillation from the full
   model's reading (:func:`qsem.distill.losses.soft_target_loss`, temperature ``T``)
   on unlabelled queries with the masks kept (:func:`qsem.narrow.train_steps`), then
   *materialised*: a model with ``hidden`` neurons really is built (parameters, bytes and
   latency drop, not only a mask), and the personal parameters are refitted on the
   user's labels;
3. **compressed** — the narrowed model keeping the ``top_p`` slices of heaviest user
   weight ``α^(u)`` (the Π_edge mix over slices renormalised) and the composer's output
   layer ``W (O², hidden)`` replaced by its rank-``rank`` truncated SVD
   (:func:`qsem.tensors.truncated_svd`, ``W ≈ U_r diag(s_r) V_r^T`` as two linear
   maps); personal parameters refitted.

Each row: parameters, bytes of the saved state (``torch.save`` of model and
personal state), the median single-thread CPU latency of one query over
``latency_queries`` queries, accuracy on the user's held-out labels and the mean
total-variation distance of the user's answer distribution ``p^(u)`` to the full
model's (``answer_tv_to_full``).
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from qsem.checks import check_int, check_real
from qsem.distill.losses import soft_target_loss
from qsem.errors import ConfigError
from qsem.models import SemanticModel
from qsem.narrow import attribution_scores, keep_masks, prune_neurons, train_steps
from qsem.narrow.mlp import composer_group
from qsem.tensors import truncated_svd
from qsem.threads import torch_threads

from .personal import PersonalConfig, PersonalReading, UserData, fit_reading, reading_accuracy

__all__ = ["EdgeConfig", "EdgeTable", "edge_model", "latency_ms", "narrow_composer"]


@dataclass(frozen=True)
class EdgeConfig:
    """How the edge models are made (the ``edge.*`` keys of ``qsem run personalise``)."""

    #: composer hidden neurons the narrowed model keeps
    hidden: int = 8
    #: distillation steps that recover the pruned model (masks kept)
    recovery_steps: int = 150
    #: Adam learning rate of the recovery
    recovery_lr: float = 0.01
    #: unlabelled queries per recovery step
    batch: int = 64
    #: distillation temperature of the recovery
    temperature: float = 2.0
    #: slices the compressed model keeps (the heaviest by the user's weights)
    top_p: int = 1
    #: rank of the truncated SVD of the composer's output layer in the compressed model
    rank: int = 4
    #: single-query forward passes timed per model (the median is reported)
    latency_queries: int = 1000

    def __post_init__(self) -> None:
        for key in ("hidden", "batch", "top_p", "rank", "latency_queries"):
            check_int(key, getattr(self, key), 1, config=True)
        check_int("recovery_steps", self.recovery_steps, 0, config=True)
        for key in ("recovery_lr", "temperature"):
            check_real(key, getattr(self, key), minimum=0, strict=True, config=True)


@dataclass
class EdgeTable:
    """Rows of the full / narrowed / compressed comparison, and the three readings."""

    rows: list[dict[str, Any]]
    readings: dict[str, PersonalReading]
    svd_rel_error: float
    kept_slices: list[int]


def narrow_composer(model: SemanticModel, keep: torch.Tensor) -> SemanticModel:
    """A new model whose composer has only the neurons ``keep`` (bool ``(hidden,)``) of
    ``model``'s; every other parameter copied. Same outputs as ``model`` with the other
    neurons pruned (masked to zero)."""
    idx = keep.nonzero().flatten()
    small = SemanticModel(replace(model.cfg, hidden=len(idx), n_slices=model.emergence.n_slices))
    state = model.state_dict()
    for name in ("composer.net.0.weight", "composer.net.0.bias"):
        state[name] = state[name][idx].clone()
    state["composer.net.2.weight"] = state["composer.net.2.weight"][:, idx].clone()
    small.load_state_dict(state)
    return small


def _keep_slices(model: SemanticModel, kept: list[int]) -> SemanticModel:
    """A copy of ``model`` with only the slices ``kept`` (their weights renormalise by softmax)."""
    small = SemanticModel(replace(model.cfg, n_slices=len(kept)))
    state = model.state_dict()
    for i, p in enumerate(kept):
        state[f"emergence.slice_logits.{i}"] = state[f"emergence.slice_logits.{p}"]
    for key in [k for k in state if k.startswith("emergence.slice_logits.")]:
        if int(key.rsplit(".", 1)[1]) >= len(kept):
            del state[key]
    state["emergence.weight_logits"] = state["emergence.weight_logits"][kept].clone()
    state["emergence.frozen"] = state["emergence.frozen"][kept].clone()
    small.load_state_dict(state)
    return small


def _low_rank_output(model: SemanticModel, rank: int) -> float:
    """Replace the composer's output layer by its rank-``rank`` SVD (two linear maps) in place;
    returns the relative Frobenius error of the weight."""
    layer = model.composer.net[2]
    assert isinstance(layer, torch.nn.Linear)
    comp = truncated_svd(layer.weight.detach(), min(rank, *layer.weight.shape), row_axes=(0,))
    u, s, vh, _ = comp.factors
    first = torch.nn.Linear(layer.in_features, u.shape[1], bias=False)
    second = torch.nn.Linear(u.shape[1], layer.out_features)
    with torch.no_grad():
        first.weight.copy_(s[:, None] * vh)
        second.weight.copy_(u)
        second.bias.copy_(layer.bias)
    model.composer.net[2] = torch.nn.Sequential(first, second)
    return comp.rel_error


@torch.no_grad()
def latency_ms(reading: torch.nn.Module, tokens: torch.Tensor, n: int) -> float:
    """Median wall time (ms) of one single-query forward pass over ``n`` queries, one thread."""
    reading.eval()
    times = []
    with torch_threads(1):
        for i in range(n):
            q = tokens[i % len(tokens)][None]
            tick = time.perf_counter()
            reading(q)
            times.append(time.perf_counter() - tick)
    return 1e3 * statistics.median(times)


def _size(reading: PersonalReading, path: Path) -> tuple[int, int]:
    """(parameters, bytes of the saved model + personal state)."""
    torch.save({"model": reading.base.state_dict(), "personal": reading.personal_state()}, path)
    params = reading.base.num_parameters() + sum(p.numel() for p in reading.parameters())
    return params, os.path.getsize(path)


@torch.no_grad()
def _answer_tv(a: PersonalReading, b: PersonalReading, tokens: torch.Tensor) -> float:
    """Mean over queries of the total-variation distance of the two answer distributions."""
    a.eval()
    b.eval()
    pa, pb = torch.exp(a(tokens)), torch.exp(b(tokens))
    return float(0.5 * (pa - pb).abs().sum(dim=-1).mean())


def _refit(model: SemanticModel, full: PersonalReading, kept: list[int] | None, user: UserData,
           cfg: PersonalConfig) -> PersonalReading:  # fmt: skip
    reading = PersonalReading(model, cfg.calibration_init)
    state = full.personal_state()
    if kept is not None:
        state["slice_logits"] = state["slice_logits"][kept]
    reading.load_personal_state(state)
    fit_reading(reading, user.train_tokens, user.train_labels, cfg)
    return reading


def edge_model(
    full: PersonalReading,
    user: UserData,
    unlabelled: torch.Tensor,
    cfg: EdgeConfig,
    personal: PersonalConfig,
    workdir: str | os.PathLike[str],
    *,
    seed: int = 0,
) -> EdgeTable:
    """Narrow and compress ``user``'s reading ``full``; the comparison table (see the module).

    ``unlabelled``: query tokens for the recovery distillation (no labels used);
    ``workdir``: where the three saved models go (their size is the bytes column).
    """
    base = full.base
    if cfg.hidden > base.cfg.hidden:
        raise ConfigError(f"config key 'hidden': {cfg.hidden} > the model's {base.cfg.hidden}")
    if cfg.top_p > base.emergence.n_slices:
        raise ConfigError(f"config key 'top_p': {cfg.top_p} > the model's "
                          f"{base.emergence.n_slices} slices")  # fmt: skip
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    calib = full.calibration.detach()

    def user_nll(logp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = (torch.exp(logp) @ calib.T).clamp_min(1e-30)
        return torch.nn.functional.nll_loss(torch.log(p), y, reduction="sum")

    # 2. narrowed: attribution on the user's labels, prune, recover by distillation, shrink
    pruned = copy.deepcopy(base)
    pruned.eval()
    for p in pruned.parameters():
        p.requires_grad_(True)
    group = composer_group(pruned)
    scores = attribution_scores(pruned, user.train_tokens, user.train_labels, groups=[group],
                                loss_fn=user_nll)  # fmt: skip
    keep = keep_masks({"composer": scores["composer"]}, 1 - cfg.hidden / group.size)["composer"]
    masker = prune_neurons(pruned, {"composer": keep}, groups=[group])
    with torch.no_grad():
        base.eval()
        teacher = base(unlabelled)
    gen = torch.Generator().manual_seed(seed)

    def batch(_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(unlabelled), (cfg.batch,), generator=gen)
        return unlabelled[idx], teacher[idx]

    pruned.train()
    train_steps(pruned, batch, cfg.recovery_steps, lr=cfg.recovery_lr, masker=masker,
                loss_fn=lambda s, t: soft_target_loss(s, t, cfg.temperature))  # fmt: skip
    narrowed = narrow_composer(pruned, keep)
    narrowed_reading = _refit(narrowed, full, None, user, personal)

    # 3. compressed: top-P* slices by the user's weights, low-rank output layer
    w = narrowed_reading.slice_weights.detach()
    order = sorted(range(len(w)), key=lambda i: (-float(w[i]), -i))
    kept = sorted(order[: cfg.top_p])
    compressed = _keep_slices(narrowed, kept)
    rel = _low_rank_output(compressed, cfg.rank)
    compressed_reading = _refit(compressed, narrowed_reading, kept, user, personal)

    readings = {"full": full, "narrowed": narrowed_reading, "compressed": compressed_reading}
    rows = []
    for name, r in readings.items():
        params, size = _size(r, out / f"edge-{name}.pt")
        rows.append({
            "model": name, "hidden": r.base.composer.net[0].out_features,
            "slices": r.base.emergence.n_slices, "rank": cfg.rank if name == "compressed" else None,
            "parameters": params, "bytes": size,
            "latency_ms": round(latency_ms(r, user.test_tokens, cfg.latency_queries), 4),
            "accuracy": reading_accuracy(r, user.test_tokens, user.test_labels),
            "answer_tv_to_full": _answer_tv(full, r, user.test_tokens),
        })  # fmt: skip
    return EdgeTable(rows=rows, readings=readings, svd_rel_error=rel, kept_slices=kept)
