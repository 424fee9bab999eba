"""Task families with ground-truth transitions, for scoring emergence detectors across tasks.

Every family hands :func:`qsem.narrow.emergence_train.train_mlp` two batches:

- ``eval_batch(per_task, members, gen)``: ``per_task`` samples of every task,
  task-major, ``(E, T·per_task, in)`` inputs and ``(E, T·per_task)`` labels
  (the fixed evaluation set whose per-task losses are the ground truth, and the
  fixed probe batch of the detector signals);
- ``train_batch(per_task, members, gen)``: one training step's batch, same shapes.

The families (``make_family(cfg)`` builds one from ``cfg.family``):

* ``"cmsp"`` — :class:`CMSPFamily`: compositional multitask sparse parity
  (:class:`~qsem.narrow.cmsp.CMSP`, atoms + composite), every task equally often;
  vary ``n_atoms``, ``k``, ``n_task`` (irrelevant bits = ``n_task − n_atoms·k``),
  width and learning rate through the config.
* ``"msp"`` — :class:`PowerLawParity`: multitask sparse parity, ``n_atoms``
  atomic tasks only, task ``i`` drawn with probability ``p_i ∝ (i + 1)^−α``
  (the quantization model of neural scaling, Michaud et al. 2023): frequent
  tasks are learned first, rare ones later, each in its own drop.
* ``"grok"`` — :class:`ModularAddition`: ``(a + b) mod p`` from one-hot ``a``,
  ``b``; a fixed ``train_frac`` of the ``p²`` pairs is the training set, the rest
  the test set; tasks ``("train", "test")``. With weight decay the test loss falls
  long after the training loss (grokking, Power et al. 2022); only ``"test"`` is
  scored (``scored_tasks``).
* ``"null"`` — :class:`CMSPFamily` with ``null=True``: labels are fresh fair coins,
  independent of the inputs, so no task can be learned (loss stays ≈ 1 bit) and
  every detector event is a false alarm.

Onset rule (all families, :func:`qsem.narrow.transitions.find_transition`): a
scored task's transition is learned at the first step with loss < ``low`` bits
(0.1) and starts at the last step before it with loss > ``high`` bits (0.9), or,
with ``onset > 0``, at the onset of the drop from the plateau.

>>> fam = PowerLawParity(CMSP(4, 16, 4, 3), alpha=1.0)
>>> [round(p, 3) for p in fam.frequencies.tolist()]
[0.48, 0.24, 0.16, 0.12]
>>> x, y = fam.train_batch(10, 2, make_generator(0))
>>> x.shape, y.shape
(torch.Size([2, 40, 20]), torch.Size([2, 40]))
"""

from __future__ import annotations

from typing import Any

import torch

from qsem.checks import check_int, check_probability
from qsem.circuits.errors import arg_error

from .cmsp import CMSP, make_generator

__all__ = [
    "FAMILY_NAMES",
    "CMSPFamily",
    "ModularAddition",
    "PowerLawParity",
    "ensemble_batch",
    "make_family",
]

#: the names ``cfg.family`` may take
FAMILY_NAMES = ("cmsp", "msp", "grok", "null")


def ensemble_batch(
    cmsp: CMSP, per_task: int, members: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E, T*per_task, in)`` inputs and ``(E, T*per_task)`` labels of every task, task-major."""
    x, y, _ = cmsp.sample_mixture(cmsp.tasks, per_task * members, gen)
    t = len(cmsp.tasks)
    x = x.view(t, members, per_task, -1).transpose(0, 1).reshape(members, t * per_task, -1)
    y = y.view(t, members, per_task).transpose(0, 1).reshape(members, t * per_task)
    return x, y


class CMSPFamily:
    """CMSP, every task equally often; ``null=True`` replaces every label by a fair coin."""

    n_classes = 2

    def __init__(self, cmsp: CMSP, *, null: bool = False) -> None:
        self.cmsp = cmsp
        self.null = bool(null)
        self.tasks: list[Any] = list(cmsp.tasks)
        self.scored_tasks = list(range(len(self.tasks)))

    @property
    def input_dim(self) -> int:
        return self.cmsp.input_dim

    def _labels(self, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if not self.null:
            return y
        return torch.randint(0, 2, y.shape, generator=gen, device=y.device)

    def eval_batch(
        self, per_task: int, members: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ensemble_batch(self.cmsp, per_task, members, gen)
        return x, self._labels(y, gen)

    def train_batch(
        self, per_task: int, members: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.eval_batch(per_task, members, gen)


class PowerLawParity(CMSPFamily):
    """Multitask sparse parity: CMSP's atoms alone, task ``i`` drawn with ``p_i ∝ (i+1)^−α``.

    A training batch holds ``T·per_task`` samples per member, each of a task drawn
    independently from ``p``; the evaluation set keeps ``per_task`` of every task.
    """

    def __init__(self, cmsp: CMSP, alpha: float) -> None:
        atoms = CMSP(cmsp.n_control, cmsp.n_task, cmsp.n_atoms, cmsp.k,
                     tasks=[(i,) for i in range(cmsp.n_atoms)])  # fmt: skip
        super().__init__(atoms)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise arg_error("alpha", f"must be a number >= 0, got {alpha!r}")
        w = torch.arange(1, atoms.n_atoms + 1, dtype=torch.float64) ** -float(alpha)
        self.frequencies = w / w.sum()
        mask = torch.zeros(atoms.n_atoms, atoms.n_task)
        for i in range(atoms.n_atoms):
            mask[i, atoms.atom_bits(i)] = 1
        self._mask = mask

    def train_batch(
        self, per_task: int, members: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cmsp
        n = per_task * len(self.tasks) * members
        dev = gen.device
        task = torch.multinomial(self.frequencies.to(dev), n, replacement=True, generator=gen)
        bits = torch.randint(0, 2, (n, c.n_task), generator=gen, device=dev)
        y = (bits * self._mask.to(dev)[task]).sum(1).long().remainder(2)
        control = torch.zeros(n, c.n_control, device=dev)
        control[torch.arange(n, device=dev), task] = 1
        x = torch.cat([control, bits.float()], dim=1)
        return x.view(members, n // members, -1), y.view(members, n // members)


class ModularAddition:
    """``(a + b) mod p`` from one-hot ``a``, ``b`` (input ``2p``, ``p`` classes), train / test.

    The split is fixed by ``split_seed``: ``round(train_frac · p²)`` pairs train.
    ``eval_batch`` takes ``per_task`` pairs of each split (drawn with replacement
    from ``gen``); ``train_batch`` ``2·per_task`` training pairs per member, or the
    whole training set when ``full_batch``.
    """

    def __init__(
        self, p: int, train_frac: float, *, split_seed: int = 0, full_batch: bool = True
    ) -> None:
        self.p = check_int("p", p, 2)
        frac = check_probability("train_frac", train_frac)
        perm = torch.randperm(self.p * self.p, generator=make_generator(split_seed))
        n_train = round(frac * self.p * self.p)
        if not 0 < n_train < self.p * self.p:
            raise arg_error("train_frac", f"leaves an empty train or test split, got {frac}")
        self.splits = (perm[:n_train], perm[n_train:])
        self.full_batch = bool(full_batch)
        self.tasks: list[Any] = ["train", "test"]
        self.scored_tasks = [1]
        self.n_classes = self.p

    @property
    def input_dim(self) -> int:
        return 2 * self.p

    def encode(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs ``(N, 2p)`` and labels ``(N,)`` of pair indices ``a·p + b``."""
        a, b = pairs // self.p, pairs % self.p
        x = torch.cat(
            [torch.nn.functional.one_hot(a, self.p), torch.nn.functional.one_hot(b, self.p)], -1
        )
        return x.float(), (a + b) % self.p

    def _draw(self, split: int, n: int, gen: torch.Generator) -> torch.Tensor:
        s = self.splits[split]
        return s[torch.randint(0, len(s), (n,), generator=gen)]

    def eval_batch(
        self, per_task: int, members: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = torch.stack(
            [torch.cat([self._draw(0, per_task, gen), self._draw(1, per_task, gen)])
             for _ in range(members)]
        )  # fmt: skip
        x, y = self.encode(pairs.reshape(-1))
        return x.view(members, 2 * per_task, -1), y.view(members, -1)

    def train_batch(
        self, per_task: int, members: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.full_batch:
            x, y = self.encode(self.splits[0])
            return x.expand(members, -1, -1), y.expand(members, -1)
        x, y = self.encode(self._draw(0, 2 * per_task * members, gen))
        return x.view(members, 2 * per_task, -1), y.view(members, -1)


def make_family(cfg: Any) -> CMSPFamily | ModularAddition:
    """The family of ``cfg.family`` (default ``"cmsp"``) from the config's keys.

    Keys read: ``n_control``, ``n_task``, ``n_atoms``, ``k`` (cmsp, msp, null),
    ``alpha`` (msp), ``modulus``, ``train_frac``, ``split_seed`` (grok).
    """
    name = getattr(cfg, "family", "cmsp")
    if name not in FAMILY_NAMES:
        raise arg_error("family", f"one of {list(FAMILY_NAMES)}, got {name!r}")
    if name == "grok":
        return ModularAddition(cfg.modulus, cfg.train_frac, split_seed=cfg.split_seed)
    cmsp = CMSP(cfg.n_control, cfg.n_task, cfg.n_atoms, cfg.k)
    if name == "msp":
        return PowerLawParity(cmsp, cfg.alpha)
    return CMSPFamily(cmsp, null=name == "null")
