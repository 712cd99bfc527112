"""A classification metric's totals (confusion, histograms, score sums) are stored in the narrowest signed dtype
that holds their values, and read back as the int64 arrays they were, however large; a state written before
(int64 totals) loads the same (issue 19: a warm-up model's 200 histogram totals were 1.6 KB of int64 zeros)."""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core.metrics.classification import ClassificationMetrics
from streamdrift.core.state import encode_tree

TOTALS = ("confusion", "histograms", "score_sums")


def _metrics(seed: int, rows: int) -> ClassificationMetrics:
    rng = np.random.default_rng(seed)
    metrics = ClassificationMetrics(window_size=50, subwindows=5)
    truth = rng.choice(["0", "1"], size=rows)
    predicted = np.where(rng.random(rows) < 0.8, truth, rng.choice(["0", "1"], size=rows))
    metrics.update(truth, predicted, rng.random(rows))
    return metrics


def _loaded(state: dict) -> ClassificationMetrics:
    metrics = ClassificationMetrics(window_size=50, subwindows=5)
    metrics.load_state(state)
    return metrics


@pytest.mark.parametrize("seed", range(4))
def test_totals_are_stored_narrow_and_load_back_as_they_were(seed: int) -> None:
    metrics = _metrics(seed, 30)
    state = metrics.state()
    assert state["confusion"]["total"].dtype == np.int8  # 30 rows
    assert state["histograms"]["total"].dtype == np.int8
    assert state["score_sums"]["total"].dtype.itemsize < 8  # 30 scores in fixed point
    again = _loaded(state)
    for live in (again.confusion, again.histogram_totals, again.score_sum_totals):
        assert live.dtype == np.int64
    assert np.array_equal(again.histogram_totals, metrics.histogram_totals)
    assert np.array_equal(again.score_sum_totals, metrics.score_sum_totals)
    assert np.array_equal(again.confusion, metrics.confusion)
    assert encode_tree(again.state(), "t") == encode_tree(state, "t")


@pytest.mark.parametrize(("largest", "dtype"), [(127, np.int8), (128, np.int16), (2**31, np.int64), (2**62, np.int64)])
def test_a_total_takes_the_dtype_that_holds_it(largest: int, dtype: type) -> None:
    metrics = _metrics(0, 30)
    metrics.histogram_totals[0, 0, 0] = largest
    state = metrics.state()
    assert state["histograms"]["total"].dtype == dtype
    assert int(_loaded(state).histogram_totals[0, 0, 0]) == largest


def test_a_state_with_int64_totals_loads_as_the_narrow_one() -> None:
    state = _metrics(1, 40).state()
    written_before = {**state, **{k: {**state[k], "total": state[k]["total"].astype(np.int64)} for k in TOTALS}}
    assert encode_tree(_loaded(written_before).state(), "t") == encode_tree(_loaded(state).state(), "t")
