"""Every ``make bench`` workload module imports (``benchmarks/run_all.py`` imports each by
name only when it runs, so a moved private name broke ``make bench`` while the suite
passed: ``benchmarks/similarity.py`` imported ``_swap_circuit`` from the module it left)."""

from __future__ import annotations

import importlib

import pytest

from benchmarks.run_all import WORKLOADS


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_module_imports(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__name__ == f"benchmarks.{name}"
