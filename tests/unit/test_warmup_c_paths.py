"""A warm-up column's C paths (``_speedups.add_floats`` and ``add_categories``, issue 19) leave it exactly as the
plain Python path does: every slot, every dict in its order, every pending number and score, batch after batch,
over seeded streams with missing values, NaN, integer floats and both zeros, repeated and many distinct values,
scores 0 and ``UNSCORED``, the distinct-number limit and ``max_kept`` crossed within a batch; a list the C path
does not take (a number, a bool, a str subclass among its values) is left to the plain path, unchanged."""

from __future__ import annotations

import os

import numpy as np
import pytest

from streamdrift.core import decode, warmup
from streamdrift.core.warmup import WarmupColumn

UNSCORED = -1


@pytest.fixture(autouse=True)
def c_paths() -> None:
    if warmup._add_floats is None or warmup._add_categories_c is None:
        if decode.SPEEDUPS or os.environ.get("CI") == "true":
            pytest.fail("streamdrift.core._speedups has no add_floats / add_categories: rebuild it (make install)")
        pytest.skip("streamdrift.core._speedups not built")


def _slots(column: WarmupColumn) -> dict[str, object]:
    """Every slot of ``column``, dicts as their items in order, arrays as lists, numbers with their types."""
    out: dict[str, object] = {}
    for name in WarmupColumn.__slots__:
        value = getattr(column, name)
        if isinstance(value, dict):
            value = [(type(k).__name__, k, type(v).__name__, v) for k, v in value.items()]
        elif isinstance(value, list):
            value = [(type(v).__name__, repr(v)) for v in value]
        elif isinstance(value, np.ndarray):
            value = (value.dtype.str, value.tolist())
        else:
            value = (type(value).__name__, repr(value))
        out[name] = value
    return out


def _both(limit: int, max_kept: int, scored: bool) -> tuple[WarmupColumn, WarmupColumn]:
    return WarmupColumn(limit, max_kept, scored), WarmupColumn(limit, max_kept, scored)


def _plain(monkeypatch: pytest.MonkeyPatch, column: WarmupColumn, *args: object, **kwargs: object) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(warmup, "_add_floats", None)
        patched.setattr(warmup, "_add_categories_c", None)
        column.add(*args, **kwargs)  # type: ignore[arg-type]


def _scores(rng: np.random.Generator, n: int) -> list[int]:
    kinds = rng.choice(3, n, p=[0.1, 0.2, 0.7])
    return [[0, UNSCORED, int(s)][int(k)] for s, k in zip(rng.integers(0, 2**40, n), kinds)]


def _floats(rng: np.random.Generator, n: int, few: bool) -> np.ndarray:
    pool = np.array([0.0, -0.0, 1.0, 3.0, 2.5, np.nan, 1e300, -1e-300, 0.1 + 0.2, 2.0**60])
    if few:
        return pool[rng.integers(0, len(pool), n)]
    values = rng.normal(size=n)
    values[rng.random(n) < 0.15] = np.nan
    values[rng.random(n) < 0.1] = 3.0
    return values


@pytest.mark.parametrize("most", [8, 40], ids=["small-batches", "held-batches"])
@pytest.mark.parametrize("scored", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_an_array_of_floats_counted_in_c_is_counted_as_the_plain_path_counts_it(
    seed: int, scored: bool, most: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of up to 8 rows, as the engine hands them, and up to 40, as a sketch's held rows come (a batch
    of more distinct numbers than the limit drops the table at once in C, as ``_add_distinct`` does)."""
    rng = np.random.default_rng(seed)
    few = seed % 2 == 1  # few distinct numbers: the table kept; else it is dropped within a batch
    c_path, plain = _both(limit=12, max_kept=5, scored=scored)
    block = np.stack([_floats(rng, 900, few), _floats(rng, 900, few)])  # a poll's block: a column is a row
    at = 0
    for size in rng.integers(1, most + 1, 60).tolist():
        # a row of the block, a strided column of its transpose, or a copy: the three the decoder may hand over
        values = [block[0, at : at + size], block.T[at : at + size, 1], block[0, at : at + size].copy()][at % 3]
        scores = _scores(rng, len(values)) if scored else None
        c_path.add(values, scores=scores)
        _plain(monkeypatch, plain, values, scores=scores)
        assert _slots(c_path) == _slots(plain)
        at += size
    assert (c_path.distinct is None) == (not few)
    assert c_path.numbers > 0 and c_path.anchor == plain.anchor


@pytest.mark.parametrize("limit", [7, 8, 9])
def test_both_zeros_are_one_number_and_two_keys(limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nine keys of eight numbers (0.0 and -0.0) in one batch: over a limit of 7 the C path drops the table
    before counting, over 8 only at the ninth key, as the plain path does; at 9 it is kept."""
    values = np.array([0.0, -0.0, 1.0, 3.0, 2.5, np.nan, 1e300, -1e-300, 0.1 + 0.2, 2.0**60, 1.0, 0.0])
    c_path, plain = _both(limit=limit, max_kept=5, scored=True)
    scores = list(range(len(values)))
    c_path.add(values, scores=scores)
    _plain(monkeypatch, plain, values, scores=scores)
    assert _slots(c_path) == _slots(plain)
    assert (c_path.distinct is None) == (limit < 9)


def test_a_long_array_is_bucketed_as_the_plain_path_buckets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``_COMPACT_AT`` pending numbers both count them into the histogram."""
    rng = np.random.default_rng(7)
    c_path, plain = _both(limit=10, max_kept=5, scored=True)
    for _ in range(3):
        values = rng.lognormal(size=700)
        scores = _scores(rng, 700)
        c_path.add(values, scores=scores)
        _plain(monkeypatch, plain, values, scores=scores)
        assert _slots(c_path) == _slots(plain)
    assert len(c_path.keys) > 0


def _strings(rng: np.random.Generator, n: int, kinds: int) -> list[str | None]:
    names = [f"c{i}" for i in range(kinds)]
    return [None if rng.random() < 0.15 else names[int(i)] for i in rng.integers(0, kinds, n)]


@pytest.mark.parametrize("scored", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_a_list_of_strings_counted_in_c_is_counted_as_the_plain_path_counts_it(
    seed: int, scored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(100 + seed)
    max_kept = [3, 8, 50][seed % 3]  # categories past max_kept within a batch, over several, or never
    c_path, plain = _both(limit=10, max_kept=max_kept, scored=scored)
    for size in rng.integers(1, 12, 50).tolist():
        values = _strings(rng, size, kinds=12)
        scores = _scores(rng, size) if scored else None
        c_path.add(values, scores=scores)
        _plain(monkeypatch, plain, values, scores=scores)
        assert _slots(c_path) == _slots(plain)
    assert c_path.other == plain.other and (c_path.other > 0) == (max_kept < 12)


class _Text(str):
    """A str subclass: the plain path writes it as ``str`` of it."""


@pytest.mark.parametrize(
    "odd", [1, 2.5, True, float("nan"), _Text("c1"), b"c1"], ids=["int", "float", "bool", "nan", "subclass", "bytes"]
)
def test_a_list_the_c_path_does_not_take_is_counted_by_the_plain_path(
    odd: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = ["c0", None, "c1", odd, "c2"]
    scores = [5, UNSCORED, 0, 7, 9]
    before = WarmupColumn(limit=10, max_kept=2, scored=True)
    assert warmup._add_categories_c(values, scores, before.categories, {}, {}, 2) is None  # bails, changes nothing
    assert before.categories == {}
    c_path, plain = _both(limit=10, max_kept=2, scored=True)
    c_path.add(values, scores=scores)
    _plain(monkeypatch, plain, values, scores=scores)
    assert _slots(c_path) == _slots(plain)


@pytest.mark.parametrize("extra", [0, 1])
def test_a_batch_of_as_many_distinct_numbers_as_the_limit_keeps_its_table(
    extra: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twice ``limit`` rows of ``limit`` distinct numbers (and one more with ``extra``): kept (dropped)."""
    limit = 10
    values = np.tile(np.arange(limit + extra, dtype=np.float64) + 0.5, 2)
    c_path, plain = _both(limit=limit, max_kept=5, scored=False)
    c_path.add(values)
    _plain(monkeypatch, plain, values)
    assert _slots(c_path) == _slots(plain)
    assert (c_path.distinct is None) == bool(extra)


@pytest.mark.parametrize("seed", range(8))
def test_compact_counts_in_c_as_its_numpy_calls_count(seed: int) -> None:
    """A checkpoint's ``compact`` of a sketch's columns (``_speedups.merge_buckets``, issue 19) leaves every slot
    as its numpy path does: columns scored and not in one call, first writes and later ones (old buckets merged
    with new numbers), rows without a score, scores past 2**32, repeated numbers, a column past 64 rows (sorted
    by qsort rather than by insertion), a lone column with numbers (compacted alone), huge and tiny numbers."""
    if warmup._merge_buckets is None:
        pytest.skip("streamdrift.core._speedups has no merge_buckets")
    rng = np.random.default_rng(seed)
    scored = [bool(s) for s in rng.integers(0, 2, 6)]
    in_c = [WarmupColumn(4, 4, scored=s) for s in scored]
    in_numpy = [WarmupColumn(4, 4, scored=s) for s in scored]
    for write in range(5):
        for i, (c, n) in enumerate(zip(in_c, in_numpy)):
            if write == 3 and i > 0:
                continue  # one column with numbers: compacted alone
            size = int(rng.integers(0, 200 if i == 1 else 30))
            values = _floats(rng, size, few=bool(rng.integers(0, 2)))
            values[rng.random(size) < 0.05] = -7.5e200
            scores = _scores(rng, size) if scored[i] else None
            c.add(values, scores=scores)
            n.add(values, scores=scores)
        warmup.compact(in_c)
        warmup.compact(in_numpy, in_c=False)
        for c, n in zip(in_c, in_numpy):
            assert _slots(c) == _slots(n)
            assert c.keys.flags.owndata and c.counts.flags.owndata  # copies, not views of one base
