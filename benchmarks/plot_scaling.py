"""``benchmarks/scaling.png``: time per gate against register size (scale rows).

One point per register size and curve (the median of the rows that time it) from the
``scale_qubit`` / ``scale_qutrit`` rows of a results file: qsem's median and each
anchor's median divided by the number of gates in the circuit, against the
register dimension ``D`` (``2^n`` or ``3^n``); the memory-traffic floor per gate
(``floor_s`` / gates) is drawn as a dashed line. Run by ``run_all.py`` after the scale
rows, or by hand: ``python benchmarks/plot_scaling.py [results.json] [out.png]``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "scaling.png"


def _gates(r: dict[str, Any]) -> int:
    size = r["size"]
    n, layers = size["n"], size["layers"]
    if r.get("no_peer"):  # qutrit circuit: TRY encoding + 4 rotations per wire + TAdd ring
        return n + layers * 5 * n
    return n + layers * 3 * n  # RY encoding + RY, RZ per wire + CNOT ring


def series(results: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """``{label: [(D, seconds per gate), ...]}`` from the scale rows of ``results``."""
    out: dict[str, dict[int, list[float]]] = {}

    def add(label: str, d: int, t: float | None, gates: int) -> None:
        if t:  # one point per size: the median of the rows that time it (qsem is timed
            # beside each anchor, so a size has several qsem medians)
            out.setdefault(label, {}).setdefault(d, []).append(t / gates)

    for name, r in results.get("workloads", {}).items():
        if not name.startswith(("scale_qubit[", "scale_qutrit[")) or "size" not in r:
            continue
        n, gates = r["size"]["n"], _gates(r)
        if name.startswith("scale_qutrit["):
            mode = r["size"].get("mode", "statevector")
            d = 3**n if mode == "statevector" else 9**n
            add(f"qsem qutrit {mode} fwd+grad", d, r["qsem_s"], gates)
            add(f"floor qutrit {mode} fwd+grad", d, r.get("floor_s"), gates)
            continue
        d = 2**n
        kind = name.split(",")[1]
        anchor = r["anchor"].split(" (")[0].split(",")[0]
        if kind == "fwd":
            add("qsem forward", d, r["qsem_s"], gates)
            add(f"{anchor.split(' ')[0]} forward", d, r.get("anchor_s"), gates)
            continue
        if kind == "mse":
            add("qsem adjoint fwd+grad", d, r["qsem_s"], gates)
            add("qsem autograd fwd+grad", d, r.get("qsem_autograd_s"), gates)
        add("floor fwd+grad", d, r.get("floor_s"), gates)
        add(f"{anchor} ({kind})", d, r.get("anchor_s"), gates)
    return {k: sorted((d, statistics.median(ts)) for d, ts in v.items()) for k, v in out.items()}


def plot(results: dict[str, Any], out: Path = DEFAULT_OUT) -> Path | None:
    """Write the figure; ``None`` when the results hold no scale rows."""
    data = series(results)
    if not data:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, pts in sorted(data.items()):
        xs, ys = zip(*pts, strict=True)
        floor = label.startswith("floor")
        marker = "s" if "qutrit" in label else "o"
        ax.plot(xs, ys, "--" if floor else "-", marker=marker, label=label,
                color="black" if floor else None, alpha=0.6 if floor else 1.0)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("register dimension D (amplitudes; D² entries for a density matrix)")
    ax.set_ylabel("seconds per gate (median)")
    m = results.get("machine", {})
    ax.set_title(
        f"time per gate, B=1 ({m.get('cpu', '?')}, torch threads {m.get('torch_threads', '?')})",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else ROOT / "benchmarks" / "results.json"
    dst = Path(args[1]) if len(args) > 1 else DEFAULT_OUT
    written = plot(json.loads(src.read_text()), dst)
    print(f"wrote {written}" if written else "no scale rows in the results: nothing to plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
