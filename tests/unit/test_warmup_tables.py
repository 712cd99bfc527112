"""What a warm-up state writes of a distinct-number table (``warmup_tables.table_parts``, issue 19): the C twin
(``_speedups.table_parts``) gives the plain path's parts, slot by slot, for any table (ints, floats, integer
floats and both zeros by their texts, exponents, inf, integers past 64 bits and near ``LARGEST``, scored or
not); the integers give the texts back; and a sketch's warm-up state is the same bytes whichever makes them,
over seeded streams written between batches: after new keys, after a table dropped at its limit, after a
restore."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.core import decode, warmup
from streamdrift.core import state as snapshot
from streamdrift.core.warmup import WarmupColumn
from streamdrift.core.warmup_tables import LARGEST, TableParts, decimal_table, table_parts

UNSCORED = -1
LIMIT, KEPT = 12, 4


@pytest.fixture(autouse=True)
def c_path() -> None:
    if warmup._table_parts_c is None:
        if decode.SPEEDUPS or os.environ.get("CI") == "true":
            pytest.fail("streamdrift.core._speedups has no table_parts: rebuild it (make install)")
        pytest.skip("streamdrift.core._speedups not built")


NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-3, 3),
    st.integers(LARGEST - 3, LARGEST + 3).map(lambda n: n if n % 2 else -n),  # at the integers' bound
    st.floats(allow_nan=False),  # inf and exponents too
    st.floats(-5, 5).map(lambda x: round(x, 4)),
    st.floats(-1e6, 1e6).map(lambda x: round(x, 12)),
    st.floats(-100, 100).map(float.__floor__).map(float),  # floats equal to integers: keyed by their texts
    st.sampled_from([0.0, -0.0, 1e-05, 1e16, 123456789.123, 2**53 + 1, 0.1 + 0.2, 1.125e15, 0.5**30]),
)


def _typed(parts: tuple) -> list:
    """Each slot with the types of what it holds (an int is no float, a list no tuple)."""
    return [
        (type(slot).__name__, None if slot is None else [(type(v).__name__, v) for v in slot])
        if isinstance(slot, list) or slot is None
        else (type(slot).__name__, slot)
        for slot in parts
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(NUMBERS, min_size=1, max_size=24), st.integers(0, 2), st.randoms(use_true_random=False))
def test_the_c_twin_gives_the_plain_parts_slot_by_slot(numbers: list, how_scored: int, rng) -> None:
    keys = list(dict.fromkeys(warmup._key(n) for n in numbers))  # distinct keys, as a column keeps them
    table = {key: rng.randint(1, 5) for key in keys}
    scored = sums = None
    if how_scored:  # some keys without scored rows (.get's 0), some sums past 64 bits when how_scored is 2
        scored = {key: rng.randint(1, n) for key, n in table.items() if rng.random() < 0.7}
        sums = {key: rng.randint(0, 2**70 if how_scored == 2 else 2**20) for key in scored}
    plain = table_parts(table, scored, sums)
    fast = warmup._table_parts_c(table, scored, sums)
    assert _typed(fast) == _typed(plain)
    assert warmup._table_parts_in_c(table, scored, sums) == plain
    texts = sorted(map(str, keys))
    made = decimal_table(texts)
    assert (plain.decimals is None) == (made is None)
    if plain.decimals is None:
        assert plain.texts == texts
        return
    ascending = list(np.cumsum([plain.first, *plain.steps]).tolist())
    assert all(step >= 1 for step in plain.steps) and all(-LARGEST < n < LARGEST for n in ascending)
    back = warmup._texts(None if plain.decimals < 0 else plain.decimals, ascending)
    assert sorted(back) == texts  # the integers give the texts back
    assert dict(zip(back, plain.counts_by_number)) == {str(key): n for key, n in table.items()}


def test_the_parts_of_a_small_table() -> None:
    assert table_parts({2.5: 3, 10.25: 1, "-1.0": 2}, {2.5: 1}, {2.5: 7}) == TableParts(
        2, [], [2, 1, 3], [0, 0, 1], [0, 0, 7], -100, [350, 775], [2, 3, 1]
    )
    assert table_parts({3: 1, "3.0": 2}, None, None) == TableParts(None, ["3", "3.0"], [1, 2], None, None, 0, [], [])
    assert table_parts({"-0.0": 1, "0.0": 1}, None, None).decimals is None
    assert table_parts({-7: 1, 0: 2}, None, None)[5:] == (-7, [7], [1, 2])
    with pytest.raises(ValueError):
        warmup._table_parts_c({}, None, None)


STREAM_VALUES = st.one_of(NUMBERS, st.sampled_from(["a", "b", "c", None]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.lists(STREAM_VALUES, max_size=6), min_size=1, max_size=4), min_size=1, max_size=6),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_a_sketch_state_is_the_same_bytes_from_the_c_twin_and_the_plain_path(
    batches: list[list[list]], scored: bool, seed: int
) -> None:
    """Columns fed batch after batch (a table grows, or drops at ``LIMIT``), the state written after each
    batch both ways; halfway through, the columns are restored from the state and go on."""
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(max(map(len, batches)))]
    columns = {name: WarmupColumn(LIMIT, KEPT, scored=scored) for name in names}
    for at, batch in enumerate(batches):
        for name, values in zip(names, batch):
            scores = [int(s) for s in rng.integers(UNSCORED, 2**20, len(values))] if scored else None
            columns[name].add(values, scores=scores)
        fast = snapshot.dumps(warmup.sketch_state(columns))
        assert fast == snapshot.dumps(warmup.sketch_state(columns, table_parts))
        if at == len(batches) // 2:
            columns = warmup.from_sketch_state(snapshot.loads(fast), LIMIT, KEPT)
            assert snapshot.dumps(warmup.sketch_state(columns, table_parts)) == fast
