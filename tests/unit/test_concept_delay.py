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
    adwin = (
        script.adwin_alarms(script.errors("plain", "abrupt", 3)),
        script.adwin_alarms(script.errors("plain", "abrupt", 4)),
    )
    differences = [308 - script.delay(adwin[0])[0], 275 - script.delay(adwin[1])[0]]
    assert result["abrupt"]["paired"] == {
        "streamdrift_sooner": sum(d < 0 for d in differences),
        "adwin_sooner": sum(d > 0 for d in differences),
        "median_difference": sum(differences) / 2,
    }
