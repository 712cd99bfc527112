"""Issue 22 on the concept detector through the monitor: a false alarm never masks a real change, and every
concept_drift event says where the change began (``change_started_at``, the input's timestamp form)."""

from __future__ import annotations

import numpy as np
import orjson

from streamdrift.core.config import MonitorSettings
from streamdrift.core.records import RawMessage
from streams import FB, run_monitors

SETTINGS = MonitorSettings()
T0 = 1_700_000_000  # the stream's first event time (epoch seconds, as written)


def error_rate_stream(n: int, changes: dict[int, float], seed: int) -> list[RawMessage]:
    """Feedback carrying its prediction, one a second; from each position in ``changes`` on, a prediction
    is wrong with that probability."""
    rng = np.random.default_rng(seed)
    out, rate = [], 0.0
    for i in range(n):
        rate = changes.get(i, rate)
        label = int(rng.random() < 0.5)
        prediction = 1 - label if rng.random() < rate else label
        event = {"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "label": label, "prediction": prediction}
        out.append(RawMessage(FB, 0, i, b"m", orjson.dumps(event)))
    return out


def _concept(messages: list[RawMessage], batch: int = 1000) -> list[tuple[int, int]]:
    """(offset of the detection, position where the change began) of each concept_drift event."""
    _, events = run_monitors(messages, batch, SETTINGS)
    return [(e["window"]["end_offset"], e["change_started_at"] - T0) for e in events if e["kind"] == "concept_drift"]


def test_a_false_alarm_followed_by_a_real_change_reports_both_the_real_one_within_its_usual_delay():
    """A burst of errors (60 events at 60 %) raises an alarm; the error rate then rises for good 1,500 events
    later, inside the 5,000-event cooldown. The cooldown used to swallow that second detection (issue 22:
    only the windowed accuracy test reported the change); the detector restarts at once after an alarm, and
    each of its detections is a change against its new reference, so both are published."""
    for seed, usual, after_false_alarm in ((1, 4176, 4175), (2, 4195, 4232)):
        alone = _concept(error_rate_stream(6000, {0: 0.1, 4000: 0.25}, seed))
        assert [at for at, _ in alone] == [usual]
        found = _concept(error_rate_stream(6000, {0: 0.1, 2500: 0.6, 2560: 0.1, 4000: 0.25}, seed))
        assert [at for at, _ in found] == [found[0][0], after_false_alarm]
        assert 2500 <= found[0][0] < 2560  # the burst's alarm
        assert after_false_alarm - 4000 <= 1.25 * (usual - 4000)  # within the usual delay (176 and 195)


def test_change_started_at_is_where_the_firing_chart_last_left_zero_whatever_the_batches():
    """The CUSUM's last reset before it crossed: at most a few dozen events from the true change (3,000 and
    8,060 here), in the input's form (epoch seconds in, epoch seconds out), the same for any batching."""
    messages = error_rate_stream(12_000, {0: 0.1, 3000: 0.4, 8060: 0.9}, seed=1)
    found = _concept(messages, 1000)
    assert found == [(3077, 3001), (8097, 8047)]
    assert _concept(messages, 13) == found
    assert _concept(messages, 97) == found


def test_every_drift_event_but_scheduled_retraining_says_where_its_change_began():
    """Issue 22, item 6: concept drift its CUSUM's estimate, the windowed kinds their window's start."""
    from streams import demo_messages

    _, events = run_monitors(demo_messages(12_000, seed=7, drift_at=2000), 1000, SETTINGS)
    assert {e["kind"] for e in events} >= {"data_drift", "concept_drift"}
    for e in events:
        if e["kind"] == "concept_drift":
            assert isinstance(e["change_started_at"], float)  # the demo writes epoch seconds
            assert e["window"]["count"] and e["change_started_at"] <= e["detected_at"]
        else:
            assert e["change_started_at"] == e["window"]["start_time"]
