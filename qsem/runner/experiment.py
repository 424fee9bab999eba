"""What a runnable experiment is: :class:`Experiment`, and the one way it is called.

Calling an experiment (``EXPERIMENT(config, ctx)``) runs its ``run`` function under
the torch thread setting its config declares: a config with an integer ``threads``
key runs with that many torch intra-op threads (0: torch's setting is left as it
is), and the setting is restored afterwards. The runner calls experiments this way,
and so does an experiment that runs another one as a part (``qsem run story``), so
no experiment wraps its own body in :func:`qsem.threads.torch_threads`.

>>> from dataclasses import dataclass
>>> import torch
>>> @dataclass(frozen=True)
... class C:
...     seed: int = 0
...     threads: int = 1
>>> exp = Experiment("probe", "reports its torch threads", C(),
...                  lambda cfg, ctx: {"threads": torch.get_num_threads()})
>>> exp(C(threads=1), None)
{'threads': 1}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qsem.threads import torch_threads

from .config import Leaf, config_schema

__all__ = ["THREADS_KEY", "Experiment", "thread_setting"]

#: the config key whose integer value is the torch thread count a run uses (0: unchanged)
THREADS_KEY = "threads"

_NAME = re.compile(r"^_?[a-z][a-z0-9_-]*$")


def thread_setting(config: Any) -> int:
    """The torch thread count ``config`` declares (its ``threads`` key; 0 where it has none)."""
    if isinstance(config, Mapping):
        value = config.get(THREADS_KEY, 0)
    else:
        value = getattr(config, THREADS_KEY, 0)
    return int(value)


@dataclass(frozen=True)
class Experiment:
    """A runnable experiment.

    Attributes:
        name: what ``qsem run NAME`` takes (lower case; a leading ``_`` hides it
            from ``qsem list``).
        description: one line for ``qsem list``.
        defaults: the default config, a dataclass instance or a nested dict; it
            must have an integer ``seed`` key, and may have an integer ``threads``
            key (the torch threads the run uses; see the module docs).
        run: ``run(config, ctx, **extra) -> results``; ``config`` is built like
            ``defaults`` (a dataclass or a dict), ``ctx`` a
            :class:`~qsem.runner.context.RunContext`; ``results`` a dict of
            JSON-able values written to ``results.json``. Call the experiment
            (``experiment(config, ctx)``), not ``run``, to get its thread setting.
        checkpoint_every: default checkpoint period in steps (0: only forced ones).
        results: the top-level names of ``results.json``, where declared (empty: not
            declared), so that ``qsem sweep --metric`` is checked before any trial runs;
            a run whose results have other names fails (the declaration cannot drift).
    """

    name: str
    description: str
    defaults: Any
    run: Callable[..., Mapping[str, Any]]
    checkpoint_every: int = 0
    results: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"experiment name {self.name!r} must match {_NAME.pattern}")
        schema = config_schema(self.defaults)
        seed = schema.get("seed")
        if not (isinstance(seed, Leaf) and seed.kind is int and not seed.optional):
            raise ValueError(f"experiment {self.name!r}: its config needs an integer 'seed' key")
        threads = schema.get(THREADS_KEY)
        if threads is not None and not (isinstance(threads, Leaf) and threads.kind is int):
            raise ValueError(
                f"experiment {self.name!r}: its config key {THREADS_KEY!r} must be an integer"
            )
        if self.checkpoint_every < 0:
            raise ValueError("checkpoint_every must be >= 0")

    @property
    def hidden(self) -> bool:
        return self.name.startswith("_")

    def __call__(self, config: Any, ctx: Any, **extra: Any) -> Mapping[str, Any]:
        """``run(config, ctx, **extra)`` under the config's torch thread setting."""
        with torch_threads(thread_setting(config)):
            return self.run(config, ctx, **extra)
