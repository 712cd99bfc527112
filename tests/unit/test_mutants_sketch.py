"""core/sketch.py's columns pinned exactly: the tests that kill the mutants `make mutation` found surviving there.

Each test states what a drift statistic relies on: which bin a value falls in (below, between edges, above,
missing, invalid; a category, other), the reference counts of hand-worked columns, the edges a fit makes, the
smallest count dtypes. docs/mutation.md lists the mutants left alive and why.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core.buckets import lower
from streamdrift.core.sketch import CATEGORICAL, NUMERIC, Column, category_keys, count_dtype, infer_kind, to_float
from streamdrift.core.warmup import WarmupColumn


def test_a_numeric_value_falls_below_between_edges_above_missing_or_invalid() -> None:
    """Bins of edges [0, 1, 2]: below 0, [0, 1), [1, 2] (the maximum included), above 2, missing, invalid."""
    column = Column("x", NUMERIC, [0.0, 1.0, 2.0], [], [])
    assert (column.n_edges, column.n_bins, column.missing_bin, column.invalid_bin) == (3, 6, 4, 5)
    values = [-1, 0, 0.5, 1, 1.5, 2, 2.5, None, "a", True, float("nan")]
    idx, mismatched = column.indices(values)
    assert idx.tolist() == [0, 1, 1, 2, 2, 2, 3, 4, 5, 5, 4] and mismatched == 2
    counts, mismatched = column.bin(values)
    assert counts.tolist() == [1, 2, 3, 1, 2, 2] and mismatched == 2
    assert column.bin([0.5, 3])[0].tolist() == [0, 1, 0, 1, 0, 0] and column.bin([0.5, 3])[1] == 0


def test_a_category_falls_in_its_bin_in_other_or_missing_and_never_invalid() -> None:
    column = Column("c", CATEGORICAL, [], ["a", "3", "True"], [])
    assert (column.n_bins, column.missing_bin, column.invalid_bin) == (6, 4, 5)
    idx, mismatched = column.indices(["a", 3, True, "b", None, 3.0, "True"])
    assert idx.tolist() == [0, 1, 2, 3, 4, 3, 2] and mismatched == 0  # 3.0 is "3.0": not the category "3"


def test_fit_of_numbers_makes_quantile_edges_and_counts_the_rows_in_their_bins() -> None:
    values = [*range(101), None, None, None]
    column = Column.fit("x", values, bins=4, max_categories=3)
    assert column.kind == NUMERIC
    assert column.edges.tolist() == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert column.ref_counts.tolist() == [0, 25, 25, 25, 26, 0, 3, 0]
    assert column.state() == {
        "name": "x",
        "kind": NUMERIC,
        "edges": [0.0, 25.0, 50.0, 75.0, 100.0],
        "categories": [],
        "ref_counts": [0, 25, 25, 25, 26, 0, 3, 0],
    }


def test_fit_of_few_distinct_numbers_gives_each_its_bin() -> None:
    column = Column.fit("flag", [0, 1, 1, None, 2, 2, 2], bins=3, max_categories=3)
    assert column.edges.tolist() == [0.0, 1.0, 2.0, 2.0]
    assert column.ref_counts.tolist() == [0, 1, 2, 3, 0, 1, 0]
    more = Column.fit("n", [0, 1, 2, 3], bins=3, max_categories=3)  # one more than bins: quantiles
    assert more.edges.tolist() == [0.0, 1.0, 2.0, 3.0] and more.ref_counts.tolist() == [0, 1, 1, 2, 0, 0, 0]


def test_quantile_edges_that_coincide_are_merged_and_none_equals_the_extremes() -> None:
    column = Column.fit("x", [0] * 50 + [1, 2, 3, 4, 5, 6] + [9] * 50, bins=4, max_categories=3)
    assert column.edges.tolist() == [0.0, 3.5, 9.0]  # the median between 3 and 4; the quartiles at 0 and 9
    assert column.ref_counts.tolist() == [0, 53, 53, 0, 0, 0]


def test_fit_of_no_rows_is_one_empty_numeric_bin() -> None:
    column = Column.fit("x", [], bins=4, max_categories=3)
    assert column.kind == NUMERIC and column.edges.tolist() == [0.0, 0.0]
    assert column.ref_counts.tolist() == [0, 0, 0, 0, 0]


def test_fit_of_categories_tracks_the_most_frequent_seen_often_enough_ties_by_name() -> None:
    values = ["b"] * 5 + ["a"] * 5 + ["c"] * 6 + ["d"] * 4 + [None, None] + [True] * 7
    column = Column.fit("c", values, bins=10, max_categories=3, min_count=5)
    assert column.kind == CATEGORICAL and column.categories == ["True", "c", "a"]
    assert column.ref_counts.tolist() == [7, 6, 5, 9, 2, 0]
    rare = Column.fit("c", values, bins=10, max_categories=5, min_count=6)
    assert rare.categories == ["True", "c"] and rare.ref_counts.tolist() == [7, 6, 14, 2, 0]


def test_a_column_is_numeric_only_when_every_present_value_is_a_number() -> None:
    assert infer_kind([1, 2.5, None]) == NUMERIC and infer_kind([]) == NUMERIC
    assert infer_kind([None, None]) == CATEGORICAL  # nothing seen: nothing to bin by value
    assert infer_kind([1, True]) == CATEGORICAL and infer_kind([1, "2"]) == CATEGORICAL


def test_to_float_reads_numbers_and_counts_what_is_not_one() -> None:
    x, mismatched = to_float([1, 2.5, None])
    assert x.dtype == np.float64 and x.tolist()[:2] == [1.0, 2.5] and np.isnan(x[2]) and mismatched == 0
    x, mismatched = to_float([1, "a", None, False, 3])
    assert np.isnan(x[[1, 2, 3]]).all() and x[[0, 4]].tolist() == [1.0, 3.0] and mismatched == 2


def test_category_keys_are_the_sorted_strings_with_none_apart() -> None:
    uniq, inverse = category_keys(["b", None, 3, "a", "b", True])
    # None is among the strings (as "None", counted 0 times), and missing in the inverse
    assert uniq.tolist() == ["3", "None", "True", "a", "b"] and inverse.tolist() == [4, -1, 0, 3, 4, 2]


@pytest.mark.parametrize(
    "unsigned, types", [(False, (np.int8, np.int16, np.int32)), (True, (np.uint8, np.uint16, np.uint32))]
)
def test_count_dtype_is_the_smallest_that_holds_the_limit(unsigned: bool, types: tuple) -> None:
    for t in types:
        largest = int(np.iinfo(t).max)
        assert count_dtype(largest, unsigned) == np.dtype(t)
        assert count_dtype(largest + 1, unsigned) != np.dtype(t)
    assert count_dtype(0, unsigned) == np.dtype(types[0])
    assert count_dtype(int(np.iinfo(types[-1]).max) + 1, unsigned) == np.dtype(np.int64)
    assert count_dtype(200) == np.dtype(np.int16)  # signed by default


def test_by_default_a_category_seen_five_times_is_tracked_and_four_times_is_not() -> None:
    """The reference builders (``reference build``, the warm-up) use the default ``min_count``."""
    values = ["x"] * 5 + ["y"] * 4 + ["z"] * 6
    fitted = Column.fit("c", values, bins=10, max_categories=5)
    summary = WarmupColumn(limit=10, max_kept=10)
    summary.add(values)
    summarised = Column.from_summary("c", summary, len(values), bins=10, max_categories=5)
    for column in (fitted, summarised):
        assert column.categories == ["z", "x"] and column.ref_counts.tolist() == [6, 5, 4, 0, 0]


def test_numbers_among_categories_count_as_their_text_once_each() -> None:
    values = ["a"] * 6 + [3] * 4 + [3.5] * 5 + [None]
    summary = WarmupColumn(limit=10, max_kept=10)
    summary.add(values)
    column = Column.from_summary("c", summary, len(values), bins=10, max_categories=5)
    assert column.categories == ["a", "3.5"] and column.ref_counts.tolist() == [6, 5, 4, 1, 0]
    assert column.state() == Column.fit("c", values, bins=10, max_categories=5).state()


def test_upper_case_categories_and_missing_values_fit() -> None:
    """None is the string "None" among the unique keys, here the last one, counted 0 times."""
    values = ["DE"] * 6 + ["FR"] * 5 + [None] * 2
    column = Column.fit("country", values, bins=10, max_categories=5)
    assert column.categories == ["DE", "FR"] and column.ref_counts.tolist() == [6, 5, 0, 2, 0]


def test_a_warm_up_of_as_many_distinct_numbers_as_bins_gives_each_its_bin_as_a_fit_does() -> None:
    rows = [0, 1, 1, 2, 2, 2, None]
    summary = WarmupColumn(limit=10, max_kept=10)
    summary.add(rows)
    column = Column.from_summary("n", summary, len(rows), bins=3, max_categories=5)
    assert column.edges.tolist() == [0.0, 1.0, 2.0, 2.0]
    assert column.state() == Column.fit("n", rows, bins=3, max_categories=5).state()


def test_a_warm_up_heavy_at_its_minimum_has_each_edge_once_and_its_top_bucket_s_upper_bound_as_maximum() -> None:
    rng = np.random.default_rng(2)
    rows = [0.0] * 600 + rng.normal(5, 1, 400).tolist()
    summary = WarmupColumn(limit=10, max_kept=10)
    summary.add(rows)
    column = Column.from_summary("x", summary, len(rows), bins=10, max_categories=5)
    edges = column.edges.tolist()
    assert edges == sorted(set(edges)) and edges[0] == summary.anchor + lower(summary.histogram()[0][0])
    top = summary.histogram()[0][-1]
    assert edges[-1] == summary.anchor + lower(top + 1) and summary.anchor + lower(top) <= max(rows) < edges[-1]
    assert column.ref_counts.tolist() == column.bin(rows)[0].tolist()
    assert column.n_edges == Column.fit("x", rows, bins=10, max_categories=5).n_edges


def test_a_shared_column_reads_its_edges_and_reference_from_the_sketch_s_arrays() -> None:
    plain = Column("x", NUMERIC, [0.0, 1.0, 2.0], [], [0, 3, 4, 0, 1, 0])
    shared = Column.shared("x", NUMERIC, [], 3)
    shared.share(np.array([9.0, 0.0, 1.0, 2.0]), 1, np.array([7, 7, 0, 3, 4, 0, 1, 0]), 2)
    assert shared.state() == plain.state() and shared.n_bins == 6
    categories = Column.shared("c", CATEGORICAL, ["a", "b"], 0)
    categories.share(np.zeros(0), 0, np.array([1, 2, 0, 0, 0]), 0)
    assert categories.indices(["b", "z", None])[0].tolist() == [1, 2, 3]
