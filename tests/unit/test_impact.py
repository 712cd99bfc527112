"""drift_impact (issue 23, item 5): why the scores moved, from the features' reference's mean score per bin
weighted by the shift of the bin frequencies (core/impact.py), in every prediction_drift event."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from streamdrift.core import impact, reference
from streamdrift.core import state as snapshot
from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.decode import decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.sketch import Column
from streamdrift.core.warmup import WarmupColumn

T0 = 1_700_000_000.0
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "drift_event.schema.json").read_text())
# windows of 500 closing every 100 rows, after a warm-up of 1,000 (a multiple of 100: the windows of the
# features and of the outputs end at the same rows)
SETTINGS = MonitorSettings(reference_size=1000, window_size=500, subwindows=5)
DRIFT_AT = 1500


def stepped(n: int, seed: int = 5) -> list[dict]:
    """The score is a quarter of feature a (0 to 3), exactly; b cycles through 0 to 9 and has nothing to do
    with the score. From DRIFT_AT on, a is mostly 3: the scores rise, all because of a."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = int(rng.choice(4, p=(0.1, 0.1, 0.2, 0.6) if i >= DRIFT_AT else (0.25, 0.25, 0.25, 0.25)))
        rows.append({"features": {"a": a, "b": i % 10}, "score": a / 4})
    return rows


def smooth(n: int, seed: int = 11) -> list[dict]:
    """The score is a logistic function of a (continuous) and not of b; a's mean moves from 0 to 1 at DRIFT_AT."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = float(rng.normal(1.0 if i >= DRIFT_AT else 0.0, 1.0))
        b = float(rng.normal(0.0, 1.0))
        rows.append({"features": {"a": round(a, 6), "b": round(b, 6)}, "score": round(1 / (1 + math.exp(-a)), 6)})
    return rows


def messages(rows: list[dict]) -> list[RawMessage]:
    out = []
    for i, row in enumerate(rows):
        value = {"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "prediction": int(row["score"] >= 0.5)}
        out.append(RawMessage("predictions", 0, i, b"m", orjson.dumps({**value, **row})))
    return out


def observe(monitor: ModelMonitor, raw: list[RawMessage], batch_size: int) -> list[dict]:
    events = []
    for i in range(0, len(raw), batch_size):
        batches, rejected = decode_predictions(raw[i : i + batch_size])
        assert not rejected
        events += monitor.observe_predictions(batches[0])
    return events


def prediction_drift(events: list[dict]) -> dict:
    fired = [e for e in events if e["kind"] == "prediction_drift"]
    assert fired, [e["kind"] for e in events]
    return fired[0]


def test_a_feature_that_moves_the_scores_explains_the_whole_change_and_one_that_does_not_explains_none():
    rows = stepped(2500)
    event = prediction_drift(observe(ModelMonitor("m", SETTINGS), messages(rows), 97))
    impact = event["drift_impact"]
    # the event's window: the 500 rows up to its last offset; the reference: the first 1,000
    end = event["window"]["end_offset"]
    window = [r["score"] for r in rows[end - 499 : end + 1]]
    reference_mean = sum(r["score"] for r in rows[:1000]) / 1000
    assert impact["reference_mean_score"] == pytest.approx(reference_mean, rel=1e-6)
    assert impact["window_mean_score"] == pytest.approx(sum(window) / 500, rel=1e-6)
    assert impact["observed_change"] == pytest.approx(sum(window) / 500 - reference_mean, rel=1e-6)
    # the score is a function of a's bins: a's shift explains the observed change exactly (to rounding);
    # b's window frequencies are the reference's exactly (a multiple of its cycle): it explains exactly 0
    assert impact["features"] == [
        {"feature": "a", "explained_change": impact["observed_change"]},
        {"feature": "b", "explained_change": 0.0},
    ]
    assert impact["observed_change"] > 0.05  # the first window that fires: partly shifted
    jsonschema.validate({**event, "emitted_at": "2026-01-01T00:00:00.000Z"}, SCHEMA)  # the publisher stamps it


def test_with_continuous_features_the_one_the_score_depends_on_explains_most_of_the_change():
    event = prediction_drift(observe(ModelMonitor("m", SETTINGS), messages(smooth(2500)), 250))
    impact = event["drift_impact"]
    explained = {f["feature"]: f["explained_change"] for f in impact["features"]}
    assert impact["observed_change"] > 0.05
    # binned: within a tenth of the observed change; b's shift is noise
    assert explained["a"] == pytest.approx(impact["observed_change"], rel=0.1)
    assert abs(explained["b"]) < 0.1 * impact["observed_change"]
    assert [f["feature"] for f in impact["features"]] == ["a", "b"]  # ranked by the size of the change


@pytest.mark.parametrize("batch_size", [1, 61, 3000])
def test_drift_impact_and_the_state_do_not_depend_on_the_batches(batch_size):
    raw = messages(smooth(2000))
    one, other = ModelMonitor("m", SETTINGS), ModelMonitor("m", SETTINGS)
    events = observe(one, raw, 500)
    assert observe(other, raw, batch_size) == events
    assert snapshot.dumps(one.state()) == snapshot.dumps(other.state())


def test_a_restored_monitor_gives_the_same_drift_impact():
    raw = messages(stepped(2500))
    straight = observe(ModelMonitor("m", SETTINGS), raw, 100)
    for cut in (700, 1200):  # during the warm-up, and after it
        first = ModelMonitor("m", SETTINGS)
        events = observe(first, raw[:cut], 100)
        saved = snapshot.dumps(first.state())
        restored = ModelMonitor.from_state("m", SETTINGS, snapshot.loads(saved))
        assert snapshot.dumps(restored.state()) == saved
        assert events + observe(restored, raw[cut:], 100) == straight


def test_a_snapshot_from_before_score_sums_loads_and_its_events_say_why_they_have_no_drift_impact():
    raw = messages(stepped(2500))
    old = ModelMonitor("m", SETTINGS)
    observe(old, raw[:1200], 100)
    state = snapshot.loads(snapshot.dumps(old.state()))
    del state["features"]["scores"]  # as written before issue 23
    restored = ModelMonitor.from_state("m", SETTINGS, state)
    event = prediction_drift(observe(restored, raw[1200:], 100))
    assert event["drift_impact"] is None
    assert "no score sums" in event["details"]["drift_impact_unavailable"]
    jsonschema.validate({**event, "emitted_at": "2026-01-01T00:00:00.000Z"}, SCHEMA)  # the publisher stamps it


def test_predictions_without_scores_give_no_drift_impact():
    rows = [{"features": r["features"], "score": None} for r in stepped(2500)]
    raw = []
    for i, row in enumerate(rows):
        prediction = row["features"]["a"]  # the class is a: prediction drift without any score
        value = {"event_id": f"e{i}", "model_id": "m", "timestamp": T0 + i, "features": row["features"]}
        raw.append(RawMessage("predictions", 0, i, b"m", orjson.dumps({**value, "prediction": prediction})))
    event = prediction_drift(observe(ModelMonitor("m", SETTINGS), raw, 100))
    assert event["drift_impact"] is None
    assert event["details"]["drift_impact_unavailable"] == "no prediction of the reference had a score"


def test_a_profile_with_score_sums_gives_the_same_drift_impact_as_the_warm_up(tmp_path):
    rows = stepped(2500)
    profile = reference.build_profile("m", rows[:1000], SETTINGS)
    assert profile["features"][0]["score_counts"] == profile["features"][0]["ref_counts"]  # every row scored
    path = tmp_path / "m.json"
    path.write_bytes(orjson.dumps(profile))
    loaded = reference.load_profile(path)
    with_profile = observe(ModelMonitor("m", SETTINGS, ModelSettings(), loaded), messages(rows)[1000:], 100)
    warm = observe(ModelMonitor("m", SETTINGS), messages(rows), 100)
    # the profile's bins are the rows' own quantiles, the warm-up's bucket boundaries: the same for a's
    # four values, so the same explained changes
    assert prediction_drift(with_profile)["drift_impact"] == prediction_drift(warm)["drift_impact"]


def test_a_profile_whose_score_sums_do_not_fit_its_bins_is_refused(tmp_path):
    profile = reference.build_profile("m", stepped(1000), SETTINGS)
    profile["features"][0]["score_sums"] = profile["features"][0]["score_sums"][:-1]
    path = tmp_path / "m.json"
    path.write_bytes(orjson.dumps(profile))
    with pytest.raises(Exception, match="score_sums"):
        reference.load_profile(path)


@pytest.mark.parametrize(
    "kind",
    ["continuous", "few numbers", "as many numbers as bins", "categories", "numbers and categories"],
)
def test_the_warm_up_keeps_the_score_sums_of_binning_the_rows_themselves(kind):
    """Counted in the warm-up (buckets, distinct numbers, categories, missing values, rows without a score),
    the reference's score sums per bin are exactly those of binning the rows with its edges."""
    rng = np.random.default_rng(3)
    n = 3000
    values: list = {
        "continuous": [round(float(x), 3) for x in rng.lognormal(3, 1, n)],
        "few numbers": [int(x) for x in rng.integers(0, 6, n)],
        "as many numbers as bins": [int(x) * 7 for x in rng.integers(0, 10, n)],  # one bin per number, still
        "categories": [f"c{int(x)}" for x in rng.zipf(1.6, n)],  # more categories than kept: "other"
        "numbers and categories": [int(x) if x < 3 else f"c{int(x)}" for x in rng.integers(0, 8, n)],
    }[kind]
    values = [None if i % 17 == 0 else v for i, v in enumerate(values)]  # missing values
    scores = np.round(rng.random(n), 4)
    scores[::13] = np.nan  # rows without a score
    fixed = impact.fixed(scores)
    summary = WarmupColumn(limit=10, max_kept=50, scored=True)
    for start in range(0, n, 7):  # in small batches, as a fleet's models get them
        summary.add(values[start : start + 7], scores=fixed[start : start + 7])
    column = Column.from_summary("x", summary, n, bins=10, max_categories=10)
    total = list(impact.tally(fixed))
    assert column.summary_scores(summary, total, bins=10).tolist() == column.scores_of(values, fixed).tolist()
    assert column.summary_scores(summary, total, bins=10).dtype == np.int64  # counts and fixed-point sums, exact
    restored = WarmupColumn.from_state(summary.state(), 10, 50)  # as a snapshot taken during the warm-up keeps it
    assert column.summary_scores(restored, total, bins=10).tolist() == column.scores_of(values, fixed).tolist()


def test_explained_change_is_the_reference_bin_means_weighted_by_the_frequency_shift_column_by_column():
    """Against the definition in exact fractions: a bin the reference never scored is taken at its column's
    mean score, a column without any scored row is NaN (mutation testing, issue 18)."""
    from fractions import Fraction

    # column 0: four bins, the third never scored, the fourth scored once; column 1: no scored row at all;
    # column 2: a window of one row, a reference of four scored 0.25 and 1
    starts = np.array([0, 4, 6])
    window = np.array([30, 10, 45, 15, 7, 3, 0, 1])
    ref = np.array([40, 40, 19, 1, 6, 4, 3, 1])
    scored = np.array([40, 39, 0, 1, 0, 0, 3, 1])
    sums = np.array([int(0.125 * impact.SCALE) * 40, 700_001 * 39, 0, 1_000_000, 0, 0, 3 * 2**18, 2**20])
    out = impact.explained_change(window, ref, np.stack([scored, sums]).astype(np.int64), starts)
    bounds = [*starts.tolist(), len(window)]
    for c, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        column_scored = sum(int(s) for s in scored[lo:hi])
        if not column_scored:
            assert math.isnan(out[c]), c
            continue
        column_mean = Fraction(sum(int(s) for s in sums[lo:hi]), column_scored * impact.SCALE)
        w_n, r_n = sum(int(v) for v in window[lo:hi]), sum(int(v) for v in ref[lo:hi])
        expected = sum(
            (Fraction(int(sums[b]), int(scored[b]) * impact.SCALE) if scored[b] else column_mean)
            * (Fraction(int(window[b]), w_n) - Fraction(int(ref[b]), r_n))
            for b in range(lo, hi)
        )
        assert out[c] == pytest.approx(float(expected), rel=1e-12, abs=1e-15), c
    assert out[0] != 0 and out[2] == pytest.approx(0.25 * -3 / 4 + 1 * 3 / 4, rel=1e-12)
