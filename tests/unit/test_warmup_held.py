"""A sketch that holds its warm-up rows (``warmup_held.py``) ends in the state of one that counts every batch.

The plain path (``StreamSketch.hold_warmup = False``) counts each batch's warm-up rows at once; the fast path
holds them and counts them together. Both are fed the same rows cut the same random ways, with ``state()``
taken at random points (which counts what is held), and must give the same snapshot bytes at every one of
them, before, across and after the reference completes. The columns are made to reach every branch of
``WarmupColumn.add``: number arrays with NaN, lists of numbers and None, ints beside floats of the same value,
0.0 and -0.0, booleans and strings mixed in, few distinct numbers (kept exactly) and many (dropped), a column
that first appears late and one that misses batches.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamdrift.core import state as snapshot
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.sketch import StreamSketch
from streamdrift.core.warmup import WarmupColumn
from streamdrift.core.warmup_held import HOLD_ROWS, HeldWarmup

ROWS = 160
REFERENCE = 120  # the reference completes inside the stream: rows after it are binned


def _stream(seed: int) -> tuple[dict[str, list], np.ndarray]:
    """Every column's values row by row (None: the batch lacks it where a whole batch is None) and scores."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(3, 2, ROWS).round(3)
    normal[rng.random(ROWS) < 0.1] = np.nan
    few = rng.integers(0, 4, ROWS)
    columns: dict[str, list] = {
        "normal": normal.tolist(),  # fed as a float array
        "few": [float(v) if i % 3 else int(v) for i, v in enumerate(few.tolist())],  # 2 and 2.0 apart
        "zeros": [(-0.0 if i % 2 else 0.0) if i % 5 else None for i in range(ROWS)],
        "mixed": [["a", True, 1.5, None, 7][i % 5] if i % 11 else f"c{i % 37}" for i in range(ROWS)],
        "categories": [f"k{int(v)}" for v in rng.zipf(1.5, ROWS).clip(max=200)],
        "counts": [int(v) for v in rng.integers(0, 10, ROWS)],  # ten distinct: more than the limit of 8
    }
    scores = rng.beta(2, 3, ROWS).round(4)
    scores[rng.random(ROWS) < 0.2] = np.nan
    return columns, scores


def _batch(columns: dict[str, list], start: int, stop: int, seed: int) -> tuple[dict, frozenset[str]]:
    """Rows ``start:stop``, "late" from row 40 on, "sparse" in every other batch (by ``seed``), "switch" numbers
    (a float array) before row 60 and a list of numbers and strings from there."""
    out: dict = {}
    for name, values in columns.items():
        part = values[start:stop]
        out[name] = np.array(part, dtype=np.float64) if name == "normal" else part
    if start >= 40:
        out["late"] = [float(start + i) for i in range(stop - start)]
    if seed % 2:
        out["sparse"] = ["s"] * (stop - start)
    if start < 60:
        out["switch"] = np.arange(start, stop, dtype=np.float64) % 7
        return out, frozenset({"normal", "counts", "switch"})
    out["switch"] = [float(i % 7) if i % 4 else "t" for i in range(start, stop)]
    return out, frozenset({"normal", "counts"})


def _sketch(hold: bool) -> StreamSketch:
    sketch = StreamSketch(REFERENCE, 20, 4, 8, 3, 50, scored=True)
    sketch.hold_warmup = hold  # an instance's own switch: the class's stays as it is
    return sketch


@given(
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(1, ROWS - 1), max_size=40, unique=True),
    looks=st.lists(st.integers(1, ROWS - 1), max_size=4, unique=True),
)
def test_held_warmup_gives_the_plain_state(seed: int, cuts: list[int], looks: list[int]) -> None:
    columns, scores = _stream(seed)
    bounds = [0, *sorted(cuts), ROWS]
    plain, held = _sketch(False), _sketch(True)
    for k, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        batch, numeric = _batch(columns, start, stop, seed + k)
        offsets = np.arange(start, stop, dtype=np.int64)
        times = 1_700_000_000.0 + offsets
        for sketch in (plain, held):
            sketch.update(batch, offsets, times, numeric, scores=scores[start:stop])
        if any(start < look <= stop for look in looks):
            assert snapshot.dumps(held.state()) == snapshot.dumps(plain.state()), (start, stop)
    assert snapshot.dumps(held.state()) == snapshot.dumps(plain.state())
    assert held.ready and plain.ready


def test_rows_are_held_then_counted_at_the_bound() -> None:
    sketch = _sketch(True)
    values = np.arange(HOLD_ROWS - 1, dtype=np.float64)
    offsets = np.arange(HOLD_ROWS - 1, dtype=np.int64)
    sketch.update({"x": values}, offsets, offsets.astype(np.float64), frozenset({"x"}), scores=values / 100)
    assert sketch._held.rows == HOLD_ROWS - 1 and sketch.warmup_rows == HOLD_ROWS - 1
    assert not sketch._warmup  # nothing counted yet
    one = np.array([HOLD_ROWS - 1], dtype=np.int64)
    sketch.update({"x": np.ones(1)}, one, one.astype(np.float64), frozenset({"x"}), scores=np.ones(1) / 2)
    assert sketch._held.rows == 0 and sketch._warmup is not None and sketch._warmup["x"].numbers == HOLD_ROWS


def test_reading_the_warmup_counts_what_is_held() -> None:
    sketch = _sketch(True)
    offsets = np.arange(3, dtype=np.int64)
    sketch.update({"x": [1, 2, None]}, offsets, offsets.astype(np.float64), frozenset(), scores=np.full(3, np.nan))
    warmup = sketch.warmup
    assert warmup is not None and warmup["x"].numbers == 2 and sketch._held.rows == 0


@pytest.mark.parametrize("numbers", [[float(i) for i in range(30)], [3, 3.0, 0.0, -0.0] * 8])
def test_a_long_call_drops_the_distinct_numbers_as_row_by_row(numbers: list) -> None:
    """``_add_distinct``'s shortcut (a call with more distinct numbers than the limit) drops the table where
    counting row by row does, and only there: 30 distinct numbers do, 3, 3.0, 0.0, -0.0 (four texts) do not."""
    whole, one_by_one = WarmupColumn(limit=8, max_kept=10), WarmupColumn(limit=8, max_kept=10)
    whole.add(numbers)
    for x in numbers:
        one_by_one.add([x])
    assert whole.distinct == one_by_one.distinct
    assert (whole.distinct is None) == (len(numbers) == 30)


def test_held_copies_never_view_the_decoders_block() -> None:
    block = np.arange(12, dtype=np.float64).reshape(4, 3)
    held = HeldWarmup()
    held.hold({"x": block[:, 0]}, 4, frozenset(), None)
    block[:] = -1  # the decoder's next poll may reuse nothing, but a view would keep the whole block alive
    columns: dict[str, WarmupColumn] = {}
    held.count_into(columns, lambda: WarmupColumn(limit=10, max_kept=10))
    assert columns["x"].distinct == {"0.0": 1, "3.0": 1, "6.0": 1, "9.0": 1}


def test_count_held_counts_now_what_state_would() -> None:
    """A worker counts the held rows before it forks a checkpoint (``StreamSketch.count_held``): nothing is held
    after, and the state is the bytes ``state()`` gives with them held."""
    counted, left = _sketch(True), _sketch(True)
    columns, scores = _stream(7)
    for start, stop in ((0, 5), (5, 9), (9, 12)):
        batch, numeric = _batch(columns, start, stop, start)
        offsets = np.arange(start, stop, dtype=np.int64)
        for sketch in (counted, left):
            sketch.update(batch, offsets, 1_700_000_000.0 + offsets, numeric, scores=scores[start:stop])
    assert counted._held.rows == left._held.rows == 12
    counted.count_held()
    assert counted._held.rows == 0 and left._held.rows == 12
    assert snapshot.dumps(counted.state()) == snapshot.dumps(left.state())


def test_an_engine_counts_the_held_rows_of_the_models_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PartitionEngine.count_held``: the monitors of the models named hold nothing after, the others still hold
    theirs, and the snapshot's bytes are those it gives with every row held."""
    monkeypatch.setattr(StreamSketch, "hold_warmup", True)

    def engine() -> PartitionEngine:
        out = PartitionEngine(0, "p", "f", monitor_factory(MonitorSettings()), epoch_ms=1000)
        records = [
            RawMessage("p", 0, i, model.encode(), orjson.dumps(event), int(event["timestamp"] * 1000))
            for i, (model, event) in enumerate(
                (
                    m,
                    {
                        "event_id": f"{m}-{k}",
                        "model_id": m,
                        "timestamp": 1_700_000_000.0 + k,
                        "features": {"x": k * 0.5, "c": "ab"[k % 2]},
                        "prediction": k % 2,
                        "score": 0.25,
                    },
                )
                for k in range(6)
                for m in ("a", "b")
            )
        ]
        out.add("p", records)
        out.release(ended={"p", "f"})
        return out

    counted, left = engine(), engine()
    held = lambda e, m: e.monitors[m].features._held.rows  # noqa: E731
    assert held(counted, "a") == held(counted, "b") > 0
    counted.count_held({"a", "gone"})  # a model not monitored is passed over
    assert held(counted, "a") == 0 and held(counted, "b") == held(left, "b") > 0
    assert snapshot.dumps(counted.snapshot().models) == snapshot.dumps(left.snapshot().models)
