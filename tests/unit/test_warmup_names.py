"""The warm-up keeps a column for the ``max_columns`` names the reference will track, not for every name it sees.

The reference tracks the first ``max_columns`` feature names by name order; a warm-up that kept a summary
of every name held up to ``reference_size`` x 1,000 of them per model until its reference was built
(100,000 names: 109 MiB, 8.8 MB of state). It now keeps the first ``max_columns`` of the names seen so far
(a name past them never comes back among them) and counts the others (``untracked_columns``).
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import orjson

from streamdrift.core.sketch import StreamSketch
from streamdrift.core.state import decode_tree, encode_tree

_DUMP = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS
REFERENCE, MAX_COLUMNS = 60, 3


def sketch() -> StreamSketch:
    return StreamSketch(REFERENCE, 20, 2, 5, 4, MAX_COLUMNS)


def stream(seed: int) -> list[dict[str, float | str]]:
    """Rows of a few steady names and many passing ones (an id in a name), first seen in no name order."""
    rng = random.Random(seed)
    rows: list[dict[str, float | str]] = []
    for _ in range(REFERENCE + 40):
        row: dict[str, float | str] = {"m": rng.gauss(0, 1), "k": rng.choice("abc")}
        for _ in range(rng.randint(0, 4)):
            row[f"{rng.choice('aknz')}{rng.randint(0, 40)}"] = rng.gauss(1, 1)
        rows.append(row)
    return rows


def feed(target: StreamSketch, rows: list[dict], start: int) -> None:
    """``rows`` as one batch: a column per name, None where a row lacks it."""
    names = sorted(
        {name for row in rows for name in row}, key=lambda n: (zlib.crc32(n.encode()) % 7, n)
    )  # no name order
    columns = {name: [row.get(name) for row in rows] for name in names}
    offsets = np.arange(start, start + len(rows))
    target.update(columns, offsets, offsets * 1.0)


def fed(rows: list[dict], cuts: list[int]) -> StreamSketch:
    out = sketch()
    for start, stop in zip([0, *cuts], [*cuts, len(rows)]):
        if stop > start:
            feed(out, rows[start:stop], start)
    return out


def state_bytes(target: StreamSketch) -> bytes:
    return orjson.dumps(target.state(), option=_DUMP)


def test_the_warm_up_holds_at_most_max_columns_and_the_reference_is_the_one_every_name_gave() -> None:
    rows = stream(1)
    names = sorted({name for row in rows[:REFERENCE] for name in row})
    assert len(names) > 50
    kept = set(names[:MAX_COLUMNS])
    split = fed(rows, [*range(1, REFERENCE - 1), REFERENCE])  # row by row through most of the warm-up
    during = sketch()
    for start in range(0, REFERENCE - 1):
        feed(during, rows[start : start + 1], start)
        assert during.warmup is not None and len(during.warmup) <= MAX_COLUMNS  # 50 and more before
    # the names the reference tracks, and their columns, as if the warm-up had seen only them
    only_kept = fed([{k: v for k, v in row.items() if k in kept} for row in rows], [REFERENCE])
    assert [c.name for c in split.columns] == sorted(kept)
    assert split.untracked_columns == len(names) - MAX_COLUMNS
    reference = {k: v for k, v in split.state().items() if k != "untracked_columns"}
    assert orjson.dumps(reference, option=_DUMP) == orjson.dumps(
        {k: v for k, v in only_kept.state().items() if k != "untracked_columns"}, option=_DUMP
    )


def test_the_state_does_not_depend_on_where_batches_end_nor_on_a_restore_during_the_warm_up() -> None:
    rows = stream(2)
    whole = fed(rows, [])
    rng = random.Random(3)
    for _ in range(5):
        assert state_bytes(fed(rows, sorted(rng.sample(range(1, len(rows)), 8)))) == state_bytes(whole)
    for at in (1, 17, REFERENCE // 2, REFERENCE - 1):
        first = fed(rows[:at], [])
        assert first.warmup is not None and len(first.warmup) <= MAX_COLUMNS
        restored = StreamSketch(
            REFERENCE, 20, 2, 5, 4, MAX_COLUMNS, decode_tree(encode_tree(first.state(), "x"), "x", "test", "")
        )
        feed(restored, rows[at:], at)
        assert state_bytes(restored) == state_bytes(whole)


def test_a_batch_across_the_reference_end_gives_the_state_of_batches_cut_there() -> None:
    """A batch's column holds None where an event lacks the name: one across the reference's end gave the
    warm-up columns (all missing) of names first seen after it, which the reference then tracked."""
    rows = stream(2)
    cut = state_bytes(fed(rows, [REFERENCE]))
    assert state_bytes(fed(rows, [])) == cut
    rng = random.Random(4)
    for _ in range(5):
        assert state_bytes(fed(rows, sorted(rng.sample(range(1, len(rows)), 8)))) == cut


def test_a_name_null_in_every_row_of_the_warm_up_is_one_it_never_saw() -> None:
    """The contract: a feature absent from an event is missing, like null. Row by row, a null used to give the
    name a column (all missing) where its absence gave none."""
    rows = stream(5)
    with_nulls = [{**row, "b0": None} if i < REFERENCE else row for i, row in enumerate(rows)]
    cuts = list(range(1, len(rows)))
    assert state_bytes(fed(with_nulls, cuts)) == state_bytes(fed(rows, cuts))


def test_a_float_column_nan_in_every_row_of_the_warm_up_is_one_it_never_saw() -> None:
    """The same for a column as the decoder gives numbers, an array with NaN where a row has none (batches of 6
    rows: none across the reference's end)."""
    rows = stream(6)
    absent, nans = sketch(), sketch()
    for start in range(0, len(rows), 6):
        batch = rows[start : start + 6]
        offsets = np.arange(start, start + len(batch))
        columns = {"m": np.array([row["m"] for row in batch]), "k": [row["k"] for row in batch]}
        if start < REFERENCE:
            absent.update(columns, offsets, offsets * 1.0)
            nans.update({**columns, "b0": np.full(len(batch), np.nan)}, offsets, offsets * 1.0)
        else:
            later = {**columns, "b0": np.arange(len(batch), dtype=np.float64)}
            absent.update(later, offsets, offsets * 1.0)
            nans.update(later, offsets, offsets * 1.0)
    assert "b0" not in state_bytes(fed(rows, [])).decode()  # the stream has no b0 of its own
    assert state_bytes(nans) == state_bytes(absent)


def test_the_names_a_warm_up_counts_but_keeps_no_column_of_are_a_bounded_sample(monkeypatch) -> None:
    """Review helper-88: a warm-up kept a hash of every name past its columns, so a model whose events each
    brought 1,000 new names held millions of them (279 MB, a 32 MB state) until its reference was built. Past
    ``UNTRACKED_SAMPLE`` hashes it keeps those below a bound it halves as needed, and counts their number
    times the sample's rate: exact up to the sample's size, an estimate past it, and a function of the names
    seen, not of their order or of where batches end."""
    import streamdrift.core.sketch as sketch_module

    monkeypatch.setattr(sketch_module, "UNTRACKED_SAMPLE", 16)
    rng = random.Random(5)
    rows = [{"m": rng.gauss(0, 1), **{f"n{i}-{j}": 1.0 for j in range(12)}} for i in range(REFERENCE + 10)]
    seen = {name for row in rows[:REFERENCE] for name in row}
    whole = fed(rows, [])
    during = fed(rows[: REFERENCE - 1], [])
    assert 0 < len(during._warmup_untracked) <= 16 and during._untracked_level > 0  # a sample, bounded
    # an estimate of the names past the columns (the hashes are uniform: within a factor of 2 here, seed 5)
    assert (len(seen) - MAX_COLUMNS) / 2 <= whole.untracked_columns <= 2 * (len(seen) - MAX_COLUMNS)
    for seed in range(4):
        shuffled = random.Random(seed).sample(range(1, len(rows)), 10)
        assert state_bytes(fed(rows, sorted(shuffled))) == state_bytes(whole)
        reordered = [dict(sorted(row.items(), key=lambda kv: zlib.crc32(f"{seed}{kv[0]}".encode()))) for row in rows]
        assert state_bytes(fed(reordered, sorted(shuffled))) == state_bytes(whole)
    # during the warm-up too, and across a restore
    for at in (7, REFERENCE // 2):
        first = fed(rows[:at], [])
        assert len(first._warmup_untracked) <= 16
        restored = StreamSketch(
            REFERENCE, 20, 2, 5, 4, MAX_COLUMNS, decode_tree(encode_tree(first.state(), "x"), "x", "test", "")
        )
        feed(restored, rows[at:], at)
        assert state_bytes(restored) == state_bytes(whole)
    # below the bound, every name is counted exactly, as before
    monkeypatch.undo()
    few = fed(stream(1), [])
    assert few.untracked_columns == len({n for row in stream(1)[:REFERENCE] for n in row}) - MAX_COLUMNS


def test_a_state_that_kept_every_hash_is_brought_under_the_sample_when_restored(monkeypatch) -> None:
    """Review helper-89: a state written before the sample (every hash kept, no level) was restored as it was,
    and cut down only at the next name counted; where none came before the reference, the count stayed exact
    where a run from the start estimates it: another state for the same names. The restore fits it to the
    sample as counting would have."""
    import streamdrift.core.sketch as sketch_module

    rng = random.Random(1)
    rows = [{f"z{i}-{j}": 1.0 for j in range(4)} | {"a": rng.random()} for i in range(10)]
    rows += [{"a": rng.random()} for _ in range(REFERENCE + 10)]
    monkeypatch.setattr(sketch_module, "UNTRACKED_SAMPLE", 10**9)  # every hash, as before the sample
    before = fed(rows[:10], []).state()
    assert "warmup_untracked_level" not in before and len(before["warmup_untracked"]) > 8
    monkeypatch.setattr(sketch_module, "UNTRACKED_SAMPLE", 8)
    restored = StreamSketch(REFERENCE, 20, 2, 5, 4, MAX_COLUMNS, decode_tree(encode_tree(before, "x"), "x", "t", ""))
    assert len(restored._warmup_untracked) <= 8 and restored._untracked_level > 0
    feed(restored, rows[10:], 10)
    assert state_bytes(restored) == state_bytes(fed(rows, []))
