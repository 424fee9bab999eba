"""Task families with ground truth (qsem.narrow.families) and their onset rule.

References: labels recomputed here bit by bit from the inputs (parities, a + b mod p
decoded from the one-hots); empirical task frequencies against the power law;
tiny seeded training runs whose per-task losses the onset rule is applied to.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemValueError
from qsem.narrow.cmsp import CMSP, make_generator
from qsem.narrow.emergence_train import train_mlp
from qsem.narrow.families import CMSPFamily, ModularAddition, PowerLawParity, make_family
from qsem.narrow.transitions import transitions_of


def tiny(**over):
    base = dict(
        n_control=3, n_task=8, n_atoms=3, k=2, widths=(32, 32), lr=3e-3, adam_eps=1e-5,
        per_task=64, steps=400, eval_per_task=64, probe_per_task=8, ema_beta=0.9, lag=10,
        slow_beta=0.95, slow_lag=20, log_every=100, family="cmsp", alpha=1.5,
        modulus=7, train_frac=0.5, split_seed=0, weight_decay=0.0,
    )  # fmt: skip
    return SimpleNamespace(**{**base, **over})


def test_power_law_parity_labels_and_frequencies():
    fam = PowerLawParity(CMSP(4, 14, 4, 3), alpha=1.0)
    x, y = fam.train_batch(2500, 2, make_generator(1))
    x, y = x.reshape(-1, 18), y.reshape(-1)
    control, bits = x[:, :4], x[:, 4:].long()
    assert torch.all(control.sum(1) == 1)
    task = control.argmax(1)
    for i in range(4):
        rows = task == i
        ref = bits[rows][:, 3 * i : 3 * i + 3].sum(1) % 2  # atom i owns bits 3i..3i+2
        assert torch.equal(y[rows], ref)
    freq = torch.bincount(task, minlength=4).double() / len(task)
    p = fam.frequencies
    assert torch.allclose(freq, p, atol=4 * torch.sqrt(p * (1 - p) / len(task)).max().item())


def test_modular_addition_labels_and_split():
    fam = ModularAddition(7, 0.5, split_seed=3)
    train, test = fam.splits
    assert len(set(train.tolist()) | set(test.tolist())) == 49
    assert not set(train.tolist()) & set(test.tolist())
    x, y = fam.eval_batch(20, 2, make_generator(0))
    a, b = x[..., :7].argmax(-1), x[..., 7:].argmax(-1)
    assert torch.equal(y, (a + b) % 7)
    pairs = (a * 7 + b)[0]
    assert set(pairs[:20].tolist()) <= set(train.tolist())
    assert set(pairs[20:].tolist()) <= set(test.tolist())
    xt, yt = fam.train_batch(5, 2, make_generator(0))
    assert xt.shape == (2, len(train), 14)  # full batch: the whole training split
    assert torch.equal(yt[1], fam.encode(train)[1])


def test_null_labels_are_independent_of_the_inputs():
    cmsp = CMSP(3, 8, 3, 2)
    x, y = CMSPFamily(cmsp, null=True).eval_batch(2000, 1, make_generator(0))
    x2, y2 = CMSPFamily(cmsp).eval_batch(2000, 1, make_generator(0))
    assert torch.equal(x, x2)  # same inputs; the true labels agree with the null ones
    agree = (y == y2).double().mean().item()  # by chance only: 1/2 ± 3σ
    assert abs(agree - 0.5) < 3 * 0.5 / np.sqrt(y.numel())


def test_make_family_and_bad_input():
    assert isinstance(make_family(tiny(family="msp")), PowerLawParity)
    assert isinstance(make_family(tiny(family="grok")), ModularAddition)
    assert make_family(tiny(family="null")).null
    with pytest.raises(QsemValueError, match="argument 'family'"):
        make_family(tiny(family="nope"))
    with pytest.raises(QsemValueError, match="argument 'alpha'"):
        PowerLawParity(CMSP(3, 8, 3, 2), alpha=-1.0)
    with pytest.raises(QsemValueError, match="argument 'train_frac'"):
        ModularAddition(7, 0.0)


def test_power_law_tasks_emerge_in_frequency_order_and_null_has_none():
    cfg = tiny(family="msp", steps=600)
    losses = train_mlp(cfg, [0, 1], tag="t")["losses"].numpy()
    for e in range(2):
        found = transitions_of(losses[:, e], onset=0)
        assert all(t is not None for t in found), found
        # the planted order: the most frequent task is learned before the rarest
        assert found[0].learned < found[-1].learned
        for j, t in enumerate(found):  # the rule's steps are where the loss says
            assert losses[t.start, e, j] > 0.9 and losses[t.learned, e, j] < 0.1
    null = train_mlp(tiny(family="null", steps=600), [0, 1], tag="n")["losses"].numpy()
    assert all(t is None for e in range(2) for t in transitions_of(null[:, e]))
    assert np.all(null[-100:] > 0.8)  # the loss stays near 1 bit: nothing to learn


def test_grokking_family_trains_with_weight_decay_and_logs_both_splits():
    cfg = tiny(family="grok", widths=(32,), lr=1e-2, weight_decay=0.1, steps=300)
    out = train_mlp(cfg, [0], tag="g")
    plain = train_mlp(tiny(family="grok", widths=(32,), lr=1e-2, steps=300), [0], tag="g")
    assert not torch.equal(out["losses"], plain["losses"])  # weight decay took effect
    losses = out["losses"].numpy()[:, 0]
    assert losses.shape == (301, 2)
    assert losses[-1, 0] < 0.1 < losses[0, 0]  # the training split is memorised
    assert out["ema_snapshots"].shape[-1] == 7  # p classes


def test_docstring_examples_run():
    import doctest

    import qsem.narrow.families as mod

    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
