"""The plain-Python figures of a classification report (``metrics/report_small.py``) are numpy's, bit for bit:
the sums in numpy's order, the label metrics and the score figures of any counts, and whole reports of seeded
streams against the numpy functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.core.metrics import classification
from streamdrift.core.metrics.classification import ClassificationMetrics, label_metrics, score_figures
from streamdrift.core.metrics.report_small import (
    SMALL_CLASSES,
    label_metrics_small,
    numpy_mean,
    numpy_sum,
    score_figures_small,
)
from streamdrift.core.metrics.windows import SCALE

_FLOATS = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


def _same(a: object, b: object) -> bool:
    """Equal, and every float of the same bits (``==`` alone takes -0.0 for 0.0)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return type(a) is type(b) and a == b


@settings(deadline=None, max_examples=300)
@given(st.lists(_FLOATS, max_size=300))
def test_numpy_sum_adds_in_numpys_order(values: list[float]) -> None:
    assert _same(numpy_sum(values), float(np.sum(np.array(values, dtype=np.float64))))
    if values:
        assert _same(numpy_mean(values), float(np.mean(values)))


def test_numpy_sum_is_not_a_sum_one_by_one() -> None:
    values = [0.1] * 10  # a sum in another order would pass the test above only by chance
    assert numpy_sum(values) == float(np.sum(values)) != sum(values)


@st.composite
def _matrices(draw: st.DrawFn) -> tuple[np.ndarray, list[str], int | None]:
    k = draw(st.integers(0, SMALL_CLASSES))  # every size report() takes this path for
    big = draw(st.booleans())  # counts past what float32 holds, short of 2**53
    cells = st.integers(0, 2**50 if big else 6)
    matrix = np.array(draw(st.lists(st.lists(cells, min_size=k, max_size=k), min_size=k, max_size=k)), dtype=np.int64)
    positive = draw(st.none() | st.integers(0, k - 1)) if k else None
    return matrix.reshape(k, k), [f"c{i}" for i in range(k)], positive


@settings(deadline=None, max_examples=400)
@given(_matrices())
def test_label_metrics_small_are_label_metrics(case: tuple[np.ndarray, list[str], int | None]) -> None:
    matrix, names, positive = case
    assert _same(label_metrics_small(matrix.tolist(), names, positive), label_metrics(matrix, names, positive))


@st.composite
def _histograms(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    classes, bins = draw(st.integers(0, 10)), draw(st.integers(1, 60))
    counts = draw(st.sampled_from([3, 1000, 2**40]))
    histograms = np.array(
        draw(st.lists(st.integers(0, counts), min_size=classes * 2 * bins, max_size=classes * 2 * bins)),
        dtype=np.int64,
    ).reshape(classes, 2, bins)
    # each bin's score sum: its rows' probabilities in fixed point, at most a row's SCALE each
    shares = np.array(draw(st.lists(st.floats(0, 1), min_size=classes * bins, max_size=classes * bins)))
    sums = np.rint(shares.reshape(classes, bins) * histograms.sum(axis=1) * SCALE).astype(np.int64)
    return histograms, sums


@settings(deadline=None, max_examples=300)
@given(_histograms())
def test_score_figures_small_are_score_figures(case: tuple[np.ndarray, np.ndarray]) -> None:
    histograms, sums = case
    assert _same(score_figures_small(histograms.tolist(), sums.tolist()), score_figures(histograms, sums))


def _stream(seed: int, n: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n).astype(str)
    predicted = np.where(rng.random(n) < 0.6, truth, rng.integers(0, classes, n).astype(str))
    scores = np.where(rng.random(n) < 0.8, rng.random(n), np.nan)
    return truth, predicted, scores


@pytest.mark.parametrize("classes", [2, 3, SMALL_CLASSES])
@pytest.mark.parametrize("seed", range(3))
def test_reports_are_the_numpy_paths(classes: int, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports of both scopes along a stream, as the numpy functions make them (``SMALL_CLASSES`` 0)."""
    truth, predicted, scores = _stream(seed, 400, classes)
    metrics = ClassificationMetrics(window_size=60, subwindows=3, n_score_bins=10)
    sizes = np.random.default_rng(50 + seed).integers(1, 30, size=400).tolist()
    at, compared = 0, 0
    for size in sizes:
        if at >= len(truth):
            break
        metrics.update(truth[at : at + size], predicted[at : at + size], scores[at : at + size])
        at += size
        for scope in ("window", "cumulative"):
            small = metrics.report(scope)
            with monkeypatch.context() as m:
                m.setattr(classification, "SMALL_CLASSES", 0)
                general = metrics.report(scope)
            assert _same(small, general)
            compared += small["rows"] > 0 and small["roc_auc"] is not None
    assert compared > 20  # reports with rows and scores, not only empty ones


def test_past_2_53_rows_the_figures_are_still_numpys() -> None:
    """Past 2**53 rows counts are no longer exact as floats: a sum of the diagonal then depends on its order,
    and a count divided by another on whether they are made floats first, as numpy makes them. No model gets
    there, but a stored summary's matrix may hold any int64 (``summary._derived`` reads it), and the figures
    must be numpy's whatever the counts (``_same``). One by one, 2**53 - 1 then eight 1s stay at 2**53; in
    numpy's order the eight running sums keep them. Failed before: ``sum(hits)``, ``own / count``."""
    k = 9
    matrix = np.diag([2**53 - 1] + [1] * (k - 1)).astype(np.int64)
    names = [f"c{i}" for i in range(k)]
    small = label_metrics_small(matrix.tolist(), names, 0)
    assert _same(small, label_metrics(matrix, names, 0))
    assert small["accuracy"] == 1.0  # (2**53 + 8) / (2**53 + 7), both rounded to 2**53 + 8
    for its, others in ((2**53 + 1, 2), (3, 2**53)):  # one class, one bin: its rows among others
        histograms, sums = np.array([[[others], [its]]], dtype=np.int64), np.zeros((1, 1), dtype=np.int64)
        assert _same(score_figures_small(histograms.tolist(), sums.tolist()), score_figures(histograms, sums))
