"""benchmarks/concept_delay.py: the concept detector alone, as the monitor builds it, against River's ADWIN."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "concept_delay.py"


def test_an_abrupt_change_s_delays_on_one_plain_stream(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("concept_delay", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--seeds", "3-4", "--kinds", "abrupt"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["abrupt"]["delays"] == [308, 275]  # the default detector's, pinned
    assert result["abrupt"]["River ADWIN"]["detected"] == 2
