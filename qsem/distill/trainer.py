"""The self-distillation loop: soft + hard loss, probes, detectors, emergence events.

:class:`SelfDistiller` trains any model that yields φ (a distribution over
``S × C`` per position). A *forward* function maps ``(model, tokens)`` to a
mapping with at least ``"phi_out"`` ``(B, L, S, C)`` (the model's output distribution:
``phi_out`` of :meth:`qsem.models.SemanticModel.intermediates`) and optionally ``"omega"`` (a
state the similarity functions accept), ``"omega_params"`` and ``"circuit"``
(Ω's circuit and its bindings, for shot estimates) and ``"ops"`` (the Φ
operators, for NCI). The default forward reads
:meth:`qsem.models.SemanticModel.intermediates` (:func:`semantic_outputs`) or,
for any other model, takes ``model(tokens)`` as φ.

One optimiser step (:meth:`SelfDistiller.step`):

1. ``L = w_soft · τ² · KL(φ_τ^teacher ‖ φ_τ^student) + w_hard · CE_masked``
   (:func:`~qsem.distill.losses.self_distillation_loss`); the teacher is an EMA
   copy of the model (``θ_T ← d θ_T + (1 − d) θ``, after every step) or the model
   at the previous step (``teacher="previous"``: the copy is taken right before
   the optimiser step, so step ``t`` distils from ``θ_{t−1}``);
2. every ``probe_every`` steps the fixed probe batch is measured
   (:class:`~qsem.distill.probe.EmergenceProbe`) and every metric is logged;
3. an event of a *trigger* detector appends a P slice
   (:func:`append_slice`: the optimiser keeps the state of the old parameters
   and the new ones start from the state of the slice they copy), unless
   ``max_slices`` is reached or the last slice is younger than ``refractory``
   steps; it writes ``snapshots/step-N.pt`` and, with ``correction_steps > 0``,
   runs that many hard-label-only steps on the labelled examples. Events of the
   other detectors are recorded only.

The loop's whole state (teacher, probe history, detectors, E_pot window,
events, counters, its generator) is in :meth:`SelfDistiller.state_dict`;
:meth:`SelfDistiller.load_state_dict` first grows the model and the optimiser to
the checkpoint's slice count, so call it BEFORE loading the model's and the
optimiser's state.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from qsem.circuits.errors import arg_error
from qsem.emergence import (
    BOCPD,
    AdaptiveThreshold,
    Detector,
    EmergencePotential,
    FixedThreshold,
    L1Detector,
    QuantumDetector,
)
from qsem.io import atomic_write_bytes
from qsem.layers import EmergenceStack

from .config import DistillConfig
from .losses import ema_update, ramp_up, self_distillation_loss
from .probe import EmergenceProbe, output_distribution

__all__ = [
    "DistillConfig",
    "Forward",
    "SelfDistiller",
    "append_slice",
    "default_forward",
    "make_detectors",
    "semantic_outputs",
]

Forward = Callable[[torch.nn.Module, torch.Tensor], Mapping[str, Any]]


def make_detectors(cfg: DistillConfig) -> dict[str, tuple[str, Detector]]:
    """name -> (kind, detector) for ``cfg.detectors`` (names are the kinds)."""
    r = cfg.refractory
    build: dict[str, Callable[[], Detector]] = {  # the names of qsem.emergence.DETECTORS
        FixedThreshold.name: lambda: FixedThreshold(cfg.theta_frobenius, refractory=r),
        "adaptive": lambda: AdaptiveThreshold(
            k=cfg.adaptive_k,
            window=cfg.adaptive_window,
            min_history=cfg.adaptive_min_history,
            refractory=r,
        ),
        "l1": lambda: L1Detector(cfg.theta_l1, refractory=r),
        "bocpd": lambda: BOCPD(refractory=r),
        "quantum": lambda: QuantumDetector(cfg.theta_quantum, refractory=r),
        "quantum_shots": lambda: QuantumDetector(cfg.theta_quantum, refractory=r),
        "quantum_aer": lambda: QuantumDetector(cfg.theta_quantum, refractory=r),
    }
    return {name: (name, build[name]()) for name in cfg.detectors}


def _default_stack(model: torch.nn.Module) -> EmergenceStack | None:
    stack = getattr(model, "emergence", None)
    return stack if isinstance(stack, EmergenceStack) else None


@torch.no_grad()
def append_slice(stack: EmergenceStack, optimizer: torch.optim.Optimizer | None = None) -> int:
    """:meth:`EmergenceStack.add_slice`, keeping the optimiser's state; the new slice count.

    ``add_slice`` freezes the live slice, appends a trainable copy of it and
    REPLACES ``weight_logits`` by a longer Parameter. In ``optimizer``: the new
    ``weight_logits`` takes the old one's place in its parameter group and its
    state (moment tensors grown by the live entry's moments, like the logits); the
    new slice joins the group of the slice it copies, with a copy of that slice's
    state. Every other parameter keeps its state object untouched (the frozen
    slice's gradient is None from now on, so Adam leaves it as it is).
    """
    live = stack.live_slice
    old_w, src = stack.weight_logits, stack.slice_logits[live]
    n = stack.add_slice()
    if optimizer is None:
        return n
    new_w, new_s = stack.weight_logits, stack.slice_logits[-1]
    for group in optimizer.param_groups:
        params = group["params"]
        for i, p in enumerate(params):
            if p is old_w:
                params[i] = new_w
        if any(p is src for p in params):
            params.append(new_s)
    old_state = optimizer.state.pop(old_w, None)
    if old_state:
        optimizer.state[new_w] = {
            k: torch.cat([v, v[live : live + 1]])
            if isinstance(v, torch.Tensor) and v.shape == old_w.shape
            else (v.clone() if isinstance(v, torch.Tensor) else v)
            for k, v in old_state.items()
        }
    src_state = optimizer.state.get(src)
    if src_state:
        optimizer.state[new_s] = {
            k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in src_state.items()
        }
    return n


def semantic_outputs(model: torch.nn.Module, tokens: torch.Tensor) -> dict[str, Any]:
    """The loop's view of :class:`~qsem.models.SemanticModel`: φ_out = Π_edge(Ω) ``(B, 1, S, C)``.

    ``phi_out`` is ``phi_out`` of the intermediates (the prediction distribution the
    loop distils; their ``phi`` is the encoder's φ, which the loop does not read),
    ``omega`` the Ω state, ``omega_params`` and ``circuit`` Ω's circuit bindings,
    ``ops`` the Φ operators and ``mask`` the real (non-padding) positions.
    """
    inter = model.intermediates(tokens)  # type: ignore[operator]
    return {
        "phi_out": inter["phi_out"],
        "omega": inter["omega"],
        "omega_params": inter["omega_params"],
        "circuit": model.omega.circuit,  # type: ignore[union-attr]
        "ops": inter["ops"],
        "mask": tokens != 0,
    }


def default_forward(model: torch.nn.Module, tokens: torch.Tensor) -> Mapping[str, Any]:
    """:func:`semantic_outputs` for a model with ``intermediates``; else φ = ``model(tokens)``."""
    if hasattr(model, "intermediates"):
        return semantic_outputs(model, tokens)
    out = model(tokens)
    return out if isinstance(out, Mapping) else {"phi_out": out}


@dataclass
class _Counters:
    step: int = 0
    correction_steps: int = 0
    last_slice_step: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class SelfDistiller:
    """Self-distillation of ``model`` with probes, detectors and emergence events.

    Args:
        model: the student (trained in place).
        cfg: a :class:`DistillConfig`.
        probe_tokens: the fixed probe batch.
        forward: ``(model, tokens) -> {"phi_out": ..., ...}`` (default :func:`default_forward`).
        optimizer: the optimiser of ``model`` (or later, :meth:`bind`).
        correction: ``(tokens, labels)`` of the labelled examples, for correction bursts.
        log: ``log(step, record)``, called for every probe and every event
            (e.g. ``lambda s, r: ctx.log(s, **r)``).
        snapshot_dir: where ``step-N.pt`` snapshots go (``None``: none are written); an
            event records the file's name.
        backend: the backend of ``quantum_aer`` (default: a new
            :class:`qsem.simulators.aer.AerBackend`); ``quantum_shots`` runs on the torch engine.
        seed: seeds the shot draws and the correction batches.

    >>> model = torch.nn.Sequential(torch.nn.Embedding(5, 6), torch.nn.Softmax(-1),
    ...                             torch.nn.Unflatten(-1, (3, 2)))
    >>> loop = SelfDistiller(model, DistillConfig(detectors=("l1",), trigger=()),
    ...                      probe_tokens=torch.tensor([[1], [2]]),
    ...                      optimizer=torch.optim.Adam(model.parameters(), lr=0.1))
    >>> loss = loop.step(torch.tensor([[1], [3]]), torch.tensor([0, -1]))
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: DistillConfig,
        *,
        probe_tokens: torch.Tensor,
        forward: Forward | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        correction: tuple[torch.Tensor, torch.Tensor] | None = None,
        log: Callable[[int, dict[str, Any]], None] | None = None,
        snapshot_dir: str | Path | None = None,
        backend: Any = None,
        seed: int = 0,
        stack: Callable[[torch.nn.Module], EmergenceStack | None] = _default_stack,
    ) -> None:
        if not isinstance(cfg, DistillConfig):
            raise arg_error("cfg", f"expected a DistillConfig, got {type(cfg).__name__}")
        self.model, self.cfg = model, cfg
        self.forward = forward or default_forward
        self.probe_tokens = probe_tokens
        self.optimizer = optimizer
        self.correction = correction
        needs = cfg.correction_steps or cfg.labelled_batch
        if needs and (correction is None or not bool((correction[1] >= 0).any())):
            raise arg_error(
                "correction", "correction_steps or labelled_batch > 0 needs labelled data"
            )
        self._log = log
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self._stack = stack
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        potential = EmergencePotential(window=cfg.epot_window, alphas=tuple(cfg.epot_alphas),
                                       theta_epot=cfg.theta_epot)  # fmt: skip
        shot_backends: dict[str, tuple[Any, int | None]] = {}
        if "quantum_shots" in cfg.detectors:
            shot_backends["quantum_shots"] = (None, None)
        if "quantum_aer" in cfg.detectors:
            if backend is None:
                from qsem.simulators.aer import AerBackend

                backend = AerBackend()
            shot_backends["quantum_aer"] = (backend, cfg.aer_queries or None)
        self.probe = EmergenceProbe(
            make_detectors(cfg), potential, shots=cfg.shots, shot_backends=shot_backends,
            seed=seed, confidence=cfg.confidence,
        )  # fmt: skip
        self.gen = torch.Generator().manual_seed(int(seed) + 12345)
        self.c = _Counters()

    # -- wiring ------------------------------------------------------------------------------
    def bind(self, optimizer: torch.optim.Optimizer) -> None:
        """Use ``optimizer`` (built on ``model.parameters()``) from now on."""
        self.optimizer = optimizer

    @property
    def n_slices(self) -> int:
        stack = self._stack(self.model)
        return stack.n_slices if stack is not None else 1

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.c.events

    @property
    def steps(self) -> int:
        return self.c.step

    def log(self, step: int, record: dict[str, Any]) -> None:
        if self._log is not None:
            self._log(step, record)

    # -- one step ----------------------------------------------------------------------------
    def _update(self, loss: torch.Tensor) -> None:
        if self.optimizer is None:
            raise arg_error("optimizer", "no optimiser: pass one or call bind() first")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.teacher == "previous":
            ema_update(self.teacher, self.model, 0.0)
        self.optimizer.step()
        if self.cfg.teacher == "ema":
            ema_update(self.teacher, self.model, self.cfg.ema_decay)

    def step(self, tokens: torch.Tensor, labels: torch.Tensor) -> float:
        """One optimiser step on a batch (labels ``-1`` = absent); probes when due. The loss."""
        cfg = self.cfg
        self.model.train()
        phi = output_distribution(self.forward(self.model, tokens))
        teacher_phi = None
        w_soft = cfg.w_soft * ramp_up(self.c.step, cfg.ramp_steps)
        if w_soft > 0:
            with torch.no_grad():
                teacher_phi = output_distribution(self.forward(self.teacher, tokens))
        loss, self.last_parts = self_distillation_loss(
            phi, teacher_phi, labels, temperature=cfg.temperature, w_soft=w_soft,
            w_hard=cfg.w_hard, sharpen=cfg.sharpen, threshold=cfg.soft_threshold,
        )  # fmt: skip
        if cfg.labelled_batch and cfg.w_hard > 0:
            loss = loss + cfg.w_hard * self._labelled_loss(cfg.labelled_batch)
        self._update(loss)
        self.c.step += 1
        if self.c.step % cfg.probe_every == 0:
            self.run_probe()
        return float(loss.detach())

    def run_probe(self) -> dict[str, Any]:
        """Measure the probe batch now: log the metrics, handle the events; the record."""
        step = self.c.step
        self.model.eval()
        with torch.no_grad():
            out = self.forward(self.model, self.probe_tokens)
            rec, events = self.probe.observe(step, out)
        self.model.train()
        rec = {"kind": "probe", **rec, "slices": self.n_slices,
               **{f"loss_{k}": v for k, v in getattr(self, "last_parts", {}).items()}}  # fmt: skip
        self.log(step, rec)
        for name, ev in events:
            self._event(name, ev, rec)
        return rec

    # -- events ------------------------------------------------------------------------------
    def _event(self, name: str, ev: Any, rec: Mapping[str, Any]) -> None:
        cfg, step = self.cfg, self.c.step
        stack = self._stack(self.model)
        appended = bool(
            name in cfg.trigger
            and stack is not None
            and stack.n_slices < cfg.max_slices
            and (self.c.last_slice_step is None or step - self.c.last_slice_step > cfg.refractory)
        )
        snapshot = None
        if appended:
            assert stack is not None
            append_slice(stack, self.optimizer)
            teacher_stack = self._stack(self.teacher)
            if teacher_stack is not None:
                append_slice(teacher_stack)
            self.c.last_slice_step = step
            snapshot = self._snapshot(step, name)
        record = {"kind": "event", "detector": name, "value": float(ev.value), "low": ev.low,
                  "high": ev.high, "dphi_fro": rec.get("dphi_fro"), "e_pot": rec.get("e_pot"),
                  "appended": appended, "slices": self.n_slices, "snapshot": snapshot}  # fmt: skip
        self.c.events.append({"step": step, **record})
        self.log(step, record)
        if appended and cfg.correction_steps:
            self._correct()

    def _snapshot(self, step: int, detector: str) -> str | None:
        if self.snapshot_dir is None or not self.cfg.snapshots:
            return None
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.snapshot_dir / f"step-{step}.pt"
        buf = io.BytesIO()
        torch.save({"step": step, "detector": detector, "slices": self.n_slices,
                    "model": self.model.state_dict()}, buf)  # fmt: skip
        atomic_write_bytes(path, buf.getvalue())
        return path.name

    def _labelled_loss(self, size: int) -> torch.Tensor:
        """The hard loss on ``size`` labelled queries drawn with the loop's generator."""
        assert self.correction is not None
        tokens, labels = self.correction
        labelled = torch.nonzero(labels >= 0).flatten()
        idx = labelled[torch.randint(len(labelled), (size,), generator=self.gen)]
        phi = output_distribution(self.forward(self.model, tokens[idx]))
        return self_distillation_loss(phi, None, labels[idx], w_soft=0.0, w_hard=1.0)[0]

    def _correct(self) -> None:
        """``correction_steps`` hard-label-only steps on random labelled batches."""
        for _ in range(self.cfg.correction_steps):
            self._update(self._labelled_loss(self.cfg.correction_batch))
            self.c.correction_steps += 1

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The loop's state (plain data and tensors), for a checkpoint."""
        return {
            "n_slices": self.n_slices,
            "counters": asdict(self.c),
            "teacher": self.teacher.state_dict(),
            "probe": self.probe.state_dict(),
            "generator": self.gen.get_state(),
            "last_parts": getattr(self, "last_parts", {}),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; grows model, teacher and optimiser to its slice count.

        Call it before ``model.load_state_dict`` and ``optimizer.load_state_dict``.
        """
        stack, teacher_stack = self._stack(self.model), self._stack(self.teacher)
        while stack is not None and stack.n_slices < int(d["n_slices"]):
            append_slice(stack, self.optimizer)
            if teacher_stack is not None:
                append_slice(teacher_stack)
        self.teacher.load_state_dict(d["teacher"])
        self.probe.load_state_dict(d["probe"])
        self.c = _Counters(**d["counters"])
        self.gen.set_state(d["generator"])
        self.last_parts = dict(d["last_parts"])
