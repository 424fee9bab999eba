"""Run the qsem benchmarks and write ``benchmarks/results.json``.

    python benchmarks/run_all.py                      # every workload (make bench)
    python benchmarks/run_all.py hybrid_qubit --quick # one workload, fewer repeats

Each workload times qsem and an anchor (PennyLane, or the state's own bytes for the
memory workload) on the same work in the same run and reports anchor/qsem ratios next
to the timing spread. A partial run updates its rows in an existing results file and
keeps the others (each row records when and how it was measured). Speed targets are
reported, not asserted: the exit status is non-zero only when qsem and an anchor
disagree on the computed values (or with ``--strict``, when a target is missed).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKLOADS = (
    "hybrid_qubit",
    "hybrid_qutrit",
    "memory",
    "dense_dm",
    "similarity",
    "bridge_aer",
    "estimator_qnn",
    "noisy_backend",
    "pennylane_device",
    "scale_qubit",
    "scale_qutrit",
)
DEFAULT_OUT = ROOT / "benchmarks" / "results.json"


def _fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}x" if x < 100 else f"{x:.0f}x"


def table(rows: dict[str, dict[str, Any]]) -> str:
    """Plain-text table of the rows (median [IQR] per side, ratios, target)."""
    from benchmarks.harness import fmt_s

    head = [
        "workload",
        "qsem median [IQR]",
        "anchor",
        "anchor median [IQR]",
        "ratio",
        "ratio(min)",
        "x floor",
        "target",
        "met",
    ]
    lines = []
    for name, r in rows.items():
        qt = r.get("qsem_timing", {})
        at = r.get("anchor_timing")
        q = f"{fmt_s(r['qsem_s'])} [{fmt_s(qt.get('iqr'))}]"
        if at is not None:
            a = f"{fmt_s(r['anchor_s'])} [{fmt_s(at.get('iqr'))}]"
        elif r.get("skipped") or r.get("no_peer"):
            a = "no peer" if r.get("no_peer") else "not run (too slow here)"
        elif "peak_over_baseline_bytes" in r:
            peak, state = r["peak_over_baseline_bytes"] / 2**20, r["state_bytes"] / 2**20
            a = f"peak {peak:.1f} / state {state:.1f} MiB"
        else:
            a = "-"
        anchor = r["anchor"].split(" (")[0]
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        lo_hi = r.get("ratio_range")
        rmin = _fmt_ratio(r.get("ratio_min")) if lo_hi is None else f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}"
        lines.append(
            [
                name,
                q,
                anchor,
                a,
                _fmt_ratio(r["ratio"]),
                rmin,
                fmt_floor(r),
                r["target"] or (f"x floor {r['floor_target']}" if r.get("floor_target") else "-"),
                met,
            ]
        )
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def fmt_floor(r: dict[str, Any]) -> str:
    """``× floor`` of a row: qsem's median time over the time to move its bytes once."""
    x = r.get("x_floor")
    if x is None:
        return "-"
    return f"{x:.3g}x" if x < 1000 else f"{x:.2g}x"


def markdown(results: dict[str, Any]) -> str:
    """Markdown table of a results file (for docs/benchmarks.md)."""
    from benchmarks.harness import fmt_s

    m = results["machine"]
    why = f" ({m['torch_threads_choice']})" if m.get("torch_threads_choice") else ""
    out = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB, "
        f"CUDA: {m['cuda'] or 'none'}), torch threads {m['torch_threads']}"
        f"{why}, Python "
        f"{m['python']}, torch {m['torch']}, PennyLane {m['pennylane']}, Qiskit {m['qiskit']}; "
        f"1/5/15-min load average {m['load_average_start']} at the start, "
        f"{m.get('load_average_end')} at the end; copy bandwidth "
        f"{(m.get('copy_bandwidth') or 0) / 1e9:.1f} GB/s (read + write).",
        "",
        "| row | qsem median (min, IQR) | anchor | anchor median (min, IQR) "
        "| ratio | ratio(min) | × floor | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["workloads"].items():
        qt = r["qsem_timing"]
        q = f"{fmt_s(qt['median'])} ({fmt_s(qt['min'])}, {fmt_s(qt['iqr'])})"
        at = r.get("anchor_timing")
        if at is not None:
            a = f"{fmt_s(at['median'])} ({fmt_s(at['min'])}, {fmt_s(at['iqr'])})"
            rmin = _fmt_ratio(r.get("ratio_min"))
        elif r.get("skipped") or r.get("no_peer"):
            a = "no peer" if r.get("no_peer") else "not run (too slow here)"
            rmin = "-"
        else:
            peak, state = r["peak_over_baseline_bytes"] / 2**20, r["state_bytes"] / 2**20
            a = f"peak {peak:.1f} MiB / state {state:.1f} MiB"
            lo, hi = r["ratio_range"]
            rmin = f"range {lo:.2f}-{hi:.2f}"
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        target = r["target"] or (f"× floor {r['floor_target']}" if r.get("floor_target") else "-")
        anchor = r["anchor"].split(" (")[0]
        out.append(
            f"| `{name}` | {q} | {anchor} | {a} | {_fmt_ratio(r['ratio'])} | {rmin} "
            f"| {fmt_floor(r)} | {target} | {met} |"
        )
    return "\n".join(out)


def choose_threads(value: str) -> tuple[int, str]:
    """``--threads``: a number as given, or ``auto``: all cores on a quiet machine, else 1.

    On a machine shared with other jobs, more than one torch thread makes every small
    kernel wait at a barrier for a descheduled thread; qsem's steps are many small
    kernels, so its timings would measure the load rather than the code.
    """
    cores = os.cpu_count() or 1
    if value != "auto":
        try:
            return int(value), "--threads"
        except ValueError:
            return 0, "invalid"
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores, "auto: all cores (load average unknown)"
    if cores > 1 and load > 0.5 * cores:
        return 1, f"auto: 1 thread, the 1-min load {load:.2f} exceeds half of {cores} cores"
    return cores, f"auto: all {cores} cores, 1-min load {load:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help=f"any of {', '.join(WORKLOADS)} (default: all)",
    )
    ap.add_argument("--quick", action="store_true", help="fewer repeats (noisier numbers)")
    ap.add_argument(
        "--threads",
        default="auto",
        help="torch.set_num_threads for both sides: a number, or 'auto' (default): all cores, "
        "or 1 when the 1-minute load average is above half the cores",
    )
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results file (default: {DEFAULT_OUT})"
    )
    ap.add_argument(
        "--fresh", action="store_true", help="do not keep rows of workloads not run now"
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument(
        "--markdown", action="store_true", help="print the results file as Markdown; run nothing"
    )
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    threads, why = choose_threads(args.threads)
    if threads < 1:
        ap.error(f"--threads must be 'auto' or an integer >= 1, got {args.threads!r}")
    selected = args.workloads or list(WORKLOADS)

    import torch

    from benchmarks.harness import (
        AgreementError,
        Config,
        add_floor,
        copy_bandwidth,
        load_average,
        machine_info,
    )

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*requires_grad.*")
    torch.set_num_threads(threads)
    machine = machine_info(torch.get_num_threads())
    machine["torch_threads_choice"] = why
    machine["copy_bandwidth"] = copy_bandwidth()
    cfg = Config.make(
        quick=args.quick, threads=threads, seed=args.seed, log=lambda s: print(s, flush=True)
    )
    load = machine["load_average_start"]
    if load is not None and load[0] > 0.5 * (machine["cores"] or 1):
        print(
            f"WARNING: the machine is busy (1-min load {load[0]} on {machine['cores']} cores): "
            "timings will be noisy (see the IQR columns), and with more than one torch thread "
            "small kernels stall waiting for descheduled threads",
            flush=True,
        )
    print(
        f"qsem benchmarks on {machine['cpu']} ({machine['cores']} cores), torch threads "
        f"{machine['torch_threads']} ({why}), load average {machine['load_average_start']}, "
        f"copy bandwidth {machine['copy_bandwidth'] / 1e9:.1f} GB/s",
        flush=True,
    )

    rows: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for name in selected:
        print(f"[{name}]{' (quick)' if args.quick else ''}", flush=True)
        mod = importlib.import_module(f"benchmarks.{name}")
        t0 = time.perf_counter()
        try:
            new = mod.run(cfg)
        except AgreementError as exc:
            print(f"  AGREEMENT FAILURE: {exc}", flush=True)
            failed.append(name)
            continue
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for r in new.values():
            r["measured_at"] = stamp
            r["quick"] = args.quick
        add_floor(new, machine["copy_bandwidth"])
        rows.update(new)
        print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    machine["load_average_end"] = load_average()

    all_rows: dict[str, dict[str, Any]] = {}
    if not args.fresh and args.out.exists():
        try:
            old = json.loads(args.out.read_text())
            all_rows = {
                k: v for k, v in old.get("workloads", {}).items() if k.split("[")[0] not in selected
            }
        except (OSError, ValueError):
            all_rows = {}
    all_rows.update(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine, "workloads": all_rows}, indent=2) + "\n")
    tmp.replace(args.out)

    print()
    print(table(rows))
    start, end = machine["load_average_start"], machine["load_average_end"]
    bw = machine["copy_bandwidth"] / 1e9
    print(
        f"\nx floor: qsem median / (bytes the step must move / {bw:.1f} GB/s copy bandwidth "
        "measured in this run)"
    )
    print(f"load average (1, 5, 15 min) at start {start}, at end {end}")
    print(f"results written to {args.out}")
    if any(w.startswith("scale_") for w in selected):
        from benchmarks.plot_scaling import plot

        png = "scaling.png" if args.out == DEFAULT_OUT else f"{args.out.stem}_scaling.png"
        fig = plot(json.loads(args.out.read_text()), args.out.with_name(png))
        print(f"figure written to {fig}" if fig else "no scale rows: no figure")
    if failed:
        print(f"qsem and the anchor disagree in: {', '.join(failed)}", file=sys.stderr)
        return 2
    if args.strict and any(r["met"] is False for r in rows.values()):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
