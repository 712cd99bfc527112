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
    # the keys as steps from the one before (the first from 0), steps and counts in their narrowest dtypes
    assert state["steps"].dtype == np.int16 and state["counts"].dtype == np.uint8
    assert state["steps"][:3].tolist() == [-6942, 29, 5] and int(state["counts"].max()) == 18
    assert np.cumsum(state["steps"]).tolist() == column.histogram()[0].tolist()
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
    assert state == {  # no histogram: that of its (no) distinct numbers
        "numbers": 0,
        "anchor": 0.0,
        "distinct": {},
        "categories": {"a": 2, "b": 1},
        "other": 0,
    }
    assert [a.tolist() for a in WarmupColumn.from_state(state, 3, 4).histogram()] == [[], []]


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


class PlainScoredColumn:
    """A scored warm-up column's tallies made one row at a time, the obvious way: for each bucket, distinct
    number (by its text) and category kept, and for ``other``: rows, scored rows, score sum."""

    def __init__(self, limit: int, max_kept: int) -> None:
        self.limit, self.max_kept = limit, max_kept
        self.anchor: float | None = None
        self.buckets: dict[int, list[int]] = {}
        self.distinct: dict[str, list[int]] | None = {}
        self.categories: dict[str, list[int]] = {}
        self.other = [0, 0, 0]

    def add(self, values: list, scores: list[int]) -> None:
        for value, score in zip(values, scores):
            tally = [1, int(score >= 0), max(score, 0)]
            if value is None or value != value:  # missing: None or NaN
                continue
            if type(value) in (int, float):
                if self.anchor is None:
                    self.anchor = float(lower(bucket_keys(np.array([float(value)]))[0]))
                key = int(bucket_keys(np.array([value - self.anchor]))[0])
                self.buckets[key] = [a + b for a, b in zip(self.buckets.get(key, [0, 0, 0]), tally)]
                if self.distinct is not None:
                    self.distinct[str(value)] = [a + b for a, b in zip(self.distinct.get(str(value), [0, 0, 0]), tally)]
                    if len(self.distinct) > self.limit:
                        self.distinct = None
                continue
            name = str(value)
            if name in self.categories or len(self.categories) < self.max_kept:
                self.categories[name] = [a + b for a, b in zip(self.categories.get(name, [0, 0, 0]), tally)]
            else:
                self.other = [a + b for a, b in zip(self.other, tally)]


def scored_tallies(column: WarmupColumn) -> tuple:
    """What a scored WarmupColumn holds, in PlainScoredColumn's form."""
    keys, counts = column.histogram()
    buckets = {int(k): [int(c), int(s), int(t)] for k, c, (s, t) in zip(keys, counts, column.bucket_scores.tolist())}
    distinct = None
    if column.distinct is not None:
        distinct = {
            k: [n, column.distinct_scored.get(k, 0), column.distinct_sums.get(k, 0)] for k, n in column.distinct.items()
        }
    categories = {
        k: [n, column.category_scored.get(k, 0), column.category_sums.get(k, 0)] for k, n in column.categories.items()
    }
    return column.anchor, buckets, distinct, categories, [column.other, column.other_scored, column.other_sum]


def plain_tallies(plain: PlainScoredColumn) -> tuple:
    anchor = 0.0 if plain.anchor is None else plain.anchor  # no number yet: 0
    return anchor, plain.buckets, plain.distinct, plain.categories, plain.other


def scored_rows(rng: np.random.Generator, n: int, kinds: str) -> tuple[list, list[int]]:
    """``n`` values of a few distinct numbers (``kinds`` "numbers"), or many, or numbers among categories,
    booleans, None and NaN; scores fixed point, -1 (unscored) for some."""
    pool: list = {
        "few": [0, 1, 2.5, -3, 7],
        "many": [round(float(x), 3) for x in rng.normal(0, 50, 40)],
        "mixed": [0, 1.5, "a", "b", "c", "d", True, None, math.nan, 2, -1e-40],
        "categories": ["a", "b", "c", "d", "e"],
    }[kinds]
    values = [pool[int(k)] for k in rng.integers(0, len(pool), n)]
    # a score of 0 is a score (scored, adds 0); -1 is none
    scores = [[int(s), 0, -1][int(k)] for s, k in zip(rng.integers(0, 1 << 20, n), rng.choice(3, n, p=(0.6, 0.1, 0.3)))]
    return values, scores


@pytest.mark.parametrize("kinds", ["few", "many", "mixed", "categories"])
def test_a_scored_column_tallies_scored_rows_and_score_sums_with_each_count(kinds: str) -> None:
    """Mutation testing, issue 18 (the scored columns of issue 23, which drift_impact reads): with each
    bucket, distinct number and category kept, and with ``other``, the rows that had a score (not -1) and
    the sum of their fixed-point scores, against a plain row-by-row tally; after batches of any size, through
    lists and arrays, compacted alone or with other columns (one of them unscored), and restored."""
    rng = np.random.default_rng({"few": 1, "many": 2, "mixed": 3, "categories": 4}[kinds])
    limit, max_kept = 6, 2
    columns = [WarmupColumn(limit, max_kept, scored=True) for _ in range(2)]
    unscored = WarmupColumn(limit, max_kept)
    plains = [PlainScoredColumn(limit, max_kept) for _ in range(2)]
    for batch in range(40):
        for column, plain in zip(columns, plains):
            values, scores = scored_rows(rng, int(rng.integers(1, 60)), kinds)
            if (
                kinds in ("few", "many") and batch % 2
            ):  # an array: its numbers are floats, 3.0 is "3.0" in the distinct table
                values = np.array(values, dtype=np.float64).tolist()
                column.add(np.array(values), scores=scores)
            else:
                column.add(values, numbers_only=kinds in ("few", "many") and batch % 4 == 0, scores=scores)
            plain.add(values, scores)
        unscored.add(scored_rows(rng, 5, kinds)[0])
        if batch % 7 == 3:
            warmup.compact([columns[0], unscored, columns[1]])
    for column, plain in zip(columns, plains):
        assert scored_tallies(column) == plain_tallies(plain)
        assert column.bucket_scores.dtype == np.int64  # exact sums past 2**53, as the counts
        restored = WarmupColumn.from_state(column.state(), limit, max_kept)
        assert restored.scored and scored_tallies(restored) == plain_tallies(plain)
        everything = [*plain.buckets.values(), *plain.categories.values(), plain.other]
        assert column.present_scores.tolist() == [sum(t[1] for t in everything), sum(t[2] for t in everything)]
        assert restored.present_scores.tolist() == column.present_scores.tolist()
    assert (
        unscored.state().get("scores") is None and not WarmupColumn.from_state(unscored.state(), limit, max_kept).scored
    )


def test_a_scored_state_keeps_scored_rows_only_where_some_row_had_no_score_in_the_narrowest_unsigned_type() -> None:
    every = WarmupColumn(limit=5, max_kept=3, scored=True)
    every.add([1, 2, "a", "b", 2], scores=[10, 20, 30, 40, 50])
    state = every.state()["scores"]
    # distinct numbers by text ("1", "2"), categories by name (a, b), then other; not the buckets' (the distinct
    # numbers' own, made again on load)
    assert state["scored"] is None and state["sums"].tolist() == [10, 70, 30, 40, 0]
    assert state["sums"].dtype == np.uint8
    dropped = WarmupColumn(limit=1, max_kept=3, scored=True)  # two distinct numbers: the buckets' come first
    dropped.add([1, 2, "a", "b", 2], scores=[10, 20, 300, 40, 50])
    state = dropped.state()["scores"]
    assert state["scored"] is None and state["sums"].tolist() == [10, 70, 300, 40, 0]
    assert state["sums"].dtype == np.uint16
    some = WarmupColumn(limit=5, max_kept=3, scored=True)
    some.add([1, 2, "a", 2], scores=[-1, 2**32, 5, -1])
    state = some.state()["scores"]
    assert state["scored"].tolist() == [0, 1, 1, 0] and state["scored"].dtype == np.uint8
    assert state["sums"].tolist() == [0, 2**32, 5, 0] and state["sums"].dtype == np.uint64
    assert [warmup._narrow(v).dtype for v in ([], [255], [256], [2**16], [2**32 - 1], [2**32])] == [
        np.uint8,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint32,
        np.uint64,
    ]
    assert [warmup.narrow_signed(np.array([v, 0])).dtype for v in (-128, 127, 128, -32768, 32768)] == [
        np.int8,
        np.int8,
        np.int16,
        np.int16,
        np.int32,
    ]
    # an array's NaN is missing, and its score goes with it; the distinct table holds exactly limit numbers
    array = WarmupColumn(limit=2, max_kept=3, scored=True)
    array.add(np.array([1.0, np.nan, 2.0]), scores=[5, 6, 7])
    assert (array.distinct, array.distinct_scored, array.distinct_sums) == (
        {"1.0": 1, "2.0": 1},
        {"1.0": 1, "2.0": 1},
        {"1.0": 5, "2.0": 7},
    )
    assert array.present_scores.tolist() == [2, 12]
    array.add(np.array([3.0]), scores=[1])
    assert (array.distinct, array.distinct_scored, array.distinct_sums) == (None, {}, {})
    # categories by their text (True is "True"), with their scored rows and sums, a score of 0 scored
    booleans = WarmupColumn(limit=5, max_kept=3, scored=True)
    booleans.add([True, "True", False, 1], scores=[0, 5, -1, 0])
    assert booleans.categories == {"True": 2, "False": 1}
    assert (booleans.category_scored, booleans.category_sums) == ({"True": 2}, {"True": 5})
    assert (booleans.distinct_scored, booleans.distinct_sums) == ({"1": 1}, {"1": 0})


def test_numbers_copy_summarises_the_numbers_alone_and_counts_the_originals_later_rows_apart() -> None:
    """What multivariate borrows from a feature's warm-up column: the same count, anchor and histogram,
    every category as ``other``, no distinct numbers or scores; rows added to either stay in it."""
    column = WarmupColumn(limit=10, max_kept=1, scored=True)
    column.add([1.5, 2.5, "a", 1.5, None] + [float(x) for x in range(2000)], scores=[7] * 2005)
    column.add([3.0, "b", "a"], scores=[1, 2, 3])
    copy = column.numbers_copy()
    assert (column.categories, column.other) == ({"a": 2}, 1)
    assert (copy.numbers, copy.anchor, copy.distinct, copy.categories, copy.other) == (2004, column.anchor, None, {}, 3)
    assert not copy.scored and copy.limit == 0 and copy.max_kept == 0
    assert [a.tolist() for a in copy.histogram()] == [a.tolist() for a in column.histogram()]
    copy.add([1e6, 1e6])
    column.add([-5.0], scores=[3])
    assert copy.numbers == 2006 and column.numbers == 2005
    assert copy.histogram()[1].sum() == 2006 and column.histogram()[1].sum() == 2005
