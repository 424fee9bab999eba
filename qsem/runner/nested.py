"""One part of a run seen as a run of its own: :class:`NestedContext`.

An experiment made of parts (the seeds and arms of ``qsem run self-distill``,
the stages of ``qsem run story``) runs each part with a context that keeps the
part's checkpoints inside the run's one checkpoint file:

* :meth:`NestedContext.checkpoint` stores ``{"done": finished parts, "current":
  {"key": this part, "state": its state, "rng": the generators}}`` as the
  parent's state at the parent's step ``offset + step``;
* :meth:`NestedContext.restore` returns the part's state when the parent's
  checkpoint was taken inside this part (``current["key"] == key``), else
  ``None`` (the part starts fresh);
* :meth:`NestedContext.log` tags every record (e.g. ``seed``, ``arm``,
  ``stage``) and :meth:`NestedContext.records` returns the parent's records
  carrying those tags.

Parts nest: a part's context can be the parent of another's, and each level
wraps the state of the level below.

>>> state = ctx.restore()  # doctest: +SKIP
>>> done = state["done"] if state else []  # doctest: +SKIP
>>> part = NestedContext(ctx, "seed-0", {"seed": 0}, state and state["current"], done, offset=0)
... # doctest: +SKIP
>>> done.append(train(part))  # doctest: +SKIP
>>> ctx.checkpoint(1, {"done": done, "current": None}, force=True)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from .checkpoint import get_rng_state, set_rng_state
from .context import RunContext

__all__ = ["NestedContext"]

T = TypeVar("T")


class NestedContext(RunContext):
    """The run's context seen by one part: tags, nested checkpoints, the part's records.

    Args:
        parent: the context of the enclosing run (or part).
        key: the part's name, unique within the parent.
        tags: added to every record the part logs (and used to select its records).
        current: the ``"current"`` entry of the parent's restored state (or ``None``).
        done: the parent's finished parts (plain data); stored in every checkpoint.
        offset: the parent's step at which this part begins.
    """

    def __init__(
        self,
        parent: RunContext,
        key: str,
        tags: Mapping[str, Any],
        current: Mapping[str, Any] | None,
        done: Any,
        offset: int,
    ) -> None:
        super().__init__(
            experiment=parent.experiment, out_dir=parent.out_dir, config=parent._config,
            seed=parent.seed, metrics=parent.metrics, checkpoint_every=parent.checkpoint_every,
            quiet=parent.quiet,
        )  # fmt: skip
        self.parent, self.key, self.tags = parent, key, dict(tags)
        self._current = current if current is not None and current["key"] == key else None
        self.done, self.offset = done, offset

    def restore(self) -> dict[str, Any] | None:
        """The part's state at the parent's checkpoint (generators restored), or ``None``."""
        if self._current is None:
            return None
        set_rng_state(self._current["rng"])
        state: dict[str, Any] = self._current["state"]
        return state

    def checkpoint(
        self,
        step: int,
        state: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        *,
        force: bool = False,
        where: str | None = None,
    ) -> bool:
        """Checkpoint the part after ``step`` of its steps (the parent's ``offset + step``);
        the run records it as ``"<tags>, <where>"`` (``"stage heads, step 10"``), never as
        the parent's internal step."""

        def wrapped() -> dict[str, Any]:
            inner = state() if callable(state) else state
            current = {"key": self.key, "state": dict(inner), "rng": get_rng_state()}
            return {"done": self.done, "current": current}

        inner = where or f"step {step}"
        return self.parent.checkpoint(
            self.offset + step, wrapped, force=force, where=f"{self._tag_text}, {inner}"
        )

    @property
    def _tag_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.tags.items())

    def progress(
        self,
        iterable: Iterable[T],
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str | None = None,
    ) -> Iterator[T]:
        """The parent's progress display, named ``"<label>"`` or ``"<label>: <desc>"``."""
        name = self.label if desc is None else f"{self.label}: {desc}"
        return super().progress(iterable, total=total, initial=initial, desc=name)

    @property
    def label(self) -> str:
        """``"<parent's label>, <tags>"``: ``"story, stage heads"``."""
        return f"{self.parent.label}, {self._tag_text}"

    def log(self, step: int, **values: Any) -> None:
        """Log ``values`` at the part's ``step``, tagged with the part's tags."""
        self.parent.log(step, **self.tags, **values)

    def records(self) -> list[dict[str, Any]]:
        """The parent's records that carry every one of this part's tags."""
        return [
            r
            for r in self.parent.records()
            if all(k in r and r[k] == v for k, v in self.tags.items())
        ]
