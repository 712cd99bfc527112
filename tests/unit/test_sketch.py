"""Sketch binning: the numeric columns of a batch at once (the fast path), exactly as column by column (the reference)."""

from __future__ import annotations

import bisect
import random

import numpy as np
import orjson
import pytest

from streamdrift.core.sketch import Column, StreamSketch

_DUMP = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS


def _batch(rng: random.Random, n: int, row: int) -> dict[str, list]:
    """Six columns: numeric with missing values, ints and (after warm-up) wrong types; 0/1; categories."""
    columns: dict[str, list] = {}
    for j in range(4):
        values: list = []
        for _ in range(n):
            r, v = rng.random(), rng.gauss(j + 0.5 * (row > 3000), 1 + j)
            values.append(
                None
                if r < 0.02
                else rng.choice(["x", True, "1.5"])
                if r < 0.025 and j == 1 and row > 600
                else int(v * 3)
                if r < 0.03
                else v
            )
        columns[f"x{j}"] = values
    columns["flag"] = [rng.choice([0, 1, None]) for _ in range(n)]
    columns["colour"] = [None if rng.random() < 0.05 else rng.choice(["a", "b", "c", 3, True]) for _ in range(n)]
    if rng.random() < 0.2:
        del columns["x2"]  # a column absent from a whole batch
    return columns


def _fast_and_slow(batches) -> tuple[StreamSketch, int]:
    """Feed the same batches to a sketch that bins a batch at once and to one that bins column by
    column; every window's scores and the final states must be equal. Returns the fast one and the
    number of windows scored."""
    fast = StreamSketch(500, 400, 4, 10, 5, 10)
    slow = StreamSketch(500, 400, 4, 10, 5, 10)
    slow.vectorised = False
    row = windows = 0
    while row < 6000:
        columns, n = batches(row)
        offsets = np.arange(row, row + n)
        numeric = frozenset(k for k, v in columns.items() if all(type(x) in (int, float, type(None)) for x in v))
        a = fast.update(columns, offsets, offsets * 0.1, numeric)  # as the decoder tells it
        b = slow.update(columns, offsets, offsets * 0.1)
        assert orjson.dumps(a, option=_DUMP) == orjson.dumps(b, option=_DUMP)
        windows += len(a)
        row += n
    assert orjson.dumps(fast.state(), option=_DUMP) == orjson.dumps(slow.state(), option=_DUMP)
    return fast, windows


@pytest.mark.parametrize("seed", range(5))
def test_batch_binning_equals_column_by_column(seed: int) -> None:
    rng = random.Random(seed)

    def batches(row: int) -> tuple[dict, int]:
        n = rng.randint(1, 250)
        return _batch(rng, n, row), n

    fast, windows = _fast_and_slow(batches)
    assert windows > 40 and fast.type_mismatches["x1"] > 0  # scored, and the wrong types were seen


def _categorical_batch(rng: random.Random, n: int, row: int, rare: bool) -> dict[str, list]:
    """Several categorical columns, as the decoder gives them: strings or None; one sometimes absent,
    one of values too rare to track (no categories), one that takes other types after a while."""
    columns = _batch(rng, n, row)
    del columns["colour"]
    for j, levels in enumerate((["a", "b", "c"], ["u", "v", "w", "x", "y", "z", "zz"], ["p", "q"])):
        columns[f"s{j}"] = [
            None if rng.random() < 0.05 else rng.choice(levels[: 2 + (row > 2500) * 5]) for _ in range(n)
        ]
    if rng.random() < 0.2:
        del columns["s1"]
    if rare and rng.random() < 0.3:
        columns["rare"] = [f"id{row + i}" for i in range(n)]
    if row > 4000 and rng.random() < 0.3:
        columns["s2"][0] = rng.choice([3, True, 2.5])
    return columns


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rare", [False, True])
def test_categorical_columns_at_once_equal_column_by_column(seed: int, rare: bool) -> None:
    rng = random.Random(seed)

    def batches(row: int) -> tuple[dict, int]:
        n = rng.randint(1, 250)
        return _categorical_batch(rng, n, row, rare), n

    fast, windows = _fast_and_slow(batches)
    assert windows > 40 and sum(c.kind == "categorical" for c in fast.columns) >= 3


@pytest.mark.parametrize(
    ("fitted", "values"),
    [
        (["a", "b", "c", None] * 30, ["a", "b", None, "zz", "a"] * 30),  # categories, strings only
        (["a", "b", "c", None] * 30, ["a", 3, True, None, "b", 3.0] * 30),  # categories, other types too
        ([0.5, 1.5, 2.5, 7.0, -1.0] * 30, [0.5, None, 7, -2.0, 1e9] * 30),  # numbers, out of range
        ([0.5, 1.5, 2.5, 7.0, -1.0] * 30, [1, "x", None, 2.5, False] * 30),  # numbers, wrong types
    ],
)
def test_bins_of_each_value_count_as_the_histogram(fitted: list, values: list) -> None:
    """``Column.indices`` and ``Column.bin`` against the bin layout worked out value by value."""
    column = Column.fit("c", fitted, bins=4, max_categories=2, min_count=1)
    idx, mismatched = column.indices(values)
    expected = [_bin_of(column, v) for v in values]
    assert idx.tolist() == expected
    assert mismatched == sum(b == column.invalid_bin for b in expected)
    assert column.bin(values)[0].tolist() == np.bincount(expected, minlength=column.n_bins).tolist()


def _bin_of(column: Column, value: object) -> int:
    """The layout in Column's docstring, one value at a time."""
    if value is None:
        return column.missing_bin
    if column.kind == "numeric":
        if type(value) not in (int, float):
            return column.invalid_bin
        edges = column.edges.tolist()
        if value < edges[0]:
            return 0
        if value > edges[-1]:
            return len(edges)
        return bisect.bisect_right(edges[1:-1], value) + 1
    key = value if type(value) is str else str(value)
    return column.categories.index(key) if key in column.categories else len(column.categories)
