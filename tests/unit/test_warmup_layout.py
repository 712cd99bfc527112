"""Format versions 6 and 7 of a sketch's warm-up state (issue 16): anchors as bucket keys, distinct numbers as
integers, the score sums of one row as places among theirs.

A warm-up column's anchor is a bucket boundary, written as that bucket's key; its distinct numbers, whose texts
were most of a short warm-up's bytes, as sorted integers (``warmup_tables.decimal_table``); the score sum of an entry
counted once as its place among the distinct such sums (``warmup._sketch_scores``). All must give back exactly
what was written, whatever the numbers (ints, floats, both zeros, integers past 64 bits, exponents), read
versions 5's and 6's layouts, and refuse what no writer makes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.core import state as snapshot
from streamdrift.core import warmup
from streamdrift.core.warmup import WarmupColumn

LIMIT, KEPT = 40, 5


def _columns(tables: list[list], scored: bool) -> dict[str, WarmupColumn]:
    """A sketch's warm-up columns, one per list of values, each added four rows at a time."""
    rng = np.random.default_rng(len(tables))
    columns = {}
    for i, values in enumerate(tables):
        column = WarmupColumn(LIMIT, KEPT, scored=scored)
        for start in range(0, len(values), 4):
            part = values[start : start + 4]
            column.add(part, scores=[int(s) for s in rng.integers(-1, 2**20, len(part))] if scored else None)
        columns[f"f{i}"] = column
    return columns


def _seen(column: WarmupColumn) -> tuple:
    keys, counts = column.histogram()
    return (
        column.numbers,
        column.anchor,
        column.distinct,
        column.categories,
        column.other,
        keys.tolist(),
        counts.tolist(),
        column.bucket_scores.tolist(),
        column.distinct_scored,
        column.distinct_sums,
        column.present_scores.tolist(),
    )


def _round_trip(columns: dict[str, WarmupColumn]) -> tuple[dict, dict[str, WarmupColumn]]:
    state = snapshot.loads(snapshot.dumps(warmup.sketch_state(columns)))
    return state, warmup.from_sketch_state(state, LIMIT, KEPT)


def _as_version_6(columns: dict[str, WarmupColumn]) -> dict:
    """The state version 6 wrote: every entry's score sum in ``sums``."""
    state = warmup.sketch_state(columns)
    if "scores" in state:
        counted: list[int] = []
        scored: list[int] = []
        sums: list[int] = []
        for name in sorted(columns):
            columns[name]._score_tables(counted, scored, sums)
        state["scores"] = {"scored": None if scored == counted else np.array(scored), "sums": np.array(sums)}
    return state


def _as_version_5(columns: dict[str, WarmupColumn]) -> dict:
    """The state version 5 wrote: every anchor and distinct-number table in its column's plain values too."""
    state = _as_version_6(columns)
    for key in ("anchors", "distinct_first", "distinct_steps", "distinct_counts"):
        state.pop(key, None)
    for name, plain in state["columns"].items():
        plain.pop("decimals", None)
        plain["anchor"] = columns[name].anchor
        plain["distinct"] = None if columns[name].distinct is None else dict(columns[name].distinct)
    return state


NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-5, 5).map(lambda x: round(x, 4)),
    st.sampled_from([0.0, -0.0, 1e-05, 1e16, 123456789.123, 2**53 + 1, 0.1 + 0.2]),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.one_of(NUMBERS, st.sampled_from(["a", "b", None])), max_size=30), max_size=5), st.booleans()
)
def test_a_warm_up_written_in_version_6_gives_back_every_column_exactly(tables: list[list], scored: bool) -> None:
    columns = _columns(tables, scored)
    state, restored = _round_trip(columns)
    assert list(restored) == sorted(columns)
    for name, column in columns.items():
        assert _seen(restored[name]) == _seen(column)
    assert snapshot.dumps(warmup.sketch_state(restored)) == snapshot.dumps(warmup.sketch_state(columns))
    for older in (_as_version_5(columns), _as_version_6(columns)):
        restored = warmup.from_sketch_state(snapshot.loads(snapshot.dumps(older)), LIMIT, KEPT)
        for name, column in columns.items():
            assert _seen(restored[name]) == _seen(column)


def test_short_decimals_and_ints_are_written_as_integers_and_the_others_as_texts() -> None:
    tables = [
        [1.5, -2.25, 1.5, 0.0001],  # floats in positional notation: scaled to 4 decimals
        [0, 1, 1, -7],  # ints
        [3, 3.0],  # an int and a float: texts
        [0.0, -0.0],  # -0.0's integer would have no sign: texts
        [1e-05, 2.5],  # a float written with an exponent: texts
        [2**70, 1],  # past 64 bits: texts
        ["a", 2.5],  # numbers among categories: integers as well
    ]
    columns = _columns(tables, scored=False)
    state = warmup.sketch_state(columns)
    plain = state["columns"]
    assert [plain[f"f{i}"]["distinct"] for i in range(7)] == [
        3,
        3,
        {"3": 1, "3.0": 1},
        {"-0.0": 1, "0.0": 1},
        {"1e-05": 1, "2.5": 1},
        {"1": 1, "1180591620717411303424": 1},
        1,
    ]
    assert [plain[f"f{i}"].get("decimals", "-") for i in range(7)] == [4, None, "-", "-", "-", "-", 1]
    assert state["distinct_first"].tolist() == [-22500, -7, 25]
    assert state["distinct_steps"].tolist() == [22501, 14999, 7, 1]
    assert state["distinct_counts"].tolist() == [1, 1, 2, 1, 1, 2, 1]
    assert "anchor" not in plain["f0"] and state["anchors"].dtype == np.int16  # a key, not a float's text
    _, restored = _round_trip(columns)
    assert restored["f0"].distinct == {"-2.25": 1, "0.0001": 1, "1.5": 2}


def test_an_anchor_that_is_no_bucket_boundary_is_written_as_it_is() -> None:
    """No writer makes one (``add`` sets a boundary), but one read from an older state is kept exactly."""
    columns = _columns([[2.5, 7.25], ["a"]], scored=True)
    columns["f0"].anchor = 2.4
    state, restored = _round_trip(columns)
    assert state["columns"]["f0"]["anchor"] == 2.4 and "anchor" not in state["columns"]["f1"]
    assert restored["f0"].anchor == 2.4 and restored["f1"].anchor == 0.0


def _tampered(change) -> dict:
    state = snapshot.loads(
        snapshot.dumps(warmup.sketch_state(_columns([[1.5, 2.5, 4.0], [0, 1], [3, 3.0]], scored=False)))
    )
    change(state)
    return state


def _set(key: str, value: object):
    return lambda state: state.__setitem__(key, value)


def _set_column(name: str, key: str, value: object):
    return lambda state: state["columns"][name].__setitem__(key, value)


def _scores(key: str, value: object):
    return lambda state: state["scores"].__setitem__(key, value)


@pytest.mark.parametrize(
    "change, message",
    [
        (_scores("row_at", np.array([0, 1], np.uint8)), "score sums do not match its counts"),
        (_scores("sums", np.zeros(1, np.uint8)), "score sums do not match its counts"),
        (_scores("row_sums", np.zeros(1, np.uint8)), "refer to sums it does not have"),
    ],
)
def test_score_sums_that_do_not_fit_the_counts_are_refused(change, message: str) -> None:
    columns = _columns([[1.5, 2.5, 4.0, 2.5], ["a", "b", "a", None]], scored=True)
    state = snapshot.loads(snapshot.dumps(warmup.sketch_state(columns)))
    # one row: 1.5, 4.0 and b; the others: 2.5, a and each column's other (none)
    assert len(state["scores"]["row_at"]) == 3 and len(state["scores"]["sums"]) == 4
    change(state)
    with pytest.raises(ValueError, match=message):
        warmup.from_sketch_state(state, LIMIT, KEPT)


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("anchors", np.zeros(2, np.int16)), "2 anchors for 3 columns"),
        (_set("distinct_counts", np.ones(4, np.uint8)), "distinct numbers and their counts do not match"),
        (_set_column("f0", "distinct", 6), "has 6 distinct numbers"),
        (_set_column("f1", "distinct", 0), "has 0 distinct numbers"),
        (_set_column("f0", "decimals", 40), "of 40 decimals"),
        (_set_column("f0", "decimals", "1"), "of '1' decimals"),
        (_set("distinct_steps", np.array([10, 0, 1], np.uint8)), "a distinct number twice"),
        (_set_column("f1", "distinct", {"0": 1, "1": 1}), "no column reads"),
        (_set_column("f2", "distinct", {"0": 1, "01": 1}), "not written as str"),
        (_set_column("f2", "distinct", {"1.50": 1}), "not written as str"),
        (_set_column("f2", "distinct", {"1_0": 1}), "not written as str"),
    ],
)
def test_a_warm_up_state_no_writer_makes_is_refused_naming_what_is_wrong(change, message: str) -> None:
    state = _tampered(change)
    with pytest.raises(ValueError, match=message) as refused:
        warmup.from_sketch_state(state, LIMIT, KEPT)
    assert "1.50" not in str(refused.value) and "01" not in str(refused.value)  # no user's value in it


def _one_at_a_time(columns: dict[str, WarmupColumn]) -> tuple[list[int], list[int], dict | None]:
    """A sketch's ``steps``, ``counts`` and score arrays made column by column, as ``sketch_state`` made them
    before it made them for all its columns at once (issue 19): each histogram's steps and counts, each
    column's score entries by ``_score_tables``, joined."""
    steps: list[int] = []
    counts: list[int] = []
    counted: list[int] = []
    scored: list[int] = []
    sums: list[int] = []
    for name in sorted(columns):
        column = columns[name]
        if column.distinct is None:
            keys, column_counts = column.histogram()
            steps += warmup._steps(keys).tolist()
            counts += column_counts.tolist()
        if column.scored:
            column._score_tables(counted, scored, sums)
    scored_any = any(column.scored for column in columns.values())
    return steps, counts, warmup._sketch_scores(counted, scored, sums) if scored_any else None


def _typed(array: np.ndarray | None) -> tuple[str, list[int]] | None:
    return None if array is None else (array.dtype.str, array.tolist())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(NUMBERS, max_size=70),  # past LIMIT distinct numbers: a histogram
            st.lists(st.one_of(st.integers(0, 3), st.sampled_from(["a", "b", "c", None])), max_size=20),
            st.lists(st.floats(-1e3, 1e3), min_size=41, max_size=90),  # a histogram for sure
        ),
        max_size=6,
    ),
    st.booleans(),
)
def test_a_sketch_s_arrays_are_those_its_columns_make_one_at_a_time(tables: list[list], scored: bool) -> None:
    """``sketch_state`` makes its steps, counts and score arrays for all its columns at once: the same values in
    the same dtypes as joining each column's (``_one_at_a_time``), whatever its columns (histograms, distinct
    numbers, categories, none), scored or not."""
    columns = _columns(tables, scored)
    state = warmup.sketch_state(columns)
    steps, counts, scores = _one_at_a_time(columns)
    if steps or counts or any(column.distinct is None for column in columns.values()):
        assert _typed(state["steps"]) == _typed(warmup.narrow_signed(np.array(steps, np.int64)))
        assert _typed(state["counts"]) == _typed(warmup._narrow(np.array(counts, np.int64)))
    else:
        assert "steps" not in state and "counts" not in state
    if scores is None:
        assert "scores" not in state
    else:
        assert {k: _typed(v) for k, v in state["scores"].items()} == {k: _typed(v) for k, v in scores.items()}


def _with_a_histogram(change) -> dict:
    """A sketch state whose column f0 writes a histogram (45 buckets, past the distinct-number limit), scored,
    then ``change`` d."""
    columns = _columns([[float(i) * 1.37 for i in range(LIMIT + 5)], [0, 1]], scored=True)
    state = snapshot.loads(snapshot.dumps(warmup.sketch_state(columns)))
    assert state["columns"]["f0"]["buckets"] == len(state["steps"]) == len(state["counts"]) == 45
    change(state)
    return state


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("steps", np.ones(42, np.int16)), "45 buckets, 42 steps and 45 counts"),
        (_set("counts", np.ones(44, np.uint8)), "45 buckets, 45 steps and 44 counts"),
        (_set_column("f0", "buckets", 40), "40 buckets, 45 steps and 45 counts"),
        (_set_column("f0", "buckets", -1), "the warm-up column 'f0' has -1 buckets"),
        (_set_column("f0", "buckets", 45.0), "the warm-up column 'f0' has 45.0 buckets"),
        (_scores("scored", np.ones(3, np.uint8)), "3 scored counts for 49 entries"),
        (_set_column("f0", "categories", {"a": "x"}), "'f0' has a count that is no positive integer"),
        (_set_column("f0", "categories", {"a": 0}), "'f0' has a count that is no positive integer"),
        (_set_column("f1", "distinct", {"0": 1, "1": 1.0}), "'f1' has a count that is no positive integer"),
    ],
)
def test_a_warm_up_state_whose_arrays_do_not_fit_its_columns_is_refused_when_read(change, message: str) -> None:
    """Arrays of other lengths than the columns say passed the read and broke the first write of the model's
    state after it (``merge_buckets``, in the checkpoint), so that no checkpoint of its partition was written
    again: refused when read, where a restore or the model's first event quarantines it."""
    with pytest.raises(ValueError, match=message):
        warmup.from_sketch_state(_with_a_histogram(change), LIMIT, KEPT)
