"""Compositional multitask sparse parity (CMSP), after Michaud et al.

An input is ``c`` control bits followed by ``n`` task bits. There are ``m``
atomic subtasks; atom ``i`` owns the fixed task-bit indices
``i*k, ..., i*k + k - 1`` (disjoint, consecutive). A task is a set of atoms: a
sample of task ``T`` sets the control bits of the atoms in ``T`` (all others 0),
draws fresh uniform task bits, and its label is the parity of the union of the
atoms' bits. Samples are drawn fresh every call from a seeded
:class:`torch.Generator`, on the generator's device.

>>> import torch
>>> cmsp = CMSP(n_control=4, n_task=16, n_atoms=4, k=3)
>>> g = make_generator(0)
>>> x, y = cmsp.sample((0, 2), 5, g)
>>> x.shape, y.shape
(torch.Size([5, 20]), torch.Size([5]))
>>> x[:, :4].tolist()[0]
[1.0, 0.0, 1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from qsem.checks import check_int
from qsem.circuits.errors import QsemTypeError, arg_error

__all__ = ["CMSP", "make_generator"]


def make_generator(seed: int, device: str | torch.device | None = None) -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` (default CPU) seeded with ``seed``."""
    check_int("seed", seed, 0)
    dev = torch.device("cpu" if device is None else device)
    return torch.Generator(device=dev).manual_seed(seed)


class CMSP:
    """A CMSP task family.

    Args:
        n_control: number of control bits ``c`` (>= ``n_atoms``).
        n_task: number of task bits ``n`` (>= ``n_atoms * k``).
        n_atoms: number of atomic subtasks ``m``.
        k: task bits per atom.
        tasks: the named tasks, each a sequence of atom indices; by default the
            atoms ``(0,), ..., (m-1,)`` and the composite of all atoms.
    """

    def __init__(
        self,
        n_control: int,
        n_task: int,
        n_atoms: int,
        k: int,
        tasks: Iterable[Sequence[int]] | None = None,
    ) -> None:
        self.n_control = check_int("n_control", n_control, 1)
        self.n_task = check_int("n_task", n_task, 1)
        self.n_atoms = check_int("n_atoms", n_atoms, 1)
        self.k = check_int("k", k, 1)
        if self.n_atoms > self.n_control:
            raise arg_error(
                "n_control", f"needs one control bit per atom: {n_control} < n_atoms={n_atoms}"
            )
        if self.n_atoms * self.k > self.n_task:
            raise arg_error(
                "n_task",
                f"{n_atoms} atoms of k={k} bits need {n_atoms * k} task bits, got {n_task}",
            )
        if tasks is None:
            tasks = [(i,) for i in range(self.n_atoms)] + [tuple(range(self.n_atoms))]
        self.tasks: list[tuple[int, ...]] = [self.check_task(t) for t in tasks]

    @property
    def input_dim(self) -> int:
        """``n_control + n_task``."""
        return self.n_control + self.n_task

    def atom_bits(self, atom: int) -> list[int]:
        """Task-bit indices (0-based within the task bits) of ``atom``."""
        check_int("atom", atom, 0)
        if atom >= self.n_atoms:
            raise arg_error("atom", f"must be < n_atoms={self.n_atoms}, got {atom}")
        return list(range(atom * self.k, (atom + 1) * self.k))

    def check_task(self, task: Sequence[int] | int) -> tuple[int, ...]:
        """``task`` as a sorted tuple of distinct atom indices (an int is one atom)."""
        if isinstance(task, int) and not isinstance(task, bool):
            task = (task,)
        if isinstance(task, (str, bytes)) or not isinstance(task, Iterable):
            raise arg_error("task", f"expected a sequence of atom indices, got {task!r}",
                            QsemTypeError)  # fmt: skip
        atoms = list(task)
        if not atoms:
            raise arg_error("task", "a task needs at least one atom")
        for a in atoms:
            if isinstance(a, bool) or not isinstance(a, int):
                raise arg_error("task", f"atom indices must be integers, got {a!r}", QsemTypeError)
            if not 0 <= a < self.n_atoms:
                raise arg_error("task", f"atom {a} out of range [0, {self.n_atoms})")
        if len(set(atoms)) != len(atoms):
            raise arg_error("task", f"repeated atoms in {tuple(atoms)}")
        return tuple(sorted(atoms))

    def task_bits(self, task: Sequence[int] | int) -> list[int]:
        """Task-bit indices whose parity is the label of ``task``."""
        return [b for a in self.check_task(task) for b in self.atom_bits(a)]

    def sample(
        self,
        task: Sequence[int] | int,
        batch: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` fresh samples of ``task``: inputs ``(batch, c + n)``, labels ``(batch,)``.

        The tensors live on ``generator.device``.
        """
        atoms = self.check_task(task)
        check_int("batch", batch, 1)
        if not isinstance(generator, torch.Generator):
            raise arg_error("generator", f"expected a torch.Generator, got {type(generator)}",
                            QsemTypeError)  # fmt: skip
        device = generator.device
        bits = torch.randint(0, 2, (batch, self.n_task), generator=generator, device=device)
        idx = torch.tensor(self.task_bits(atoms), device=device)
        y = bits.index_select(1, idx).sum(dim=1).remainder(2)
        control = torch.zeros(batch, self.n_control, dtype=dtype, device=device)
        control[:, list(atoms)] = 1
        x = torch.cat([control, bits.to(dtype)], dim=1)
        return x, y

    def sample_mixture(
        self,
        tasks: Sequence[Sequence[int] | int],
        per_task: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``per_task`` samples of each of ``tasks``: ``(x, y, task_index)`` concatenated."""
        if not tasks:
            raise arg_error("tasks", "give at least one task")
        xs, ys, ts = [], [], []
        for i, t in enumerate(tasks):
            x, y = self.sample(t, per_task, generator, dtype)
            xs.append(x)
            ys.append(y)
            ts.append(torch.full((per_task,), i, device=x.device))
        return torch.cat(xs), torch.cat(ys), torch.cat(ts)
