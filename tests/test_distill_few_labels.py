"""The few-label options of the self-distillation loss and loop (qsem.distill).

Sharpened teacher targets, the confidence mask, the soft weight's ramp-up and the
extra labelled batch per step — each against a hand computation or a closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ATOL_F64

from qsem.distill import (
    DistillConfig,
    SelfDistiller,
    confidence_mask,
    ramp_up,
    self_distillation_loss,
    soft_target_loss,
)
from qsem.models import hard_label_loss
from qsem.runner import ConfigError

PHI_S = [[0.1, 0.2], [0.3, 0.1], [0.2, 0.1]]  # S = 3, C = 2; truth marginal (0.3, 0.4, 0.3)
PHI_S2 = [[0.4, 0.1], [0.1, 0.1], [0.2, 0.1]]
PHI_T = [[0.6, 0.25], [0.05, 0.05], [0.03, 0.02]]  # confident teacher: max marginal 0.85
PHI_T2 = [[0.2, 0.2], [0.2, 0.2], [0.1, 0.1]]  # unsure teacher: max marginal 0.4


def _phi(*rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[:, None]  # (B, L=1, S, C)


def _flat(rows: list[list[float]]) -> list[float]:
    return [x for row in rows for x in row]


def _power(p: list[float], e: float) -> list[float]:
    w = [x**e for x in p]
    return [x / sum(w) for x in w]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


@pytest.mark.parametrize(("tau", "sharpen"), [(1.0, 0.5), (2.0, 0.5), (1.0, 0.25), (2.0, 1.0)])
def test_sharpened_teacher_by_hand(tau: float, sharpen: float) -> None:
    """Teacher side φ_T^(1/(sτ)), student side φ_S^(1/τ), both renormalised; τ²·KL."""
    s, t = _phi(PHI_S, PHI_S2), _phi(PHI_T, PHI_T2)
    loss, parts = self_distillation_loss(
        s, t, torch.tensor([-1, -1]), temperature=tau, w_soft=1.0, w_hard=0.0, sharpen=sharpen
    )
    kl = [
        _kl(_power(_flat(tt), 1 / (sharpen * tau)), _power(_flat(ss), 1 / tau))
        for ss, tt in ((PHI_S, PHI_T), (PHI_S2, PHI_T2))
    ]
    assert float(loss) == pytest.approx(tau * tau * sum(kl) / 2, abs=ATOL_F64)
    assert parts["confident"] == 1.0


def test_confidence_mask_keeps_only_confident_positions_and_divides_by_all() -> None:
    t = _phi(PHI_T, PHI_T2)
    assert confidence_mask(t, 0.8).tolist() == [1.0, 0.0]  # marginals max 0.85 and 0.4
    assert confidence_mask(t, 0.0).tolist() == [1.0, 1.0]
    assert confidence_mask(t, 0.9).tolist() == [0.0, 0.0]
    s = _phi(PHI_S, PHI_S2)
    loss, parts = self_distillation_loss(
        s, t, torch.tensor([-1, -1]), temperature=1.0, w_hard=0.0, threshold=0.8
    )
    assert float(loss) == pytest.approx(_kl(_flat(PHI_T), _flat(PHI_S)) / 2, abs=ATOL_F64)
    assert parts["confident"] == 0.5
    none, parts = self_distillation_loss(
        s, t, torch.tensor([-1, -1]), temperature=1.0, w_hard=0.0, threshold=0.9
    )
    assert float(none) == 0.0 and parts["confident"] == 0.0


def test_weighted_soft_target_loss_by_hand() -> None:
    s = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([0.25, 2.0], dtype=torch.float64)
    p0 = [1 / (1 + math.e), math.e / (1 + math.e)]
    q1 = [math.e / (math.e + 1 / math.e), (1 / math.e) / (math.e + 1 / math.e)]
    want = (0.25 * _kl(p0, [0.5, 0.5]) + 2.0 * _kl([0.5, 0.5], q1)) / 2
    assert float(soft_target_loss(s, t, 1.0, w)) == pytest.approx(want, abs=ATOL_F64)
    ones = torch.ones(2, dtype=torch.float64)
    assert float(soft_target_loss(s, t, 3.0, ones)) == pytest.approx(
        float(soft_target_loss(s, t, 3.0)), abs=ATOL_F64
    )
    with pytest.raises(ValueError, match="'weights'"):
        soft_target_loss(s, t, 1.0, torch.ones(3))


def test_ramp_up_closed_form() -> None:
    assert ramp_up(0, 100) == pytest.approx(math.exp(-5.0))
    assert ramp_up(50, 100) == pytest.approx(math.exp(-5.0 * 0.25))
    assert ramp_up(100, 100) == ramp_up(500, 100) == ramp_up(0, 0) == 1.0
    values = [ramp_up(t, 20) for t in range(21)]
    assert values == sorted(values)  # rises monotonically to 1


def test_new_config_keys_are_checked() -> None:
    for kwargs, key in [
        ({"sharpen": 0.0}, "sharpen"),
        ({"sharpen": 1.5}, "sharpen"),
        ({"soft_threshold": 1.2}, "soft_threshold"),
        ({"ramp_steps": -1}, "ramp_steps"),
        ({"labelled_batch": -2}, "labelled_batch"),
    ]:
        with pytest.raises(ConfigError, match=f"'{key}'"):
            DistillConfig(**kwargs)
    with pytest.raises(ValueError, match="'sharpen'"):
        self_distillation_loss(_phi(PHI_S), _phi(PHI_T), torch.tensor([0]), sharpen=2.0)
    with pytest.raises(ValueError, match="'correction'"):
        SelfDistiller(_model(), DistillConfig(labelled_batch=4), probe_tokens=torch.zeros(1, 1))


# --------------------------------------------------------------------------------------
# in the loop
# --------------------------------------------------------------------------------------


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Embedding(8, 6), torch.nn.Softmax(-1), torch.nn.Unflatten(-1, (3, 2))
    ).double()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(1, 8, (24, 1), generator=g)
    labels = torch.where(torch.rand(24, generator=g) < 0.3, tokens[:, -1] % 3, -1)
    return tokens, labels


def _loop(cfg: DistillConfig) -> SelfDistiller:
    model = _model()
    tokens, labels = _data()
    return SelfDistiller(
        model, cfg, probe_tokens=tokens[:4],
        optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
        correction=(tokens, labels), seed=1,
    )  # fmt: skip


def _hard(model: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        logp = model(tokens)[:, -1].sum(-1).log()
        return float(hard_label_loss(logp, labels))


def test_labelled_batch_adds_the_hard_loss_of_a_drawn_labelled_batch() -> None:
    """The step's loss = CE(batch) + CE(k labelled queries drawn with the loop's generator)."""
    cfg = DistillConfig(detectors=("l1",), trigger=(), w_soft=0.0, labelled_batch=5)
    loop = _loop(cfg)
    tokens, labels = _data()
    batch = slice(0, 6)
    gen = torch.Generator().manual_seed(1 + 12345)  # the loop's generator (seed + 12345)
    labelled = torch.nonzero(labels >= 0).flatten()
    drawn = labelled[torch.randint(len(labelled), (5,), generator=gen)]
    want = _hard(loop.model, tokens[batch], labels[batch])
    want += _hard(loop.model, tokens[drawn], labels[drawn])
    got = loop.step(tokens[batch], labels[batch])
    assert got == pytest.approx(want, abs=1e-12)
    plain = _loop(DistillConfig(detectors=("l1",), trigger=(), w_soft=0.0))
    assert plain.step(tokens[batch], labels[batch]) == pytest.approx(
        _hard(_model(), tokens[batch], labels[batch]), abs=1e-12
    )


def test_ramp_scales_the_soft_term_in_the_loop() -> None:
    """The step's loss is ramp_up(t, R) · w_soft · (the soft part) + (the hard part)."""
    loop = _loop(DistillConfig(detectors=("l1",), trigger=(), w_hard=1.0, w_soft=2.0,
                               ramp_steps=10, ema_decay=0.5))  # fmt: skip
    tokens, labels = _data()
    for t in range(12):
        j = 6 * (t % 4)
        loss = loop.step(tokens[j : j + 6], labels[j : j + 6])
        soft, hard = loop.last_parts["soft"], loop.last_parts["hard"]
        assert loss == pytest.approx(2.0 * ramp_up(t, 10) * soft + hard, rel=1e-9, abs=1e-15)
        if t >= 2:
            assert soft > 0  # the teacher has moved away from the student
