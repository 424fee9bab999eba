"""estimators: shots against error of the three overlap estimators near F ≈ 1.

    python benchmarks/estimators.py            # full study (R = 4000 seeds per point)
    python benchmarks/estimators.py --quick    # R = 500
    python benchmarks/estimators.py --aer      # also check one point per method on Aer

Not a timing workload (``run_all.py`` times qsem against anchors); this one measures
statistics. Successive training states differ by ``1 − F ~ 1e-3``; the question is how
many shots each estimator of ``F`` needs to reach a given RMS error there.

Setup: the 4-qubit ansatz of ``benchmarks/similarity.py`` (``RY``, ``RZ`` per wire, a
CNOT chain) at random angles ``θ_a`` and ``θ_b = θ_a + s·u`` (``u`` a random unit
direction, ``s`` solved by bisection on the exact overlap so that ``1 − F`` is
``1e-1``, ``1e-2`` or ``1e-3``). For each estimator of
:func:`qsem.simulators.estimators.estimate_overlap` (compute–uncompute on 4 qubits;
SWAP test on 9; destructive SWAP test on 8) and each target RMS error ``ε``:

* closed form: ``N* = v / ε²`` with the per-shot variance ``v = F(1 − F)``
  (compute–uncompute) or ``1 − F²`` (both SWAP tests);
* measured: ``R`` independent estimates (``R`` rows of one seeded job, torch engine,
  ``sampling="exact"``: exact probabilities of the circuit, then seeded
  ``Binomial(N, p)`` counts — the distribution of measuring the final state ``N``
  times) at ``N = N*``; the measured per-shot variance ``v̂ = N · MSE`` of the raw
  (unclipped, unbiased) estimate gives ``N_meas = v̂ / ε²``, reported with the
  standard error from the ``R`` seeds (each estimator its own seeds). Near ``F = 1``
  the raw estimate cannot exceed 1 (``p̂ <= 1``), so clipping changes nothing here;
  the RMS of the clipped ``.estimate`` is in the JSON all the same.
* cross-check: one point per estimator with ``sampling="backend"`` (the torch engine
  samples ``N`` outcomes of the state per row), whose MSE must agree with the
  binomial one within 4 standard errors.

The default estimator is the one with the fewest shots at equal error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.similarity import N_QUBITS, ansatz  # noqa: E402
from qsem.circuits import Circuit  # noqa: E402
from qsem.simulators.estimators import (  # noqa: E402
    DEFAULT_METHOD,
    OVERLAP_METHODS,
    estimate_overlap,
    overlap_variance,
)

DISTANCES = (1e-1, 1e-2, 1e-3)
SIGMAS = 4.0


def pair_at(
    circuit: Circuit, names: list[str], distance: float, seed: int
) -> tuple[dict[str, float], dict[str, float], float]:
    """``θ_a`` and ``θ_b = θ_a + s u`` with ``1 − F(θ_a, θ_b) = distance`` (bisection on s)."""
    g = torch.Generator().manual_seed(seed)
    ta = torch.rand(len(names), generator=g, dtype=torch.float64) * 2 * math.pi
    u = torch.randn(len(names), generator=g, dtype=torch.float64)
    u = u / u.norm()

    def dist(s: float) -> float:
        pb = {n: float(v) for n, v in zip(names, ta + s * u, strict=True)}
        pa = {n: float(v) for n, v in zip(names, ta, strict=True)}
        return 1.0 - float(estimate_overlap(circuit, pa, pb)[0])

    lo, hi = 0.0, 1e-3
    while dist(hi) < distance:
        hi *= 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if dist(mid) < distance else (lo, mid)
    s = (lo + hi) / 2
    pa = {n: float(v) for n, v in zip(names, ta, strict=True)}
    pb = {n: float(v) for n, v in zip(names, ta + s * u, strict=True)}
    return pa, pb, 1.0 - dist(s)


def measure_point(
    circuit: Circuit,
    pa: dict[str, float],
    pb: dict[str, float],
    f: float,
    method: str,
    shots: int,
    reps: int,
    seed: int,
    sampling: str = "exact",
    backend: Any = None,
) -> dict[str, float]:
    """MSE of the raw and clipped estimates over ``reps`` seeded rows of ``shots`` shots."""
    rows_a = {k: torch.full((reps,), v, dtype=torch.float64) for k, v in pa.items()}
    rows_b = {k: torch.full((reps,), v, dtype=torch.float64) for k, v in pb.items()}
    est = estimate_overlap(
        circuit, rows_a, rows_b, method=method, shots=shots, seed=seed, sampling=sampling,
        backend=backend,
    )  # fmt: skip
    err = est.raw - f
    sq = err**2
    mse = float(sq.mean())
    return {
        "shots": shots,
        "mse": mse,
        "mse_se": float(sq.std() / math.sqrt(reps)),
        "bias": float(err.mean()),
        "rms_clipped": math.sqrt(float(((est.estimate - f) ** 2).mean())),
        "coverage": float(est.contains(f).double().mean()),
    }


def run(reps: int, seed: int, aer: bool, log: Any = print) -> dict[str, Any]:
    circuit, names = ansatz("t")
    t0 = time.perf_counter()
    rows = []
    checks = []
    for k, d in enumerate(DISTANCES):
        pa, pb, f = pair_at(circuit, names, d, seed + k)
        targets = {1e-3: "1e-3"}
        targets.setdefault(0.1 * d, "0.1*(1-F)")  # one row when they coincide
        for eps, eps_name in targets.items():
            for j, method in enumerate(OVERLAP_METHODS):
                v = float(overlap_variance(f, 1, method))
                n_star = max(1, round(v / eps**2))
                m = measure_point(circuit, pa, pb, f, method, n_star, reps, seed + 100 * k + 10 * j)
                v_hat = m["mse"] * n_star
                v_se = m["mse_se"] * n_star
                row = {
                    "one_minus_f": d,
                    "f": f,
                    "target_rms": eps,
                    "target": eps_name,
                    "method": method,
                    "shots_closed_form": n_star,
                    "shots_measured": v_hat / eps**2,
                    "shots_measured_se": v_se / eps**2,
                    "rms_raw_at_closed_form": math.sqrt(m["mse"]),
                    "rms_clipped_at_closed_form": m["rms_clipped"],
                    "bias": m["bias"],
                    "coverage95": m["coverage"],
                }
                rows.append(row)
                log(
                    f"1-F={d:g} eps={eps:g} {method:18s} N*={n_star:>9d} "
                    f"N_meas={row['shots_measured']:>11.0f} ± {row['shots_measured_se']:.0f} "
                    f"rms={row['rms_raw_at_closed_form']:.3g} "
                    f"(clipped {row['rms_clipped_at_closed_form']:.3g}) "
                    f"cover={m['coverage']:.3f}"
                )
        # cross-check: the backend's own sampling at the 1e-3 target for the last distance
        if d == DISTANCES[-1]:
            backends: list[tuple[str, Any]] = [("torch", None)]
            if aer:
                from qsem.simulators.aer import AerBackend

                backends.append(("aer", AerBackend()))
            for bname, be in backends:
                r = reps if bname == "torch" else min(reps, 200)
                for j, method in enumerate(OVERLAP_METHODS):
                    n = max(1, round(float(overlap_variance(f, 1, method)) / 1e-6))
                    sa, sb = seed + 1000 + j, seed + 2000 + j
                    a = measure_point(circuit, pa, pb, f, method, n, r, sa, "backend", be)
                    b = measure_point(circuit, pa, pb, f, method, n, r, sb, "exact", be)
                    gap = abs(a["mse"] - b["mse"])
                    tol = SIGMAS * math.hypot(a["mse_se"], b["mse_se"])
                    checks.append(
                        {
                            "backend": bname,
                            "method": method,
                            "shots": n,
                            "reps": r,
                            "mse_backend_sampling": a["mse"],
                            "mse_binomial": b["mse"],
                            "agree": gap <= tol,
                        }
                    )
                    log(
                        f"check {bname} {method}: MSE backend {a['mse']:.3g}, binomial "
                        f"{b['mse']:.3g} ({'agree' if gap <= tol else 'DISAGREE'})"
                    )
    fewest = {}
    for d in DISTANCES:
        sel = [r for r in rows if r["one_minus_f"] == d and r["target"] == "1e-3"]
        fewest[str(d)] = min(sel, key=lambda r: r["shots_measured"])["method"]
    return {
        "setup": {
            "qubits": N_QUBITS,
            "reps": reps,
            "seed": seed,
            "sampling": "exact probabilities + seeded Binomial(N, p) draws (torch engine)",
        },
        "rows": rows,
        "checks": checks,
        "fewest_shots": fewest,
        "default_method": DEFAULT_METHOD,
        "seconds": time.perf_counter() - t0,
    }


def markdown(res: dict[str, Any]) -> str:
    head = (
        "| 1 − F | target RMS | method | shots (closed form) | shots (measured ± SE) "
        "| RMS at closed-form N | 95% coverage |\n"
        "|---|---|---|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in res["rows"]:
        lines.append(
            f"| {r['one_minus_f']:g} | {r['target_rms']:.0e} | {r['method']} "
            f"| {r['shots_closed_form']:,} "
            f"| {r['shots_measured']:,.0f} ± {r['shots_measured_se']:,.0f} "
            f"| {r['rms_raw_at_closed_form']:.3g} "
            f"| {r['coverage95']:.3f} |"
        )
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="R = 500 seeds per point")
    ap.add_argument("--reps", type=int, default=None, help="seeds per point (default 4000)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--aer", action="store_true", help="cross-check one point per method on Aer")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "estimators.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    reps = args.reps or (500 if args.quick else 4000)
    res = run(reps, args.seed, args.aer)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(markdown(res))
    print(f"fewest shots at RMS 1e-3: {res['fewest_shots']}; default: {res['default_method']}")
    print(f"wrote {args.out} ({res['seconds']:.0f} s)")
    bad = [c for c in res["checks"] if not c["agree"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
