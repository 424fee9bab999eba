"""GPU check: CUDA tests and the engine workloads at GPU sizes, CUDA against CPU.

    python benchmarks/gpu_check.py              # make gpu-check
    python benchmarks/gpu_check.py --out X.json

Needs nothing beyond what the environment already has (no network): on a machine
without CUDA it reports "no CUDA", writes the JSON and exits 0. With CUDA it

1. runs the CUDA tests (``pytest -m gpu tests/test_gpu.py``);
2. runs each workload on CUDA and on the CPU — the same circuit, parameters and
   dtype (complex64) — checks that they agree (``ATOL``), and times both (CUDA:
   one warm-up, then ``--repeats`` synchronised calls; CPU: fewer repeats):

   * ``sv_qubit``: 22-qubit statevector, batch 8, RY encoding + 2 layers of RY/RZ + CNOT
     ring, forward + backward of ``Σ <Z_i>`` (the hybrid_qubit step at GPU size);
   * ``sv_qutrit``: 12-qutrit statevector, batch 8, TRY encoding + 2 layers of two TRYs +
     TAdd ring, forward + backward of the first qutrit's probabilities;
   * ``dm_qubit``: the dense 12-qubit density matrix of ``benchmarks.dense_dm``, batch 8,
     no grad, ``<Z_i>`` of every wire;
   * ``scale_qubit`` / ``scale_qutrit``: the circuits of ``benchmarks.scale_qubit`` (26
     qubits) and ``benchmarks.scale_qutrit`` (14 qutrits), B=1, forward + adjoint
     gradient of the MSE over every ``<Z_i>`` / ``<λ_3>``; their rows add the bytes the
     step must move, the effective GB/s and ``x_floor`` against the card's copy bandwidth;

3. runs ``dm_qubit`` on Aer's GPU method (``AerSimulator(method="density_matrix",
   device="GPU", precision="single")``) where qiskit-aer-gpu reports a GPU, checked
   against qsem; otherwise the JSON says why it was "not available".

Every finding goes into one JSON file (path printed at the end); the exit status is 1
when a test fails or CUDA and CPU disagree, else 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "benchmarks" / "gpu_check.json"
ATOL = 1e-3  # complex64 on two devices, sums over up to 22 wires
TEST_TIMEOUT_S = 240


def _timed(
    fn: Callable[[], Any], repeats: int, sync: Callable[[], None]
) -> tuple[Any, list[float]]:
    out = fn()  # warm-up (plan compile, CUDA kernels, allocator)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return out, times


#: register sizes (qubits of the statevector, qutrits, qubits of the density matrix)
SIZES = {"gpu": (22, 12, 12), "small": (6, 4, 4)}
#: the scale rows (B=1, adjoint forward + gradient): qubits and qutrits
SCALE_SIZES = {"gpu": (26, 14), "small": (6, 4)}


def _workloads(size: str = "gpu") -> dict[str, Callable[[str], Any]]:
    """Each workload: ``device -> result tensor`` (on the CPU, float64).

    ``size="small"``: the same work on small registers (a smoke test of this script).
    """
    import torch

    from benchmarks.memory import _params, _qubit_circuit, _qutrit_circuit
    from qsem.circuits import PauliString
    from qsem.simulators import TorchSimulator, expval, probs

    def on(params: dict[str, Any], device: str, grad: bool) -> dict[str, Any]:
        return {
            k: v.to(device).detach().requires_grad_(grad and v.dim() == 0)
            for k, v in params.items()
        }

    nq, nt, nd = SIZES[size]

    def sv_qubit(device: str) -> Any:
        c = _qubit_circuit(nq, 2)
        p = on(_params(c, 8, 0), device, True)
        ev = expval(
            TorchSimulator(device=device).run(c, p), [PauliString("Z", [i]) for i in range(nq)]
        )
        ev.sum().backward()
        grads = torch.stack([v.grad for v in p.values() if v.grad is not None])
        return torch.cat([ev.detach().reshape(-1), grads]).double().cpu()

    def sv_qutrit(device: str) -> Any:
        c = _qutrit_circuit(nt, 2)
        p = on(_params(c, 8, 0), device, True)
        pr = probs(TorchSimulator(device=device).run(c, p), [0])
        (pr[:, 0] - pr[:, 2]).sum().backward()
        grads = torch.stack([v.grad for v in p.values() if v.grad is not None])
        return torch.cat([pr.detach().reshape(-1), grads]).double().cpu()

    def dm_qubit(device: str) -> Any:
        c = _qubit_circuit(nd, 2)
        p = on(_params(c, 8, 0), device, False)
        sim = TorchSimulator("density_matrix", dm_method="dense", device=device)
        with torch.no_grad():
            ev = expval(sim.run(c, p), [PauliString("Z", [i]) for i in range(nd)])
        return ev.double().cpu()

    sq, st = SCALE_SIZES[size]

    def scale(circuit: Any, obs: list[Any], device: str) -> Any:
        from qsem.simulators import adjoint_expval

        n = circuit.num_wires
        x = torch.linspace(0.1, 3.0, n, device=device)
        w = torch.linspace(-2.0, 2.0, circuit.parameter_lengths["w"])
        w = w.to(device).requires_grad_()
        e = adjoint_expval(circuit, {"x": x, "w": w}, obs, dtype=torch.complex64, device=device)
        ((e.double() - 0.5) ** 2).mean().backward()
        assert w.grad is not None
        return torch.cat([e.detach().reshape(-1).double(), w.grad.double()]).cpu()

    def scale_qubit(device: str) -> Any:
        from benchmarks.scale_qubit import LAYERS, build_circuit

        obs = [PauliString("Z", [i]) for i in range(sq)]
        return scale(build_circuit(sq, LAYERS), obs, device)

    def scale_qutrit(device: str) -> Any:
        from benchmarks.scale_qutrit import LAYERS, build_circuit
        from qsem.circuits import GellMann

        obs = [GellMann(3, wires=[i]) for i in range(st)]
        return scale(build_circuit(st, LAYERS), obs, device)

    return {
        "sv_qubit": sv_qubit,
        "sv_qutrit": sv_qutrit,
        "dm_qubit": dm_qubit,
        "scale_qubit": scale_qubit,
        "scale_qutrit": scale_qutrit,
    }


def _scale_bytes(name: str) -> int | None:
    """Bytes the scale rows must move (``benchmarks.harness.floor_bytes``), for GB/s."""
    import torch

    from benchmarks.harness import floor_bytes

    if name == "scale_qubit":
        from benchmarks.scale_qubit import LAYERS, build_circuit

        c = build_circuit(SCALE_SIZES["gpu"][0], LAYERS)
    elif name == "scale_qutrit":
        from benchmarks.scale_qutrit import LAYERS, build_circuit  # type: ignore[assignment]

        c = build_circuit(SCALE_SIZES["gpu"][1], LAYERS)
    else:
        return None
    return floor_bytes(c, "statevector", 1, torch.complex64, backward=True)


def _aer_gpu(qsem_value: Any, repeats: int) -> dict[str, Any]:
    try:
        from qiskit_aer import AerSimulator
    except ImportError as exc:
        return {"status": "not available", "reason": f"qiskit-aer not importable ({exc})"}
    devices = list(AerSimulator().available_devices())
    if "GPU" not in devices:
        return {
            "status": "not available",
            "reason": f"Aer's available devices are {devices} (no qiskit-aer-gpu build)",
        }
    import torch

    from benchmarks.memory import _params, _qubit_circuit
    from qsem.circuits import PauliString
    from qsem.simulators.aer import AerBackend

    c = _qubit_circuit(12, 2)
    p = _params(c, 8, 0)
    names = list(c.parameters)
    values = torch.stack([p[k].double().expand(8) for k in names], 1)
    aer = AerBackend(method="density_matrix", device="GPU", precision="single")
    obs = [PauliString("Z", [i]) for i in range(12)]
    out, times = _timed(lambda: aer.expval(c, values, names, obs), repeats, lambda: None)
    dev = float((out.double() - qsem_value).abs().max())
    return {
        "status": "run",
        "times_s": times,
        "max_abs_dev_vs_qsem_cuda": dev,
        "agree": dev <= ATOL,
    }


def run_tests() -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_gpu.py",
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=TEST_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"command": " ".join(cmd), "rc": None, "passed": False, "summary": "timed out"}
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return {
        "command": " ".join(cmd),
        "rc": proc.returncode,
        "passed": proc.returncode == 0,
        "summary": tail[-1] if tail else "",
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file ({DEFAULT_OUT})")
    ap.add_argument("--repeats", type=int, default=5, help="timed CUDA calls per workload")
    ap.add_argument("--cpu-repeats", type=int, default=2, help="timed CPU calls per workload")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.harness import _cpu_model, copy_bandwidth

    t_start = time.perf_counter()
    report: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        },
        "cuda": torch.cuda.is_available(),
    }
    ok = True
    if not torch.cuda.is_available():
        report["reason"] = "no CUDA: torch.cuda.is_available() is False; nothing run on a GPU"
        print(f"gpu-check: {report['reason']}")
        report["aer_gpu"] = {
            "status": "not available",
            "reason": "no CUDA"
            + ("" if importlib.util.find_spec("qiskit_aer") else "; qiskit-aer not installed"),
        }
    else:

        def sync() -> None:
            torch.cuda.synchronize()

        report["device"] = torch.cuda.get_device_name(0)
        report["cuda_copy_bandwidth"] = copy_bandwidth(1 << 30, device="cuda")
        print(f"gpu-check on {report['device']}: CUDA tests ...", flush=True)
        report["tests"] = run_tests()
        ok &= bool(report["tests"]["passed"])
        print(f"  tests: {report['tests']['summary']}", flush=True)
        results: dict[str, Any] = {}
        dm_cuda = None
        for name, fn in _workloads().items():
            cuda_out, cuda_t = _timed(lambda fn=fn: fn("cuda"), args.repeats, sync)
            cpu_out, cpu_t = _timed(lambda fn=fn: fn("cpu"), args.cpu_repeats, lambda: None)
            dev = float((cuda_out - cpu_out).abs().max())
            agree = dev <= ATOL
            ok &= agree
            results[name] = {
                "cuda_times_s": cuda_t,
                "cpu_times_s": cpu_t,
                "cuda_median_s": sorted(cuda_t)[len(cuda_t) // 2],
                "cpu_median_s": sorted(cpu_t)[len(cpu_t) // 2],
                "speedup_cpu_over_cuda": min(cpu_t) / min(cuda_t),
                "max_abs_dev": dev,
                "agree": agree,
            }
            nbytes = _scale_bytes(name)
            if nbytes:  # effective bandwidth of the step against the card's copy bandwidth
                gbps = nbytes / min(cuda_t) / 1e9
                results[name]["floor_bytes"] = nbytes
                results[name]["effective_gb_s"] = gbps
                results[name]["x_floor"] = report["cuda_copy_bandwidth"] / 1e9 / gbps
            print(
                f"  {name}: CUDA {min(cuda_t):.3f} s, CPU {min(cpu_t):.3f} s, "
                f"max |dev| {dev:.1e} ({'agree' if agree else 'DISAGREE'})",
                flush=True,
            )
            if name == "dm_qubit":
                dm_cuda = cuda_out
        report["workloads"] = results
        report["aer_gpu"] = _aer_gpu(dm_cuda, max(1, args.repeats // 2))
        ok &= report["aer_gpu"].get("agree", True)
    print(f"  aer_gpu: {report['aer_gpu']['status']} {report['aer_gpu'].get('reason', '')}")
    report["seconds"] = time.perf_counter() - t_start
    report["ok"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"gpu-check: {'ok' if ok else 'FAILED'}; results written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
