"""Three-class datasets for ``qsem run qutrit-vs-classical``.

Every loader returns a :class:`ThreeClassData`: standardised (or one-hot)
float features and labels in ``{0, 1, 2}``, read as the truth values
``|T>, |F>, |U>``, with a fixed train/test split that depends on ``seed`` only.

* ``kleene``: Kleene-logic queries of :mod:`qsem.tasks.kleene` (open-world
  T/F/U). The token sequence of a query (its proof chain) is one-hot encoded
  per position (14 non-padding token ids per position, padded to the longest
  possible chain ``2 + max_depth * (max_side + 1)``) and flattened. Train and
  test KBs are disjoint.
* ``iris``, ``wine``: scikit-learn's data sets, a stratified split, features
  standardised with the training statistics.
* ``cmsp_undefined``: compositional multitask sparse parity
  (:mod:`qsem.narrow.cmsp`) with an undefined class. The defined tasks are the
  single atoms: their label is the parity of the atom's task bits (0 -> T,
  1 -> F). A designated set of control patterns (by default the composite of
  atoms 0 and 1) marks a query as undefined: label U = 2 whatever the task
  bits. A third of the samples (in expectation) carry an undefined pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qsem.circuits.errors import arg_error
from qsem.narrow.cmsp import CMSP, make_generator

from .kleene import KleeneTaskConfig, make_dataset

__all__ = [
    "TASKS",
    "ThreeClassData",
    "cmsp_undefined_labels",
    "load_cmsp_undefined",
    "load_iris",
    "load_kleene",
    "load_task",
    "load_wine",
]

TASKS = ("kleene", "iris", "wine", "cmsp_undefined")


@dataclass
class ThreeClassData:
    """Features ``(N, F)`` float32 and labels ``(N,)`` int64 in ``{0, 1, 2}``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def _sklearn(name: str, seed: int, test_size: float) -> ThreeClassData:
    from sklearn.datasets import load_iris as _iris
    from sklearn.datasets import load_wine as _wine
    from sklearn.model_selection import train_test_split

    x, y = (_iris if name == "iris" else _wine)(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, random_state=int(seed) % 2**32, stratify=y
    )
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    f = torch.float32
    return ThreeClassData(
        name,
        torch.as_tensor((x_tr - mean) / std, dtype=f),
        torch.as_tensor(y_tr, dtype=torch.long),
        torch.as_tensor((x_te - mean) / std, dtype=f),
        torch.as_tensor(y_te, dtype=torch.long),
    )


def load_iris(seed: int = 0, test_size: float = 0.3) -> ThreeClassData:
    """Iris (150 x 4), stratified split seeded by ``seed``, standardised."""
    return _sklearn("iris", seed, test_size)


def load_wine(seed: int = 0, test_size: float = 0.3) -> ThreeClassData:
    """Wine (178 x 13), stratified split seeded by ``seed``, standardised."""
    return _sklearn("wine", seed, test_size)


def _one_hot_tokens(tokens: torch.Tensor, length: int, vocab: int) -> torch.Tensor:
    n, cur = tokens.shape
    if cur > length:
        raise arg_error("tokens", f"sequence length {cur} exceeds the maximum {length}")
    padded = torch.zeros(n, length, dtype=torch.long)
    padded[:, :cur] = tokens
    hot = torch.nn.functional.one_hot(padded, vocab)[..., 1:]  # drop PAD
    return hot.reshape(n, -1).to(torch.float32)


def load_kleene(
    seed: int = 0,
    n_train_kbs: int = 20,
    n_test_kbs: int = 10,
    cfg: KleeneTaskConfig | None = None,
) -> ThreeClassData:
    """Kleene queries, one-hot per token position; train and test KBs disjoint."""
    from .kleene import VOCAB_SIZE

    cfg = cfg or KleeneTaskConfig(max_depth=2, max_side=1)
    train, _ = make_dataset(cfg, n_train_kbs, seed, split="train")
    test, _ = make_dataset(cfg, n_test_kbs, seed, split="test")
    length = 2 + cfg.max_depth * (cfg.max_side + 1)
    return ThreeClassData(
        "kleene",
        _one_hot_tokens(train.tokens, length, VOCAB_SIZE),
        train.labels.clone(),
        _one_hot_tokens(test.tokens, length, VOCAB_SIZE),
        test.labels.clone(),
    )


def _cmsp(n_atoms: int, k: int) -> CMSP:
    return CMSP(n_control=n_atoms, n_task=n_atoms * k, n_atoms=n_atoms, k=k)


def cmsp_undefined_labels(
    x: torch.Tensor, n_atoms: int, k: int, undefined: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Labels of CMSP-undefined inputs ``x`` (control bits first), vectorised.

    U = 2 when the control pattern is one of ``undefined``; otherwise the parity
    of the task bits of the atoms whose control bits are set.
    """
    control = x[:, :n_atoms] > 0.5
    bits = x[:, n_atoms:].round().long()
    parity = torch.zeros(x.shape[0], dtype=torch.long)
    for a in range(n_atoms):
        atom = bits[:, a * k : (a + 1) * k].sum(dim=1)
        parity = parity + control[:, a].long() * atom
    y = parity.remainder(2)
    for task in undefined:
        pattern = torch.zeros(n_atoms, dtype=torch.bool)
        pattern[list(task)] = True
        y = torch.where((control == pattern).all(dim=1), torch.full_like(y, 2), y)
    return y


def load_cmsp_undefined(
    seed: int = 0,
    n_train: int = 600,
    n_test: int = 600,
    n_atoms: int = 3,
    k: int = 2,
    undefined: Sequence[Sequence[int]] = ((0, 1),),
    p_undefined: float = 1 / 3,
) -> ThreeClassData:
    """CMSP with an undefined class (see the module docstring); fixed seeded sets."""
    cmsp = _cmsp(n_atoms, k)
    defined = [(a,) for a in range(n_atoms)]
    undef = [cmsp.check_task(t) for t in undefined]
    if not undef:
        raise arg_error("undefined", "give at least one undefined control pattern")
    if any(len(t) == 1 for t in undef):
        raise arg_error("undefined", "single atoms are the defined tasks; use composites")
    if not 0.0 < p_undefined < 1.0:
        raise arg_error("p_undefined", f"must lie in (0, 1), got {p_undefined}")
    g = make_generator(int(seed) % 2**63)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        is_undef = torch.rand(n, generator=g) < p_undefined
        which_u = torch.randint(0, len(undef), (n,), generator=g)
        which_d = torch.randint(0, len(defined), (n,), generator=g)
        xs = torch.zeros(n, cmsp.input_dim)
        ys = torch.zeros(n, dtype=torch.long)
        tasks = [(True, i) for i in range(len(undef))] + [(False, i) for i in range(len(defined))]
        for u, i in tasks:
            sel = torch.nonzero(is_undef & (which_u == i) if u else ~is_undef & (which_d == i))
            sel = sel.flatten()
            if sel.numel() == 0:
                continue
            x, y = cmsp.sample(undef[i] if u else defined[i], int(sel.numel()), g)
            xs[sel] = x
            ys[sel] = torch.full_like(y, 2) if u else y
        return xs, ys

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    # inputs in {-1, +1}: centred for the tanh feature map
    return ThreeClassData("cmsp_undefined", 2 * x_tr - 1, y_tr, 2 * x_te - 1, y_te)


def load_task(name: str, seed: int) -> ThreeClassData:
    """The named task (one of :data:`TASKS`) with its default size."""
    if name == "kleene":
        return load_kleene(seed)
    if name == "iris":
        return load_iris(seed)
    if name == "wine":
        return load_wine(seed)
    if name == "cmsp_undefined":
        return load_cmsp_undefined(seed)
    raise arg_error("name", f"expected one of {TASKS}, got {name!r}")
