"""A window's performance report tells what the window's own rows held, wherever the batches end.

When one call to ``ClassificationMetrics.update`` both closed a window and brought classes that first
appear after that close, the window's report named them already (its confusion matrix's labels, the
positive class's precision, recall and F1 as 0.0 instead of None) and counted their rows past the class
cap in ``other_values``; fed one row at a time, it did not. The report reaches users as the monitor's
``performance_report`` (its snapshot), ``/status`` (the summary) and the exporter's series, so each is
compared here between one batch and one row per call (``test_batch_split`` compares the same on its streams).
"""

from __future__ import annotations

import numpy as np

from streamdrift import Monitor
from streamdrift.core.config import ModelSettings, MonitorSettings
from streamdrift.core.metrics.classification import ClassificationMetrics
from streamdrift.runtime.exporter import ModelCollector

WINDOW, SUBWINDOWS = 20, 2


def _rows() -> tuple[list[str], list[str]]:
    """Labels and predictions: classes a and b for two windows (closing at rows 20, 30 and 40); then,
    in the sub-window after them, the positive class 1 and eight new classes."""
    rng = np.random.default_rng(5)
    truth = rng.choice(["a", "b"], size=2 * WINDOW).tolist() + ["1", "a", "c", "e", "g", "i"]
    predicted = rng.choice(["a", "b"], size=2 * WINDOW).tolist() + ["a", "1", "d", "f", "h", "j"]
    return truth, predicted


def _windows(metrics: ClassificationMetrics, batches: list[tuple[list[str], list[str]]]) -> list[tuple]:
    out, at = [], 0
    for truth, predicted in batches:
        out += [(w["position"], w["row"] + at, w["report"]) for w in metrics.update(truth, predicted)]
        at += len(truth)
    return out


def test_the_reports_of_one_batch_are_those_of_one_row_at_a_time() -> None:
    truth, predicted = _rows()

    def make() -> ClassificationMetrics:
        return ClassificationMetrics(WINDOW, SUBWINDOWS, max_classes=4)  # a, b, 1, c: d and after are __other__

    whole = _windows(make(), [(truth, predicted)])
    single = _windows(make(), [([t], [p]) for t, p in zip(truth, predicted)])
    assert [w[:2] for w in whole] == [(20, 19), (30, 29), (40, 39)]
    last = single[-1][2]
    # the windows saw a and b only: no positive class yet, nothing past the cap
    assert last["confusion"]["labels"] == ["b", "a"]
    assert (last["precision"], last["recall"], last["f1"], last["other_values"]) == (None, None, None, 0)
    assert whole == single


def _events(n: int) -> tuple[list[dict], list[dict]]:
    """Predictions and their labels: the classes of ``_rows`` (then a and b again), with scores."""
    truth, predicted = _rows()
    rng = np.random.default_rng(6)
    truth += rng.choice(["a", "b"], size=n - len(truth)).tolist()
    predicted += rng.choice(["a", "b"], size=n - len(predicted)).tolist()
    predictions = [
        {
            "event_id": f"e{i}",
            "model_id": "m",
            "timestamp": 1_700_000_000.0 + i,
            "features": {"x": float(rng.normal())},
            "prediction": predicted[i],
        }
        for i in range(n)
    ]
    feedback = [
        {"event_id": f"e{i}", "model_id": "m", "timestamp": 1_700_000_000.0 + n + i, "label": truth[i]}
        for i in range(n)
    ]
    return predictions, feedback


def test_what_users_see_does_not_depend_on_where_batches_end() -> None:
    settings = MonitorSettings(reference_size=50, window_size=WINDOW, subwindows=SUBWINDOWS)
    model = ModelSettings(task="classification")
    predictions, feedback = _events(len(_rows()[0]))
    whole, single = Monitor("m", settings, model), Monitor("m", settings, model)
    events = whole.observe(predictions) + whole.observe(feedback)
    one_by_one = [e for event in predictions + feedback for e in single.observe([event])]
    seen = single.summary()
    assert seen.labelled == 46 and seen.window_performance["rows"] == WINDOW
    assert "precision" not in seen.window_metrics  # the latest window (rows 20 to 39) has no positive class
    # drift events: none here; one takes only a report's accuracy and rows, which did not depend on the batches
    assert events == one_by_one
    assert whole.summary() == single.summary()  # /status, the public API
    assert whole.save() == single.save()  # the snapshot, performance_report included

    def scrape(monitor: Monitor) -> bytes:
        return ModelCollector(lambda: {"m": monitor.summary()}, 10).exposition()

    assert scrape(whole) == scrape(single)  # the exporter
