"""Personal readings, the two-world scenario and the edge model, on a small trained model."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemValueError
from qsem.edge import (
    EdgeConfig,
    HistoryStore,
    PersonalConfig,
    PersonalReading,
    edge_model,
    fit_reading,
    learn_theta,
    narrow_composer,
    personalise_users,
    simulate_users,
    world_labels,
)
from qsem.edge.small import _keep_slices, _low_rank_output
from qsem.experiments.kleene import KleeneConfig, make_data, model_config, train_epoch
from qsem.models import SemanticModel
from qsem.narrow import prune_neurons
from qsem.narrow.mlp import composer_group
from qsem.runner import ConfigError
from qsem.tasks.kleene import KleeneDataset
from qsem.training import make_optimizer

CFG = replace(KleeneConfig(), n_train_kbs=12, n_test_kbs=10, queries_per_kb=12, n_slices=2,
              epochs=3)  # fmt: skip
FAST = PersonalConfig(steps=40, steps_per_label=1, probe_size=8)
#: calibration only: a user whose open-world reading IS the model's is served exactly
CALIB = replace(FAST, slice_weights=False)


@pytest.fixture(scope="module")
def trained() -> tuple[SemanticModel, KleeneDataset, KleeneDataset]:
    train, test = make_data(CFG)
    torch.manual_seed(0)
    model = SemanticModel(model_config(CFG))
    opt, sched = make_optimizer(model, CFG.lr, schedule="cosine", steps=CFG.epochs)
    gen = torch.Generator().manual_seed(0)
    for _ in range(CFG.epochs):
        train_epoch(model, opt, train, 32, gen)
        sched.step()
    model.eval()
    return model, train, test


def _as_model_reads(model: SemanticModel, data: KleeneDataset) -> KleeneDataset:
    """``data`` relabelled with the model's own answers: a world the model can serve exactly."""
    with torch.no_grad():
        pred = model(data.tokens).argmax(dim=1)
    return replace(data, labels=pred)


def test_learn_theta_is_median_plus_k_mad() -> None:
    x = [0.3, 1.0, 0.2, 5.0, 0.25, 0.4, 0.31]
    med = statistics.median(x)
    mad = statistics.median(abs(v - med) for v in x)
    assert learn_theta(x, 2.5) == pytest.approx(med + 2.5 * 1.482602218505602 * mad, rel=1e-12)
    with pytest.raises(QsemValueError, match="argument 'dphi'"):
        learn_theta([], 3.0)


def test_world_labels() -> None:
    y = torch.tensor([0, 1, 2, 2, 0])
    assert world_labels(y, "open").tolist() == [0, 1, 2, 2, 0]
    assert world_labels(y, "closed").tolist() == [0, 1, 1, 1, 0]
    with pytest.raises(QsemValueError, match="argument 'world'"):
        world_labels(y, "flat")


def test_reading_starts_as_the_base_and_maps_like_its_formula(trained) -> None:
    model, _, test = trained
    tokens = test.tokens[:20]
    reading = PersonalReading(model, calibration_init=60.0)  # M = I to float precision
    with torch.no_grad():
        assert torch.allclose(reading(tokens), model(tokens), atol=1e-5)
        reading.calib_logits.copy_(torch.randn(3, 3))
        logp, phi = reading.read(tokens)
        inter = model.intermediates(tokens)
    m = torch.softmax(reading.calib_logits.detach(), dim=0)
    assert torch.allclose(m.sum(0), torch.ones(3, dtype=m.dtype))
    p = torch.exp(inter["logp"]).to(torch.float64)
    ref = np.zeros((20, 3))  # p^(u)(y) = Σ_k M[y, k] p(k), by loops
    for b in range(20):
        for y in range(3):
            ref[b, y] = sum(float(m[y, k]) * float(p[b, k]) for k in range(3))
    assert np.allclose(torch.exp(logp).numpy(), ref, atol=1e-5)
    assert np.allclose(phi.sum(dim=(1, 2)).numpy(), 1.0, atol=1e-5)


def test_simulated_users_split_and_labels(trained) -> None:
    _, _, test = trained
    a, b = simulate_users(test, 20, seed=3)
    assert (a.world, b.world) == ("open", "closed") and len(a.train_labels) == 20
    assert torch.equal(a.test_tokens, b.test_tokens)
    assert torch.equal(a.disputed, a.test_labels == 2) and not bool((b.test_labels == 2).any())
    held = {tuple(t.tolist()) for t in a.test_tokens}
    assert len(a.test_queries) == len(a.test_labels)
    # labelled and held-out queries are different queries of the pool
    assert set(a.train_queries).isdisjoint(a.test_queries)
    assert held  # non-empty
    with pytest.raises(QsemValueError, match="argument 'n_labels'"):
        simulate_users(test, 0, seed=0)


def test_personal_readings_serve_both_worlds_where_one_cannot(trained, tmp_path: Path) -> None:
    """Users whose open-world reading is the model's own answers: the closed-world user is
    served by the calibration alone; a shared reading cannot serve both on the disputed."""
    model, _, test = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    users = simulate_users(_as_model_reads(model, test), 30, seed=1)
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        res = personalise_users(model, users, CALIB, store=store)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    open_, closed = users
    assert res.per_user_accuracy[open_.name] >= 0.95
    assert res.per_user_accuracy[closed.name] >= 0.95
    assert res.shared_accuracy["disputed"] <= 0.6
    assert res.labels_per_user == {open_.name: 30, closed.name: 30}
    m = res.fits[closed.name].reading.calibration.detach()
    assert float(m[1, 2]) > float(m[2, 2])  # the closed-world user reads U as F
    assert res.examples and all(
        e[f"{open_.name} answer"] != e[f"{closed.name} answer"] for e in res.examples
    )
    with HistoryStore(path) as store:
        assert store.users() == sorted(u.name for u in users)
        for u in users:
            fit = res.fits[u.name]
            steps = store.steps(u.name)
            assert [s.label for s in steps] == u.train_labels.tolist()
            assert [s.dphi for s in steps[1:]] == pytest.approx(fit.dphi)
            assert store.theta(u.name) == pytest.approx(fit.theta)
            assert [e.step for e in store.events(u.name)] == [e["step"] for e in fit.events]
            again = PersonalReading(model)
            again.load_personal_state(store.params(u.name))
            with torch.no_grad():
                assert torch.equal(again(u.test_tokens), fit.reading(u.test_tokens))


def test_a_single_label_has_no_theta_and_no_events(trained, tmp_path: Path) -> None:
    """One label gives no Δφ: θ^(u) is None (not an infinite threshold), no detector runs,
    and the store holds no θ^(u) for the user."""
    model, _, test = trained
    users = simulate_users(test, 1, seed=2)
    with HistoryStore(tmp_path / "one.sqlite", writable=True) as store:
        res = personalise_users(model, users, FAST, store=store)
        for u in users:
            fit = res.fits[u.name]
            assert (fit.theta, fit.dphi, fit.events) == (None, [], [])
            assert store.theta(u.name) is None and store.events(u.name) == []


def test_narrow_composer_equals_the_masked_model(trained) -> None:
    model, _, test = trained
    keep = torch.zeros(model.cfg.hidden, dtype=torch.bool)
    keep[[1, 4, 5, 9, 20]] = True
    masked = SemanticModel(model.cfg)
    masked.load_state_dict(model.state_dict())
    prune_neurons(masked, {"composer": keep}, groups=[composer_group(masked)])
    small = narrow_composer(model, keep)
    assert small.composer.net[0].out_features == 5
    with torch.no_grad():
        assert torch.allclose(small(test.tokens), masked(test.tokens), atol=1e-6)


def test_low_rank_and_slice_selection(trained) -> None:
    model, _, test = trained
    full = SemanticModel(model.cfg)
    full.load_state_dict(model.state_dict())
    w = full.composer.net[2].weight.detach().numpy().astype(np.float64)
    s = np.linalg.svd(w, compute_uv=False)
    rank = min(w.shape)
    assert _low_rank_output(full, rank) < 1e-5  # full rank: the same map
    with torch.no_grad():
        assert torch.allclose(full(test.tokens), model(test.tokens), atol=1e-4)
    low = SemanticModel(model.cfg)
    low.load_state_dict(model.state_dict())
    err = _low_rank_output(low, 2)
    assert err == pytest.approx(np.sqrt((s[2:] ** 2).sum() / (s**2).sum()), rel=1e-4)
    one = _keep_slices(model, [1])
    with torch.no_grad():  # one slice kept: Ψ mixes to that slice alone
        ref = model.emergence(torch.full((1, 1, 3, 2), 1 / 6))[..., 1]
        got = one.emergence.mix(one.emergence(torch.full((1, 1, 3, 2), 1 / 6)))
    assert torch.allclose(got, ref, atol=1e-6)


def test_edge_model_table(trained, tmp_path: Path) -> None:
    model, train, test = trained
    users = simulate_users(_as_model_reads(model, test), 20, seed=2)
    fast = replace(FAST, steps=10)
    reading = PersonalReading(model)
    fit_reading(reading, users[1].train_tokens, users[1].train_labels, fast)
    cfg = EdgeConfig(hidden=6, recovery_steps=5, batch=16, rank=3, latency_queries=5)
    table = edge_model(reading, users[1], train.tokens[:64], cfg, fast, tmp_path)
    rows = {r["model"]: r for r in table.rows}
    assert list(rows) == ["full", "narrowed", "compressed"]
    assert rows["full"]["parameters"] > rows["narrowed"]["parameters"] > rows["compressed"][
        "parameters"]  # fmt: skip
    assert rows["full"]["bytes"] > rows["compressed"]["bytes"]
    assert rows["narrowed"]["hidden"] == 6 and rows["compressed"]["slices"] == 1
    assert rows["full"]["answer_tv_to_full"] == 0.0
    assert all(0 <= r["accuracy"] <= 1 and r["latency_ms"] > 0 for r in table.rows)
    assert (tmp_path / "edge-compressed.pt").stat().st_size == rows["compressed"]["bytes"]
    with pytest.raises(ConfigError, match="'hidden'"):
        edge_model(reading, users[1], train.tokens, replace(cfg, hidden=99), fast, tmp_path)
    with pytest.raises(ConfigError, match="'rank'"):
        EdgeConfig(rank=0)
