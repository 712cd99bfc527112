"""docs/retraining.md's *Deciding to retrain* shows drift events of this stream: its settings and every field it shows are
those the monitor gives, so the walkthrough stays true."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import orjson

from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.decode import decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage

WALKTHROUGH = Path(__file__).resolve().parents[2] / "docs" / "retraining.md"
T0 = 1_796_428_800.0  # 2026-12-05T00:00:00Z
# a reference of 100 events, windows of 40 closing every 10: conditions fire and resolve within seconds
SETTINGS = MonitorSettings(reference_size=100, window_size=40, subwindows=4, cooldown_events=0)


def section() -> str:
    text = WALKTHROUGH.read_text()
    start = text.index("## Deciding to retrain")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.S)


def stream() -> list[RawMessage]:
    """One prediction a second from T0: income missing for events 120 to 125, then from 175 on drawn from three
    of its thirteen values."""
    out = []
    for i in range(320):
        income = None if 120 <= i < 126 else (i * 7919) % (3 if i >= 175 else 13)
        value = {"event_id": f"e{i}", "model_id": "credit-risk", "timestamp": T0 + i, "features": {"income": income}}
        out.append(RawMessage("predictions", 0, i, b"credit-risk", orjson.dumps({**value, "prediction": i % 2})))
    return out


def test_the_walkthroughs_events_are_those_of_its_stream_and_settings():
    (toml,) = blocks("toml")
    model = ModelSettings(**tomllib.loads(toml)["models"]["credit-risk"])
    monitor = ModelMonitor("credit-risk", SETTINGS, model)
    events = []
    messages = stream()
    for i in range(0, len(messages), 50):
        batches, rejected = decode_predictions(messages[i : i + 50])
        assert not rejected
        events += monitor.observe_predictions(batches[0])
    by_id = {e["alert_id"]: e for e in events}
    shown = [orjson.loads(block) for block in blocks("json")]
    assert [e["kind"] for e in shown] == ["data_drift", "scheduled_retrain"]
    for trimmed in shown:
        event = by_id[trimmed["alert_id"]]
        assert {k: event[k] for k in trimmed} == trimmed
    assert [e["kind"] for e in events] == [
        "data_quality",
        "drift_resolved",  # the data_quality condition, before the drift
        "data_drift",
        "scheduled_retrain",
    ]
    drift = shown[0]["alert_id"]
    assert (
        f"streamdrift approve {drift} --by" in section() and f"pending   {drift}  credit-risk  data_drift" in section()
    )
