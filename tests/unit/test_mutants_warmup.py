"""core/warmup.py pinned exactly: the tests that kill the mutants `make mutation` found surviving there.

Each test states what the reference fitted after a warm-up relies on: every number in the bucket whose bounds
hold it, counts that are the rows' counts, the exact limits of the distinct-number and category tables, a
state that restores to the same summary. docs/mutation.md lists the mutants left alive and why.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from streamdrift.core import warmup
from streamdrift.core.buckets import GAMMA, SMALLEST, bucket_keys, lower
from streamdrift.core.sketch import Column
from streamdrift.core.warmup import WarmupColumn


def test_bucket_bounds_are_powers_of_gamma_mirrored_around_a_zero_bucket() -> None:
    """Bucket 0 is [-SMALLEST, SMALLEST); bucket k > 0 starts at SMALLEST * GAMMA**(k-1), bucket -k at
    -SMALLEST * GAMMA**k (so bucket -1 ends where the zero bucket starts)."""
    assert GAMMA == 1.005 / 0.995 and SMALLEST == GAMMA ** math.floor(math.log(1e-30) / math.log(GAMMA))
    assert SMALLEST <= 1e-30 < SMALLEST * GAMMA
    keys = np.array([-3, -2, -1, 0, 1, 2, 3])
    expected = [-SMALLEST * GAMMA**3, -SMALLEST * GAMMA**2, -SMALLEST * GAMMA, -SMALLEST, SMALLEST,
                SMALLEST * GAMMA, SMALLEST * GAMMA**2]  # fmt: skip
    assert lower(keys).tolist() == pytest.approx(expected, rel=1e-12)
    assert lower(keys).dtype == np.float64 and float(lower(5)) == pytest.approx(SMALLEST * GAMMA**4, rel=1e-12)


def _values() -> np.ndarray:
    rng = np.random.default_rng(11)
    magnitudes = 10.0 ** rng.uniform(-35, 305, 3000)  # below SMALLEST, around 1, beyond the clip at 1e300
    signed = magnitudes * rng.choice([-1.0, 1.0], 3000)
    boundaries = lower(np.arange(-40, 40) * 997)  # the bounds themselves, where the logarithm is a last bit off
    return np.concatenate([signed, boundaries, np.nextafter(boundaries, np.inf), np.nextafter(boundaries, -np.inf),
                           [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 5e-31]])  # fmt: skip


def test_every_value_falls_in_the_bucket_whose_bounds_hold_it() -> None:
    x = _values()
    keys = bucket_keys(x)
    assert keys.dtype == np.int64
    inside = np.abs(x) < 1e300  # past the clip, magnitudes share the outermost buckets
    assert (lower(keys[inside]) <= x[inside]).all() and (x[inside] < lower(keys[inside] + 1)).all()
    zero = (-SMALLEST <= x) & (x < SMALLEST)
    assert zero.sum() > 5 and (keys[zero] == 0).all() and (keys[~zero] != 0).all()
    assert bucket_keys(np.array([1e300, 1e305, -1e305])).tolist() == [bucket_keys(np.array([1e300]))[0]] * 2 + [
        bucket_keys(np.array([-1e300]))[0]
    ]


def test_the_histogram_counts_each_number_in_the_bucket_of_its_distance_to_the_anchor() -> None:
    rng = np.random.default_rng(4)
    rows = [float(v) for v in rng.normal(1000, 3, 2500)]
    column = WarmupColumn(limit=10, max_kept=5)
    for at in range(0, len(rows), 300):  # past _COMPACT_AT, so some numbers are still pending at the end
        column.add(rows[at : at + 300], numbers_only=True)
    first_bucket = bucket_keys(np.array(rows[:1]))[0]
    assert column.anchor == lower(first_bucket)
    expected = Counter(bucket_keys(np.array(rows) - column.anchor).tolist())
    keys, counts = column.histogram()
    assert keys.dtype == counts.dtype == np.int64
    assert dict(zip(keys.tolist(), counts.tolist())) == expected and keys.tolist() == sorted(expected)


def test_the_distinct_table_holds_exactly_limit_numbers_and_is_dropped_for_good_at_one_more() -> None:
    column = WarmupColumn(limit=3, max_kept=10)
    column.add([1, 2, 2.0, None])  # "2" and "2.0" are two numbers, as categories are counted by their text
    assert column.distinct == {"1": 1, "2": 1, "2.0": 1} and column.numbers == 3
    column.add([1, 2.0])
    assert column.distinct == {"1": 2, "2": 1, "2.0": 2}
    column.add([7])
    assert column.distinct is None
    column.add([1])
    assert column.distinct is None and column.numbers == 7


def test_categories_past_max_kept_are_counted_as_other_and_booleans_are_categories() -> None:
    column = WarmupColumn(limit=5, max_kept=2)
    column.add(["a", True, "b", "a", None, 3, False])
    assert column.categories == {"a": 2, "True": 1} and column.other == 2  # "b" and False came after two
    assert column.numbers == 1 and column.distinct == {"3": 1} and column.present == 6
    column.add(["True", "c"])
    assert column.categories == {"a": 2, "True": 2} and column.other == 3
    assert column.categorical


def test_an_array_s_nan_is_missing_and_a_column_of_numbers_or_nothing_is_told_apart() -> None:
    numbers = WarmupColumn(limit=5, max_kept=2)
    assert numbers.categorical and numbers.present == 0  # nothing but missing values: categorical
    numbers.add(np.array([1.5, np.nan, 2.5]))
    assert (numbers.numbers, numbers.present, numbers.categorical) == (2, 2, False)
    assert numbers.distinct == {"1.5": 1, "2.5": 1}
    only_other = WarmupColumn(limit=5, max_kept=0)
    only_other.add(["x"])
    assert only_other.categories == {} and only_other.other == 1 and only_other.categorical


def test_a_state_restores_the_same_summary_which_goes_on_as_the_original() -> None:
    rng = np.random.default_rng(8)
    rows = [*rng.normal(0, 1, 1500).tolist(), "k", None, "j"]
    column = WarmupColumn(limit=4, max_kept=1)
    column.add(rows[:1200])
    state = column.state()
    assert state["buckets"].dtype == np.int32 and state["counts"].dtype == np.uint32
    assert state["numbers"] == 1200 and int(state["counts"].sum()) == 1200
    restored = WarmupColumn.from_state(state, limit=4, max_kept=1)
    assert (restored.limit, restored.max_kept) == (4, 1)
    for summary in (column, restored):
        summary.add(rows[1200:])
    again = restored.state()
    for key, value in column.state().items():
        assert np.array_equal(again[key], value) if isinstance(value, np.ndarray) else again[key] == value
    assert again["categories"] == {"k": 1} and again["other"] == 1 and again["distinct"] is None
    assert warmup.WarmupColumn.from_state(again, 4, 1).histogram()[0].dtype == np.int64


def test_a_column_restored_with_few_distinct_numbers_keeps_them_and_fits_the_same_reference() -> None:
    """A 0/1 label restored mid-warm-up: its bins are still its two values, not quantiles of buckets."""
    rows = [0, 1, 1, None, 0, 1] * 50
    column = WarmupColumn(limit=10, max_kept=30)
    column.add(rows[:100])
    state = column.state()
    assert state["distinct"] == {"0": 33, "1": 50}
    restored = WarmupColumn.from_state(state, 10, 30)
    for summary in (column, restored):
        summary.add(rows[100:])
    assert restored.distinct == column.distinct == {"0": 100, "1": 150}
    fitted = Column.from_summary("y", restored, len(rows), bins=10, max_categories=5)
    assert fitted.edges.tolist() == [0.0, 1.0, 1.0]
    assert fitted.state() == Column.fit("y", rows, bins=10, max_categories=5).state()


def test_a_column_of_categories_only_has_an_empty_histogram_in_its_state() -> None:
    column = WarmupColumn(limit=3, max_kept=4)
    column.add(["a", None, "b", "a"])
    state = column.state()
    assert {k: v for k, v in state.items() if k not in ("buckets", "counts")} == {
        "numbers": 0,
        "anchor": 0.0,
        "distinct": {},
        "categories": {"a": 2, "b": 1},
        "other": 0,
    }
    assert state["buckets"].tolist() == state["counts"].tolist() == []


def test_counts_are_int64_fresh_live_and_restored_so_arithmetic_on_them_cannot_wrap() -> None:
    """A snapshot stores counts as uint32; the histogram hands them out as int64 whatever the column's history."""
    fresh = WarmupColumn(limit=3, max_kept=4)
    live = WarmupColumn(limit=3, max_kept=4)
    live.add([1.0, 2.0, 2.0])
    restored = WarmupColumn.from_state(live.state(), 3, 4)
    for column in (fresh, live, restored):
        keys, counts = column.histogram()
        assert keys.dtype == counts.dtype == np.int64
    assert restored.histogram()[1].tolist() == [1, 2] and (restored.histogram()[1] - 3).tolist() == [-2, -1]
