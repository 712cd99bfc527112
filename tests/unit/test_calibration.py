"""The false-alarm budget, checked empirically on seeded stationary streams.

``false_alarm_run_length`` (ARL) promises at most one false alarm per ARL
events per model, all features and tests together (monitor.py,
"Calibration"). Here the budget is small (ARL = 20,000) and the windows are
small, so a few hundred thousand events measure the rate; the policy's
cooldown is 0 so that it does not hide what the tests do (hysteresis still
merges consecutive windows of one excursion, as in production).

Every stream has its own seed, hence its own warm-up reference. Alarms within
a stream are correlated (they share the reference, and windows overlap), so
the streams, not the alarms, are the independent units: the upper check
allows the slack of a one-sided 99.9% Poisson bound on the total, and the
per-stream counts are reported with it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import poisson

from streamdrift.core.concept import BernoulliCusum
from streamdrift.core.config import MonitorSettings
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import FeedbackBatch, PredictionBatch

ARL = 20_000
BATCH = 1000
CATEGORIES = np.array(["a", "b", "c", "d", "e", "f"])
CATEGORY_P = (0.3, 0.25, 0.2, 0.1, 0.1, 0.05)


def _stationary(seed: int, n: int, settings: MonitorSettings) -> tuple[dict[str, int], int]:
    """Drift events per kind on a stationary stream, and how many events could raise one.

    6 numeric + 2 categorical features; a score from one of them and a class
    ("yes"/"no", categorical like most class labels); every prediction graded
    by feedback (joined by event_id), wrong 20% of the time.
    """
    rng = np.random.default_rng(seed)
    monitor = ModelMonitor("m", settings)
    kinds: dict[str, int] = {}
    for i in range(0, n, BATCH):
        b = min(BATCH, n - i)
        x = rng.normal(size=(b, 6))
        features = {f"x{j}": x[:, j].tolist() for j in range(6)}
        features.update({f"c{j}": CATEGORIES[rng.choice(6, b, p=CATEGORY_P)].tolist() for j in range(2)})
        scores = np.round(1 / (1 + np.exp(-x[:, 0])), 4)
        predictions = np.where(scores >= 0.5, "yes", "no")
        labels = np.where(rng.random(b) < 0.2, np.where(predictions == "yes", "no", "yes"), predictions)
        offsets = np.arange(i, i + b)
        ts = 1.7e9 + offsets / 1000
        ids = [str(k) for k in offsets]
        events = monitor.observe_predictions(
            PredictionBatch(
                "m",
                0,
                offsets,
                ids,
                [None] * b,
                ts,
                ts.tolist(),
                features,
                predictions.tolist(),
                scores,
                [None] * b,
                [None] * b,
            )
        )
        events += monitor.observe_feedback(
            FeedbackBatch(
                "m", 0, offsets, ids, [None] * b, ts, ts.tolist(), labels.tolist(), [None] * b, np.full(b, np.nan)
            )
        )
        for e in events:
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    return kinds, n - settings.reference_size  # nothing can fire during the warm-up


@pytest.mark.parametrize(
    "reference_size, streams, events",
    [
        (500, 24, 12_500),
        (2000, 12, 14_000),
    ],
)
def test_stationary_false_alarm_rate_is_within_the_budget(reference_size, streams, events):
    settings = MonitorSettings(
        reference_size=reference_size, window_size=200, subwindows=4, false_alarm_run_length=ARL, cooldown_events=0
    )
    per_stream, kinds, watched = [], {}, 0
    for seed in range(streams):
        found, n = _stationary(1000 + seed, events, settings)
        per_stream.append(sum(found.values()))
        watched += n
        for kind, count in found.items():
            kinds[kind] = kinds.get(kind, 0) + count
    alarms, budget = sum(per_stream), watched / ARL
    ratio = alarms / budget
    report = (
        f"{alarms} drift events in {watched:,} events, budget {budget:.1f} (ratio {ratio:.2f}); {kinds}; "
        f"per stream {per_stream}"
    )
    print(report)
    assert alarms <= poisson.ppf(0.999, budget), report
    # Not absurdly conservative either. Bonferroni over nearly independent columns costs little, and the
    # hysteresis merging an excursion's overlapping windows into one event a factor of 1-2 (with the tail bins
    # left out of the chi-square, these streams give 0.55-0.6); a ratio under 1/100 would mean thresholds that
    # in effect never fire.
    assert ratio >= 0.01, report


@pytest.mark.parametrize("error_rate", [0.05, 0.3])
def test_cusum_run_length_between_false_alarms_is_at_least_the_nominal_one(error_rate):
    """Wald's bound: with h = ln(run_length), at least run_length labelled events between false alarms.

    Measured from the end of each warm-up (the reference error rate is
    learnt again after every alarm), so the warm-ups do not pad the figure.
    """
    run_length, warmup = 200, 500
    cusum = BernoulliCusum(run_length=run_length, ratio=2.0, warmup=warmup)
    errors = np.random.default_rng(11).random(3_000_000) < error_rate
    alarms = []
    for i in range(0, len(errors), 100_000):
        alarms += [i + d["index"] for d in cusum.update(errors[i : i + 100_000])]
    runs = np.diff(np.concatenate([[-1], alarms])) - warmup
    report = (
        f"{len(runs)} alarms, mean run {runs.mean():.0f} (nominal {run_length}, ratio "
        f"{runs.mean() / run_length:.0f}), median {np.median(runs):.0f}"
    )
    print(report)
    assert len(runs) >= 40, report  # enough alarms to measure a mean
    assert runs.mean() >= run_length, report
