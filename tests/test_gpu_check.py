"""``make gpu-check`` on a machine without CUDA: it says so, writes its JSON, exits 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CUDA path runs the full check")
def test_gpu_check_without_cuda_reports_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA" in proc.stdout
    assert "Traceback" not in proc.stderr
    report = json.loads(out.read_text())
    assert report["cuda"] is False and report["ok"] is True
    assert report["aer_gpu"]["status"] == "not available"
    assert str(out) in proc.stdout


def test_gpu_check_workloads_run_and_agree_with_themselves_on_cpu() -> None:
    """The CUDA path's workloads, small, on the CPU twice: finite and deterministic."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_check import _workloads

    for name, fn in _workloads("small").items():
        a, b = fn("cpu"), fn("cpu")
        assert a.dtype == torch.float64 and a.numel() > 0, name
        assert bool(torch.isfinite(a).all()), name
        torch.testing.assert_close(a, b, rtol=0, atol=0)
