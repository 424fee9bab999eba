"""Shared pieces of the benchmark harness: configuration, timing, statistics, rows.

Timing protocol (every workload uses it):

* every timed callable runs ``warmup`` times untimed first (tracing, plan caches,
  allocator warm-up);
* the timed calls of qsem and of its anchor are *interleaved* in rounds, the order
  alternating from round to round, so that load from other processes on a shared
  machine hits both sides alike; an anchor with fewer repeats than qsem is spread
  evenly over the rounds;
* each call is timed with :func:`time.perf_counter`; the report keeps the median,
  the minimum, the quartiles (IQR) and the standard deviation of the repeats, and
  the raw times, so that machine noise is visible next to the ratio.

``ratio = anchor median / qsem median`` (the headline, compared with the target);
``ratio_min = anchor min / qsem min`` is reported beside it: on a loaded machine
the minimum is the least disturbed measurement of each side.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from qsem.threads import thread_policy
from qsem.training import make_optimizer


class AgreementError(AssertionError):
    """qsem and the anchor disagree on the same work: the comparison would be meaningless."""


@dataclass
class Config:
    """Run settings shared by every workload."""

    quick: bool = False
    threads: int = 1
    seed: int = 1234
    #: timed repeats (qsem side / anchor side) and untimed warm-up calls
    repeats: int = 15
    anchor_repeats: int = 5
    slow_anchor_repeats: int = 3
    warmup: int = 2
    anchor_warmup: int = 1
    log: Callable[[str], None] = print
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(
        cls, *, quick: bool, threads: int, seed: int = 1234, log: Callable[[str], None] = print
    ) -> Config:
        if quick:
            return cls(
                quick=True, threads=threads, seed=seed, repeats=5, anchor_repeats=2,
                slow_anchor_repeats=1, warmup=1, anchor_warmup=1, log=log,
            )  # fmt: skip
        return cls(quick=False, threads=threads, seed=seed, log=log)


@dataclass
class Stats:
    """Summary of repeated timings (seconds)."""

    times: list[float]

    @property
    def n(self) -> int:
        return len(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def quartiles(self) -> tuple[float, float]:
        if self.n < 2:
            return self.times[0], self.times[0]
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[0], q[2]

    @property
    def iqr(self) -> float:
        q1, q3 = self.quartiles
        return q3 - q1

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.times) if self.n > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        q1, q3 = self.quartiles
        return {
            "n": self.n,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "q1": q1,
            "q3": q3,
            "iqr": self.iqr,
            "stdev": self.stdev,
            "times": [round(t, 6) for t in self.times],
        }


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_once(fn: Callable[[], Any]) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def measure(
    units: Mapping[str, Callable[[], Any]],
    repeats: Mapping[str, int],
    warmup: Mapping[str, int],
    log: Callable[[str], None] | None = None,
) -> dict[str, Stats]:
    """Warm up every unit, then time them in interleaved rounds (see the module docstring)."""
    for name, fn in units.items():
        for _ in range(warmup.get(name, 1)):
            fn()
    rounds = max(repeats[name] for name in units)
    schedule: dict[str, set[int]] = {}
    for name in units:
        k = repeats[name]
        schedule[name] = {min(rounds - 1, int((j + 0.5) * rounds / k)) for j in range(k)}
        # rounding may merge two slots; fill from the end so the count is exact
        r = rounds - 1
        while len(schedule[name]) < k:
            schedule[name].add(r)
            r -= 1
    times: dict[str, list[float]] = {name: [] for name in units}
    names = list(units)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            if r in schedule[name]:
                times[name].append(time_once(units[name]))
        if log is not None and rounds >= 4 and (r + 1) % max(1, rounds // 4) == 0:
            done = ", ".join(f"{n}: {len(times[n])}/{repeats[n]}" for n in names)
            log(f"    round {r + 1}/{rounds} ({done})")
    return {name: Stats(t) for name, t in times.items()}


def check_close(
    what: str, qsem_value: torch.Tensor, anchor_value: torch.Tensor, atol: float
) -> float:
    """Raise :class:`AgreementError` unless the two agree to ``atol``; return the max deviation."""
    a = qsem_value.detach().to(torch.float64).cpu()
    b = anchor_value.detach().to(torch.float64).cpu()
    if a.shape != b.shape:
        raise AgreementError(
            f"{what}: shapes differ, qsem {tuple(a.shape)} vs anchor {tuple(b.shape)}"
        )
    dev = float((a - b).abs().max()) if a.numel() else 0.0
    if not dev <= atol:
        raise AgreementError(f"{what}: qsem and anchor differ by {dev:.3g} > {atol:g}")
    return dev


def row(
    *,
    qsem: Stats,
    anchor: str,
    anchor_stats: Stats,
    target: str | None,
    notes: str,
    **extra: Any,
) -> dict[str, Any]:
    """One timing row: ``ratio`` = anchor median / qsem median (see the module docstring)."""
    out: dict[str, Any] = {
        "qsem_s": qsem.median,
        "anchor": anchor,
        "anchor_s": anchor_stats.median,
        "ratio": anchor_stats.median / qsem.median,
        "ratio_min": anchor_stats.min / qsem.min,
        "target": target,
    }
    out["met"] = target_met(out["ratio"], target)
    out["notes"] = notes
    out["qsem_timing"] = qsem.as_dict()
    out["anchor_timing"] = anchor_stats.as_dict()
    out.update(extra)
    return out


def target_met(ratio: float, target: str | None) -> bool | None:
    """``">= 8"`` / ``"<= 3"`` against a ratio; ``None`` when there is no target."""
    if target is None:
        return None
    op, _, value = target.partition(" ")
    v = float(value)
    if op == ">=":
        return ratio >= v
    if op == "<=":
        return ratio <= v
    raise ValueError(f"unknown target {target!r}")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(threads: int) -> dict[str, Any]:
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(total / 2**30, 1) if total else None,
        "torch_threads": threads,
        "qsem_thread_policy": thread_policy(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pennylane": _version("pennylane"),
        "qiskit": _version("qiskit"),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": load_average(),
    }


def fmt_s(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.0f} us"


def copy_bandwidth(nbytes: int = 256 << 20, repeats: int = 5, device: Any = "cpu") -> float:
    """This machine's copy bandwidth in bytes/s: ``2 * nbytes / t`` for the fastest of
    ``repeats`` copies of an ``nbytes`` tensor into a preallocated one (read + write).

    The reference for the ``× floor`` column: a step cannot be faster than moving its
    bytes once at this rate.
    """
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults are not bandwidth
    best = min(time_once(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * nbytes / best


def floor_bytes(
    circuit: Any, mode: str, batch: int, dtype: torch.dtype, *, backward: bool, runs: int = 1
) -> int:
    """Bytes a simulation step must move at least: state bytes × transfers × ``runs``.

    Every step of the circuit's execution plan (a fused layer of single-wire gates, a
    permutation layer, a multi-wire gate, a channel) must read and write the whole state
    once (2 transfers), and the read-out reads it once; a backward pass reads each
    step's saved input and incoming gradient and writes its outgoing gradient (3 more
    per step, 1 more for the read-out). ``mode`` is ``"statevector"`` (also a factored
    density matrix of rank 1) or ``"density_matrix"`` (dense ``D × D``).
    """
    from qsem.simulators import state_bytes
    from qsem.simulators.plan import compile_plan

    steps = len(compile_plan(circuit, mode).steps)
    transfers = 2 * steps + 1 + ((3 * steps + 1) if backward else 0)
    return state_bytes(circuit.dims, mode, batch, dtype) * transfers * runs


def add_floor(rows: Mapping[str, dict[str, Any]], bandwidth: float) -> None:
    """Give every row with ``floor_bytes`` its ``floor_s`` and ``x_floor = qsem_s / floor_s``
    (``x_floor_min`` from the fastest repeat)."""
    for r in rows.values():
        fb = r.get("floor_bytes")
        if not fb:
            continue
        r["copy_bandwidth"] = bandwidth
        r["floor_s"] = fb / bandwidth
        r["x_floor"] = r["qsem_s"] / r["floor_s"]
        tmin = r.get("qsem_timing", {}).get("min")
        r["x_floor_min"] = tmin / r["floor_s"] if tmin else None
        if r.get("floor_target"):  # a row judged by its distance to the floor
            r["met"] = target_met(r["x_floor"], r["floor_target"])


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def adam_step(
    loss_fn: LossFn, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float
) -> Callable[[], None]:
    """The timed unit of the hybrid workloads: zero_grad + forward + backward + Adam step
    (the optimiser of :func:`qsem.training.make_optimizer`, on both sides)."""
    opt, _ = make_optimizer(model, lr)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model, x, y).backward()
        opt.step()

    return step


def loss_and_grad(
    loss_fn: LossFn, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and the flattened gradient of the model's first parameter (agreement checks)."""
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y)
    loss.backward()
    grad = next(iter(model.parameters())).grad
    assert grad is not None
    return loss.detach(), grad.detach().reshape(-1).clone()
