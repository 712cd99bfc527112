"""The plain-Python bucketing of a few numbers (``buckets_small``) is the numpy one's, number for number.

It matters where the two logarithms may differ, at bucket boundaries: the values at every boundary and one
bit either side of it are checked, beside seeded random values over every magnitude; and a warm-up column gives
the same histogram whether its numbers are counted a few at a time (the small path) or all at once (numpy).
"""

from __future__ import annotations

import numpy as np
import pytest

from streamdrift.core.buckets import SMALLEST, bucket_keys, lower
from streamdrift.core.buckets_small import bucket_keys_small, lower_of
from streamdrift.core.warmup import WarmupColumn, compact, states


def _numpy_keys(values: list[float]) -> list[int]:
    return bucket_keys(np.array(values, dtype=np.float64)).tolist()


def test_random_values_of_every_magnitude() -> None:
    rng = np.random.default_rng(19)
    magnitudes = 10.0 ** rng.uniform(-35, 16, 20_000)
    values = (magnitudes * rng.choice([-1.0, 1.0], 20_000)).tolist() + [0.0, -0.0, 1e300, -1e300]
    assert bucket_keys_small(values) == _numpy_keys(values)


def test_at_every_boundary_and_one_bit_either_side() -> None:
    keys = np.concatenate([np.arange(-20_000, 20_001, 7), np.arange(6_800, 7_200)])
    bounds = lower(keys)
    values = np.concatenate([bounds, np.nextafter(bounds, np.inf), np.nextafter(bounds, -np.inf)]).tolist()
    values += [SMALLEST, -SMALLEST, float(np.nextafter(SMALLEST, 0)), float(np.nextafter(-SMALLEST, 0))]
    assert bucket_keys_small(values) == _numpy_keys(values)


def test_integers_as_numpy_reads_them() -> None:
    values = [0, 1, -1, 3, 10**15, -(10**15), 2**53 + 1]
    assert bucket_keys_small(values) == _numpy_keys(values)  # type: ignore[arg-type]


def test_lower_of_is_lower() -> None:
    for key in (-70_000, -1, 0, 1, 6_909, 7_000, 70_000):
        assert lower_of(key) == float(lower(key))


def _columns_data() -> list[list[float]]:
    rng = np.random.default_rng(7)
    lognormal = (rng.lognormal(2, 2, 3_000) * rng.choice([-1, 1], 3_000)).round(3).tolist()
    lognormal[100:110] = [7, 7, 7, 0, 0.0, -2, 10**15, 5, 5, 5]  # ints as the decoder passes them, and a zero
    zero_one = rng.integers(0, 2, 3_000).tolist()  # its anchor is a boundary, and so is every number
    near_thousand = (1000 + rng.normal(0, 1, 3_000)).round(2).tolist()
    few = [1.5] * 3 + [None] * 2_997  # a column with numbers only at first
    return [lognormal, zero_one, near_thousand, few]  # type: ignore[list-item]


@pytest.mark.parametrize("step", [1, 3, 50, 1_100, 3_000])
def test_columns_count_the_same_whatever_the_steps_and_together(step: int) -> None:
    """Numbers added ``step`` at a time, the histograms taken between steps (as a checkpoint does) one
    column at a time or all together (``compact``), against all the numbers at once: the same keys and
    counts (step 1,100 crosses the column's own compaction at 1,024)."""
    data = _columns_data()
    whole = [WarmupColumn(limit=10, max_kept=10) for _ in data]
    for column, numbers in zip(whole, data):
        column.add(numbers)
    alone = [WarmupColumn(limit=10, max_kept=10) for _ in data]
    together = [WarmupColumn(limit=10, max_kept=10) for _ in data]
    for at in range(0, 3_000, step):
        for a, t, numbers in zip(alone, together, data):
            a.add(numbers[at : at + step])
            t.add(numbers[at : at + step])
            a.histogram()
        compact(together)
    for w, a, t in zip(whole, alone, together):
        assert a.anchor == t.anchor == w.anchor
        for got_alone, got_together, expected in zip(a.histogram(), t.histogram(), w.histogram()):
            assert got_alone.dtype == got_together.dtype == expected.dtype == np.int64
            assert got_alone.tolist() == got_together.tolist() == expected.tolist()


def test_states_are_the_columns_states_one_at_a_time() -> None:
    """``warmup.states`` (what a sketch's and the correlation watch's ``state()`` take) is each column's own."""
    data = _columns_data()
    together = {f"c{i}": WarmupColumn(limit=10, max_kept=10) for i in range(len(data))}
    alone = {f"c{i}": WarmupColumn(limit=10, max_kept=10) for i in range(len(data))}
    for (t, a), numbers in zip(zip(together.values(), alone.values()), data):
        t.add(numbers[:40])
        a.add(numbers[:40])
    got, expected = states(together), {name: column.state() for name, column in alone.items()}
    assert list(got) == list(expected)
    for name in expected:
        for key, value in expected[name].items():
            if isinstance(value, np.ndarray):
                assert got[name][key].dtype == value.dtype and got[name][key].tolist() == value.tolist()
            else:
                assert got[name][key] == value


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's casts of NaN and infinity to a key
def test_non_finite_numbers_have_numpys_keys_and_a_warm_up_column_counts_nan_as_missing() -> None:
    """``bucket_keys_small`` gives a NaN or an infinity numpy's key (it once raised on NaN). A warm-up column
    counts a NaN in a list as missing, as the monitoring phase bins it (a prediction sketch's score column is
    a list, NaN where a row has no score): a NaN counted as a number had a key a snapshot cannot keep
    (INT64_MIN, saved as int32 0), and a NaN first number made the anchor NaN. Counted a few at a time
    (the plain path), all at once (numpy) or by a checkpoint's ``compact``, the histograms are those of the
    numbers without the NaN."""
    values = [float("nan"), float("inf"), float("-inf"), 1.5]
    assert bucket_keys_small(values) == _numpy_keys(values)
    nan = float("nan")
    scores = [[nan, 0.25, 0.5], [0.75, nan], [0.1, 0.2], [nan, nan]]
    few = [WarmupColumn(limit=1, max_kept=10) for _ in scores]
    together = [WarmupColumn(limit=1, max_kept=10) for _ in scores]
    without = [WarmupColumn(limit=1, max_kept=10) for _ in scores]
    for f, t, w, column in zip(few, together, without, scores):
        for value in column:
            f.add([value], numbers_only=True)
            f.histogram()  # counted one number at a time
        t.add(column)
        w.add([v for v in column if v == v])
    compact(together)
    for f, t, w in zip(few, together, without):
        assert f.numbers == t.numbers == w.numbers and f.anchor == t.anchor == w.anchor
        assert [x.tolist() for x in f.histogram()] == [x.tolist() for x in t.histogram()]
        assert [x.tolist() for x in t.histogram()] == [x.tolist() for x in w.histogram()]
    assert [t.numbers for t in together] == [2, 1, 2, 0] and together[3].categorical  # only missing values
