"""Attribution drift (issue 23, item 7): predictions may carry attributions (feature -> contribution); the
monitor watches each feature's absolute attribution against the reference and raises attribution_drift
when the model's reliance on its features shifts. Bad attributions are dead-lettered."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.core import decode
from streamdrift.core import state as snapshot
from streamdrift.core.config import MonitorSettings
from streamdrift.core.decode import decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage

T0 = 1_700_000_000.0
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "drift_event.schema.json").read_text())
SETTINGS = MonitorSettings(reference_size=1000, window_size=500, subwindows=5)
SHIFT_AT = 1500


def stream(n: int, seed: int = 4, attributed_every: int = 1, shift_at: int = SHIFT_AT) -> list[RawMessage]:
    """Features a and b with the same distribution throughout; from ``shift_at`` on the model leans on b
    instead of a: a's attributions shrink, b's grow (every ``attributed_every``-th prediction carries them)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = float(rng.normal()), float(rng.normal())
        weight_a, weight_b = (0.2, 0.8) if i >= shift_at else (0.8, 0.2)
        event = {
            "event_id": f"e{i}",
            "model_id": "m",
            "timestamp": T0 + i,
            "features": {"a": round(a, 6), "b": round(b, 6)},
            "prediction": int(a + b > 0),
            "score": 0.5,
        }
        if i % attributed_every == 0:
            event["attributions"] = {"a": round(weight_a * a, 6), "b": round(weight_b * b, 6)}
        out.append(RawMessage("predictions", 0, i, b"m", orjson.dumps(event)))
    return out


def observe(monitor: ModelMonitor, raw: list[RawMessage], batch_size: int) -> list[dict]:
    events = []
    for i in range(0, len(raw), batch_size):
        batches, rejected = decode_predictions(raw[i : i + batch_size])
        assert not rejected
        events += monitor.observe_predictions(batches[0])
    return events


def test_a_shift_in_the_model_s_reliance_on_its_features_is_one_attribution_drift_event_naming_them():
    raw = stream(3000)
    events = observe(ModelMonitor("m", SETTINGS), raw, 100)
    fired = [e for e in events if e["kind"] == "attribution_drift"]
    assert len(fired) == 1
    event = fired[0]
    assert SHIFT_AT <= event["window"]["end_offset"] < SHIFT_AT + 500  # within a window of the change
    # each feature's mean absolute attribution over the reference (the first 1,000) and the event's window
    attributions = [orjson.loads(m.value)["attributions"] for m in raw]
    end = event["window"]["end_offset"]
    means = {
        name: (
            float(np.mean([abs(a[name]) for a in attributions[:1000]])),
            float(np.mean([abs(a[name]) for a in attributions[end - 499 : end + 1]])),
        )
        for name in ("a", "b")
    }
    for name, (reference, window) in means.items():
        assert event["details"]["mean_abs_attribution"][name] == {
            "reference": pytest.approx(reference, rel=1e-5),
            "window": pytest.approx(window, rel=1e-5),
        }
    # ranked by the change relative to the reference's mean: b's (x4 at most) before a's (/4 at most)
    change = {name: abs(window - reference) / reference for name, (reference, window) in means.items()}
    assert [f["feature"] for f in event["top_features"]] == ["b", "a"]
    assert [f["score"] for f in event["top_features"]] == [pytest.approx(change["b"]), pytest.approx(change["a"])]
    assert event["action"] == "investigate"
    # the features' and the outputs' distributions did not move: no data or prediction drift
    assert not [e for e in events if e["kind"] in ("data_drift", "prediction_drift")]
    jsonschema.validate({**event, "emitted_at": "2026-01-01T00:00:00.000Z"}, SCHEMA)


def test_without_a_change_there_is_no_attribution_drift():
    steady = stream(5000, shift_at=10**9)
    assert not [e for e in observe(ModelMonitor("m", SETTINGS), steady, 100) if e["kind"] == "attribution_drift"]


@pytest.mark.parametrize("batch_size", [1, 77, 3000])
def test_attribution_drift_and_the_state_do_not_depend_on_the_batches_even_when_some_predictions_carry_none(
    batch_size,
):
    raw = stream(4000, attributed_every=2)  # the attributions' sketch counts the carrying predictions only
    one, other = ModelMonitor("m", SETTINGS), ModelMonitor("m", SETTINGS)
    events = observe(one, raw, 500)
    assert [e["kind"] for e in events].count("attribution_drift") == 1
    assert observe(other, raw, batch_size) == events
    assert snapshot.dumps(one.state()) == snapshot.dumps(other.state())


def test_a_restored_monitor_raises_the_same_attribution_drift_and_an_old_snapshot_loads():
    raw = stream(3000)
    straight = observe(ModelMonitor("m", SETTINGS), raw, 100)
    first = ModelMonitor("m", SETTINGS)
    events = observe(first, raw[:1200], 100)
    restored = ModelMonitor.from_state("m", SETTINGS, snapshot.loads(snapshot.dumps(first.state())))
    assert events + observe(restored, raw[1200:], 100) == straight
    old = dict(snapshot.loads(snapshot.dumps(first.state())))
    del old["attributions"]  # written before attributions: their sketch starts its warm-up again
    assert ModelMonitor.from_state("m", SETTINGS, old).attributions.rows == 0


def test_both_decoding_paths_give_the_same_batches_with_and_without_attributions(path):
    raw = stream(40, attributed_every=3)
    batches, rejected = decode_predictions(raw)
    assert not rejected
    expected = [orjson.loads(m.value).get("attributions") for m in raw]  # None where a prediction has none
    assert batches[0].attributions == expected
    assert all(type(x) is float for a in batches[0].attributions if a for x in a.values())
    plain, _ = decode_predictions(stream(40, attributed_every=10_000)[1:])  # the first alone carries them
    assert plain[0].attributions is None


@pytest.mark.parametrize(
    ("attributions", "reason"),
    [
        ({"a": "0.3"}, "field 'attributions' must map each feature to a number of magnitude at most 1e+15, got string"),
        ({"a": None}, "field 'attributions' must map each feature to a number of magnitude at most 1e+15, got null"),
        ({"a": 2e15}, "field 'attributions' must map each feature to a number of magnitude at most 1e+15, got number"),
        ({f"f{i}": 0.0 for i in range(1001)}, "field 'attributions' has 1001 features, at most 1000 allowed"),
        ([0.3], "field 'attributions' must be an object of feature to number, got array"),
    ],
)
def test_bad_attributions_are_dead_lettered_with_a_reason_that_names_the_field_not_the_value(
    path, attributions, reason
):
    good = stream(3)
    event = {**orjson.loads(good[1].value), "attributions": attributions}
    bad = RawMessage("predictions", 0, 1, b"m", orjson.dumps(event))
    batches, rejected = decode_predictions([good[0], bad, good[2]])
    assert [r.reason for r in rejected] == [reason]
    assert [len(b) for b in batches] == [2]  # the others are decoded: a bad event never stops the poll
    assert decode.MAX_ATTRIBUTIONS == 1000


def test_absolute_means_are_those_of_the_reference_rows_and_of_the_latest_sub_windows_rows():
    """AbsoluteMeans against the rows themselves, batch after batch (mutation testing, issue 18): the
    reference's first rows, the window's rows from the oldest sub-window the ring holds to the last row, a
    feature first seen after the reference (not tracked: the sketch's reference does not track it), one never
    seen again, one past ``max_columns`` (first in its batch), and batches that cross the reference's end and
    the sub-windows'. Quarters: exact sums."""
    from streamdrift.core.attribution import AbsoluteMeans

    reference_size, slot_size, subwindows = 3, 4, 3
    means = AbsoluteMeans(reference_size, slot_size, subwindows, max_columns=3)
    means.update({})  # no columns: no rows
    assert means.rows == 0 and means.window() == {}
    rng = np.random.default_rng(4)
    rows: list[dict[str, float]] = []  # every row's attributions, as the model here keeps them
    tracked: list[str] = []
    # 'late' first seen after the reference and gone later; 'z' past max_columns, first in its batches
    ab, late, z = ["a", "b"], ["a", "b", "late"], ["z", "late", "a", "b"]
    schedule = [
        (1, ab),
        (1, ab),
        (5, ab),
        (2, late),
        (7, z),
        (3, ["z", "a", "b"]),
        (1, ab),
        (6, ["z", "a", "b"]),
        (9, ab),
    ]
    for size, names in schedule:
        columns = {}
        for name in names:
            values = rng.integers(0, 12, size) / 4
            values[rng.random(size) < 0.2] = np.nan
            columns[name] = values
        for i in range(size):
            rows.append({name: float(columns[name][i]) for name in names})
        # the first three names by name order of those the reference's rows carry (NaN: not carried)
        carried = {name for row in rows[:reference_size] for name, value in row.items() if value == value}
        tracked = sorted(carried)[:3]
        means.update(columns)
        assert means.rows == len(rows)

        def mean(name: str, part: list[dict[str, float]]) -> float | None:
            values = [row[name] for row in part if name in row and row[name] == row[name]]
            return sum(values) / len(values) if values else None

        past = len(rows) - reference_size
        window_start = max(0, (past - 1) // slot_size * slot_size - (subwindows - 1) * slot_size) if past > 0 else 0
        window = rows[reference_size + window_start :] if past > 0 else []
        expected = {name: (mean(name, rows[:reference_size]), mean(name, window)) for name in sorted(tracked)}
        assert means.window() == expected, len(rows)
    assert tracked == ["a", "b"] and "late" not in means.state()["reference"]


def test_predictions_carrying_empty_attributions_count_the_same_in_any_batching():
    """``"attributions": {}`` is valid: the attributions' sketch counts the row, and the means, which close their
    sub-windows at the sketch's row counts, must count it too, in a batch where every row carrying attributions
    carries none as in one where others carry some (a batch of empty ones gave the means no column, so no row)."""
    raw = stream(1500)
    for i in range(0, len(raw), 7):  # every seventh prediction carries an empty object
        event = orjson.loads(raw[i].value)
        raw[i] = RawMessage("predictions", 0, i, b"m", orjson.dumps({**event, "attributions": {}}))
    one, other = ModelMonitor("m", SETTINGS), ModelMonitor("m", SETTINGS)
    events = observe(one, raw, 500)
    assert observe(other, raw, 1) == events
    assert [m.attributions.seen for m in (one, other)] == [m.attribution_means.rows for m in (one, other)] == [1500] * 2
    assert snapshot.dumps(one.state()) == snapshot.dumps(other.state())


def test_the_means_track_the_names_the_sketch_tracks_whatever_the_batching():
    """With more attribution names than ``max_features``, the sketch's reference tracks the first ``max_features``
    by name order of those its warm-up saw (``StreamSketch._keeps``); the means must track those same names, in
    any batching. They took names as they came, a batch's in name order and whether or not a row of it carried
    one: 'd' then 'a' in batches of one, 'a' and 'b' in one batch (where 'b', 'c' and 'd' come in the same rows)."""
    settings = MonitorSettings(reference_size=50, window_size=40, subwindows=4, max_features=2)
    raw = []
    for i in range(120):
        names = ["d"] if i == 0 else ["a"] if i == 1 else ["a", "b", "c", "d"]
        event = {
            "event_id": f"e{i}",
            "model_id": "m",
            "timestamp": T0 + i,
            "features": {"x": float(i % 7)},
            "prediction": 1,
            "attributions": {name: float(i % 5 + j) for j, name in enumerate(names)},
        }
        raw.append(RawMessage("predictions", 0, i, b"m", orjson.dumps(event)))
    one, other = ModelMonitor("m", settings), ModelMonitor("m", settings)
    assert observe(one, raw, 120) == observe(other, raw, 1)
    assert [c.name for c in one.attributions.columns] == ["a", "b"]
    assert sorted(one.attribution_means.reference) == sorted(other.attribution_means.reference) == ["a", "b"]
    assert snapshot.dumps(one.state()) == snapshot.dumps(other.state())


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 10])
def test_a_name_before_those_tracked_takes_the_last_one_s_place_during_the_reference_only(batch):
    """More names than ``max_columns`` in the reference's rows: the first by name order are tracked, a name that
    comes later but sorts before them takes the last one's place (its rows dropped), in any batching; after the
    reference no name is added, and a sub-window tallies only the names its rows carry."""
    from streamdrift.core.attribution import AbsoluteMeans

    nan = np.nan
    rows = [  # a batch's columns: NaN where a row does not carry the name
        {"d": 4.0, "c": 3.0, "b": nan, "a": nan, "e": nan},
        {"d": 8.0, "c": nan, "b": 2.0, "a": nan, "e": nan},
        {"d": nan, "c": 1.0, "b": nan, "a": 1.0, "e": nan},
        {"d": nan, "c": nan, "b": 6.0, "a": 3.0, "e": nan},
        {"d": 1.0, "c": nan, "b": nan, "a": nan, "e": 5.0},  # the reference's end: 'e' comes after it
        {"d": nan, "c": nan, "b": nan, "a": nan, "e": 7.0},
        {"d": nan, "c": nan, "b": 9.0, "a": nan, "e": 2.0},
    ]
    means = AbsoluteMeans(reference_size=4, slot_size=2, subwindows=2, max_columns=2)
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        means.update({name: np.array([row[name] for row in part]) for name in "abcde"})
    assert means.state() == {
        "rows": 7,
        "reference": {"a": [2.0, 4.0], "b": [2.0, 8.0]},
        "ring": [{}, {"b": [1.0, 9.0]}],  # rows 4-5 (the first sub-window) carry neither 'a' nor 'b'; row 6 'b'
    }


def _varied(n: int, seed: int) -> list[RawMessage]:
    """Predictions whose attributions name 'c' and a random few of the five others (none, or an empty object, at
    times): more names than ``max_features``, names that come and go, a model leaning on 'c' from the middle on."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        event = {
            "event_id": f"e{i}",
            "model_id": "m",
            "timestamp": T0 + i,
            "features": {"x": round(float(rng.normal()), 3)},
        }
        event["prediction"] = 1
        if rng.random() < 0.8:
            names = [name for name in "abcdef" if name == "c" or rng.random() < 0.35] if rng.random() < 0.9 else []
            lean = 5.0 if i >= n // 2 else 1.0
            event["attributions"] = {k: round(float(rng.normal()) * (lean if k == "c" else 1.0), 3) for k in names}
        out.append(RawMessage("predictions", 0, i, b"m", orjson.dumps(event)))
    return out


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 3),
    cuts=st.one_of(  # cuts anywhere, or a stretch of batches of one row (a row alone: an empty object alone)
        st.lists(st.integers(1, 399), max_size=60), st.integers(1, 299).map(lambda a: list(range(a, a + 100)))
    ),
)
def test_varied_attribution_names_give_the_same_means_and_events_in_any_batching(seed, cuts):
    """The property behind the two tests above: whatever the names the predictions' attributions carry, the
    attributions' sketch and means end in the same state bytes, with the same events, however the stream is cut."""
    settings_ = MonitorSettings(reference_size=60, window_size=40, subwindows=4, max_features=3)
    raw = _varied(400, seed)
    ends = sorted({0, len(raw), *cuts})
    whole, cut = ModelMonitor("m", settings_), ModelMonitor("m", settings_)
    expected = observe(whole, raw, len(raw))
    drifts = [e for e in expected if e["kind"] == "attribution_drift"]  # not vacuous: the means rank the features
    assert len(drifts) == 1 and drifts[0]["top_features"][0]["feature"] == "c"
    events = []
    for start, stop in zip(ends, ends[1:]):
        events += observe(cut, raw[start:stop], stop - start)
    assert events == expected
    assert snapshot.dumps(cut.state()) == snapshot.dumps(whole.state())
