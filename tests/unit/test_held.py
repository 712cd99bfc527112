"""Warm-up rows a sketch holds back (``core/held.py``, issue 19) never show: a sketch that holds them and one that updates
with every batch at once (``hold_rows = 0``) return the same score records from the same calls and end in the same
state, whatever the batches, the columns that come and go, the reads between them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.core import state as snapshot
from streamdrift.core.held import HeldRows
from streamdrift.core.sketch import StreamSketch

ROWS = 700  # past the reference (200) and through several windows (100 rows, 4 sub-windows)


def _sketch(hold_rows: int, scored: bool) -> StreamSketch:
    sketch = StreamSketch(200, 100, 4, 8, 4, 6, scored=scored)
    sketch.hold_rows = hold_rows
    return sketch


def _stream(seed: int) -> dict[str, list]:
    """Columns of ROWS rows: numbers that shift half-way (so windows score drift), a category, a column of numbers
    and, past its numeric reference, texts (type mismatches), one that first comes at row 150 and one that goes
    at row 400; None and NaN where missing."""
    rng = np.random.default_rng(seed)
    shift = np.where(np.arange(ROWS) < ROWS // 2, 0.0, 1.5)
    x = (rng.normal(0, 1, ROWS) + shift).round(3)
    x[rng.random(ROWS) < 0.05] = np.nan
    mixed = [float(v) if i < 250 or rng.random() < 0.9 else "n/a" for i, v in enumerate(rng.integers(0, 5, ROWS))]
    late = [None if i < 150 else float(v) for i, v in enumerate(rng.normal(3, 1, ROWS).round(2))]
    gone = [str(v) if i < 400 else None for i, v in enumerate(rng.integers(0, 3, ROWS))]
    return {
        "x": list(x),
        "cat": [str(v) for v in rng.choice(["a", "b", "c", "d", "e", "f"], ROWS)],
        "mixed": mixed,
        "late": late,
        "gone": gone,
        "score": list(np.clip(rng.normal(0.5, 0.2, ROWS), 0, 1)),
    }


NAMES = ("x", "cat", "mixed", "late", "gone")


def _batch(stream: dict[str, list], start: int, stop: int, names: tuple[str, ...] = NAMES) -> tuple:
    """Rows start:stop as the decoder gives a batch: float columns as arrays, others as lists, a name absent where
    none of its rows has a value."""
    columns: dict = {}
    for name in names:
        values = stream[name][start:stop]
        if all(v is None or (isinstance(v, float) and v != v) for v in values):
            continue
        floats = all(isinstance(v, float) for v in values)
        columns[name] = np.array(values, dtype=np.float64) if floats else values
    numeric = frozenset(n for n, v in columns.items() if isinstance(v, np.ndarray))
    offsets = np.arange(start, stop, dtype=np.int64)
    versions = ["v1" if i < 500 else "v2" for i in range(start, stop)]
    return columns, offsets, offsets * 0.5, numeric, versions, np.array(stream["score"][start:stop])


def _read(sketch: StreamSketch, how: int) -> object:
    """What a reader may ask between batches (each reading settles what the sketch holds, or not)."""
    if how == 0:
        return snapshot.dumps(sketch.state())
    if how == 1:
        return dict(sketch.type_mismatches)
    if how == 2:
        return sketch.rows_to_next_step(), sketch.seen, sketch.ready
    return None


def _run(
    sketch: StreamSketch, stream: dict[str, list], cuts: list[int], reads: list[int], names: tuple[str, ...] = NAMES
) -> list:
    out = []
    for (start, stop), how in zip(zip(cuts, cuts[1:]), reads):
        columns, offsets, times, numeric, versions, scores = _batch(stream, start, stop, names)
        records = sketch.update(columns, offsets, times, numeric, versions, scores if sketch.scored else None)
        out.append((snapshot.dumps(records), _read(sketch, how)))
    out.append(snapshot.dumps(sketch.state()))
    return out


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 3),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=300),
    reads=st.lists(st.sampled_from([0, 1, 1, 2, 3, 3, 3]), min_size=300, max_size=300),
    hold_rows=st.sampled_from([1, 7, 64]),
    scored=st.booleans(),
)
def test_a_sketch_that_holds_rows_reports_and_stores_what_one_that_does_not_does(
    seed: int, sizes: list[int], reads: list[int], hold_rows: int, scored: bool
) -> None:
    stream = _stream(seed)
    cuts = [0]
    for size in sizes:
        if cuts[-1] < ROWS:
            cuts.append(min(ROWS, cuts[-1] + size))
    if cuts[-1] < ROWS:
        cuts.append(ROWS)
    held = _run(_sketch(hold_rows, scored), stream, cuts, reads)
    plain = _run(_sketch(0, scored), stream, cuts, reads)
    assert held == plain


@pytest.mark.parametrize("how", [0, 1, 2], ids=["state", "type_mismatches", "rows"])
def test_every_read_between_small_batches_sees_what_it_would_without_holding(how: int) -> None:
    stream = _stream(1)
    cuts = list(range(0, ROWS + 1, 5))
    assert _run(_sketch(64, True), stream, cuts, [how] * len(cuts)) == _run(
        _sketch(0, True), stream, cuts, [how] * len(cuts)
    )


def test_small_batches_of_the_warm_up_are_held_so_the_property_above_is_not_vacuous(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batches of 5 rows of one layout (a column a batch gives as an array or a list by its values, or leaves out,
    changes it): the 200 rows of the warm-up take 4 updates of a sketch that holds up to 64 rows (65, 65, 65, the
    last 5 completing the reference), 40 of one that does not; past it every batch is one update in both, and
    every window scores the same (once full, then every 25 rows)."""
    stream = _stream(0)
    calls = {"held": 0, "plain": 0}
    counted = StreamSketch._update

    def counting(self: StreamSketch, batch: tuple) -> list:
        calls["held" if self.hold_rows else "plain"] += 1
        return counted(self, batch)

    monkeypatch.setattr(StreamSketch, "_update", counting)
    held_sketch, plain_sketch = _sketch(64, True), _sketch(0, True)
    cuts = list(range(0, 201, 5))
    assert _run(held_sketch, stream, cuts, [3] * 40, ("x", "cat")) == _run(
        plain_sketch, stream, cuts, [3] * 40, ("x", "cat")
    )
    assert (calls["held"], calls["plain"]) == (4, 40)
    cuts = list(range(200, ROWS + 1, 5))
    held = _run(held_sketch, stream, cuts, [3] * len(cuts), ("x", "cat"))
    plain = _run(plain_sketch, stream, cuts, [3] * len(cuts), ("x", "cat"))
    assert held == plain
    assert sum(1 for records, _ in held[:-1] if records != snapshot.dumps([])) == (ROWS - 200 - 100) // 25 + 1
    assert (calls["held"], calls["plain"]) == (4 + 100, 40 + 100)


def test_held_rows_are_copies_not_views_of_their_poll() -> None:
    """A batch's arrays are views of its poll's block; held, they would keep every poll a held row came from."""
    poll = np.arange(40, dtype=np.float64).reshape(4, 10)
    held = HeldRows()
    held.add({"a": poll[0, 2:5], "b": poll[1, 2:5], "c": ["x", "y", "z"]}, np.arange(3), np.zeros(3), None)
    poll[:] = -1.0  # the poll's memory reused
    columns, offsets, *_ = held.take()
    assert columns["a"].tolist() == [2.0, 3.0, 4.0] and columns["b"].tolist() == [12.0, 13.0, 14.0]
    assert not np.shares_memory(columns["a"], poll)


def test_a_batch_of_another_layout_is_not_held_with_those_before() -> None:
    held = HeldRows()
    held.add({"a": np.array([1.0]), "c": ["x"]}, np.arange(1), np.zeros(1), frozenset({"a"}), ["v1"])
    assert held.fits({"a": np.array([2.0]), "c": ["y"]}, ["v1"])
    assert not held.fits({"c": ["y"], "a": np.array([2.0])}, ["v1"])  # another order
    assert not held.fits({"a": ["2"], "c": ["y"]}, ["v1"])  # a list where an array was
    assert not held.fits({"a": np.array([2.0]), "c": ["y"]}, None)  # no versions
    assert not held.fits({"a": np.array([2.0]), "c": ["y"]}, ["v1"], np.array([0.5]))  # scores
    held.add({"a": np.array([2.0]), "c": ["y"]}, np.arange(1, 2), np.zeros(1), frozenset(), ["v2"])
    columns, offsets, times, numeric, versions, scores = held.take()
    assert columns["a"].tolist() == [1.0, 2.0] and columns["c"] == ["x", "y"]
    assert numeric == frozenset() and versions == ["v1", "v2"] and scores is None
    assert held.rows == 0 and held.fits({"z": ["q"]})


def test_rows_held_before_a_state_is_loaded_are_not_counted_into_it() -> None:
    stream = _stream(2)
    restored, source = _sketch(64, True), _sketch(64, True)
    _run(source, stream, [0, 5, 10], [3, 3])
    restored.update(*_batch(stream, 300, 305))  # held
    restored.load_state(snapshot.loads(snapshot.dumps(source.state())))
    assert snapshot.dumps(restored.state()) == snapshot.dumps(source.state())


def test_a_wide_batch_holds_fewer_rows() -> None:
    """A sketch holds fewer values than ``hold_values`` (rows x columns): 100 columns, at most 20 rows, so that a row
    of many features or long strings is not held 63 times; and what it reports and stores is the same."""
    rng = np.random.default_rng(3)
    names = [f"f{i:03d}" for i in range(100)]
    held, plain = StreamSketch(200, 100, 4, 8, 4, 100), StreamSketch(200, 100, 4, 8, 4, 100)
    plain.hold_rows = 0
    most = 0
    for start in range(0, 400, 3):
        columns = {name: [f"{name}-{v}" for v in rng.integers(0, 5, 3)] for name in names}
        args = (np.arange(start, start + 3), np.zeros(3), frozenset(), ["v"] * 3)
        assert snapshot.dumps(held.update(columns, *args)) == snapshot.dumps(plain.update(columns, *args))
        most = max(most, held._held.rows)
    assert most == 18  # 6 batches of 3 rows: 21 rows would be 2,100 values
    assert snapshot.dumps(held.state()) == snapshot.dumps(plain.state())
