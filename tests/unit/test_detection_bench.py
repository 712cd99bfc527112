"""benchmarks/detection_bench.py runs every scenario in its full mode too (the README's figures come from it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "detection_bench.py"


def test_the_full_run_sizes_every_scenario_the_quick_run_sizes() -> None:
    spec = importlib.util.spec_from_file_location("detection_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert set(bench.sizes(quick=False)) == set(bench.sizes(quick=True))
