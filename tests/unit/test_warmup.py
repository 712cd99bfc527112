"""The warm-up keeps counts, not rows (issue 17, finding 7): no raw value at rest in either store's snapshots.

A model's warm-up once held its raw rows, and every snapshot taken during it wrote them (100 of 100 planted
SSNs found). Now it holds ``warmup.WarmupColumn`` summaries; the reference fitted from them is checked here
against the one the rows themselves give.
"""

from __future__ import annotations

import os

import numpy as np
import orjson
import pytest

from streamdrift.core import state as snapshot
from streamdrift.core import warmup
from streamdrift.core.buckets import ACCURACY, lower
from streamdrift.core.config import MonitorSettings
from streamdrift.core.decode import decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.sketch import NUMERIC, Column, StreamSketch
from streamdrift.core.state import Seal, Snapshot
from streamdrift.core.warmup import WarmupColumn
from streamdrift.runtime.statetopic import inflate, pack

SETTINGS = MonitorSettings(reference_size=2000, max_categories=3)
SEAL = Seal.of({"monitor": SETTINGS.model_dump(mode="json")}, {"group": "g"})
# distinctive values: an SSN as a number, a float with many digits, and a category string first seen after the
# first 10 * max_categories distinct categories (those before it may be tracked, as tracked categories are)
SSN = 987654321
FLOAT = -0.000314159265358
SECRET = "secret-category-7f3a"


def _events(n: int) -> list[dict]:
    rng = np.random.default_rng(17)
    events = []
    for i in range(n):
        features = {
            "amount": float(rng.lognormal(3, 1)),
            "ssn": SSN + i if i % 10 == 3 else int(rng.integers(100_000_000, 999_999_999)),
            "ratio": FLOAT if i == 250 else float(rng.normal()),
            "colour": SECRET if i == 290 else f"c{i % 40}",
            "flag": int(i % 3 == 0),
        }
        events.append(
            {
                "event_id": f"e{i}",
                "model_id": "m",
                "timestamp": 1_700_000_000 + i,
                "features": features,
                "prediction": 1,
            }
        )
    return events


def _warm(n: int) -> ModelMonitor:
    monitor = ModelMonitor("m", SETTINGS)
    messages = [RawMessage("predictions", 0, i, b"m", orjson.dumps(e)) for i, e in enumerate(_events(n))]
    for at in range(0, n, 97):
        (batch,), rejected = decode_predictions(messages[at : at + 97])
        assert not rejected
        monitor.observe_predictions(batch)
    return monitor


def _raw_forms(value: float | int | str) -> list[bytes]:
    """How ``value`` could sit in a snapshot: its JSON text, and its bytes as a float64, int64 or int32."""
    if isinstance(value, str):
        return [value.encode()]
    forms = [orjson.dumps(value), np.float64(value).tobytes()]
    if isinstance(value, int):
        forms += [orjson.dumps(float(value)), np.int64(value).tobytes(), np.int32(value).tobytes()]
    return forms


def test_a_snapshot_taken_during_warm_up_holds_none_of_the_raw_values():
    monitor = _warm(300)  # of 2000 warm-up rows
    assert not monitor.features.ready
    tree = monitor.state()
    local = snapshot.encode(Snapshot(0, {"predictions": 300}, {"m": tree}), SEAL)  # the local store's file
    record = inflate(pack(tree, SEAL))  # a state-topic record's value
    planted = [SSN + i for i in range(3, 300, 10)] + [FLOAT, SECRET]
    for encoded in (local, record):
        found = [value for value in planted if any(form in encoded for form in _raw_forms(value))]
        assert found == []
    # and the summary still fits the reference the rows give once the warm-up ends
    restored = ModelMonitor("m", SETTINGS, state=snapshot.loads(snapshot.dumps(tree)))
    assert restored.features.warmup is not None and restored.features.warmup_rows == 300


@pytest.mark.parametrize("seed, centre, spread", [(0, 50, 20), (1, 50, 20), (2, 1000, 1), (3, 40.7, 0.05)])
def test_quantile_edges_are_bucket_boundaries_near_the_quantiles_and_reference_counts_are_exact(seed, centre, spread):
    """Also for values far from zero that vary little (a latitude, a year): the buckets are of the distance to
    the first number's bucket, not to zero, which would put them all in one or two buckets."""
    rng = np.random.default_rng(seed)
    rows = [
        *rng.normal(centre, spread, 1500).tolist(),
        *(centre - spread * rng.lognormal(0, 2, 400)).tolist(),
        *[float(centre)] * 50,
        *[None] * 50,
    ]
    summary = WarmupColumn(limit=10, max_kept=30)
    for at in range(0, len(rows), 123):
        summary.add(rows[at : at + 123])
    column = Column.from_summary("x", summary, len(rows), bins=10, max_categories=3)
    exact = Column.fit("x", rows, bins=10, max_categories=3)
    assert column.kind == NUMERIC and column.n_edges == exact.n_edges == 11
    # every edge but the maximum a bucket's lower boundary, and within two buckets of the exact quantile
    keys, _ = summary.histogram()
    assert np.isin(column.edges[:-1], summary.anchor + lower(keys)).all()
    assert np.allclose(column.edges - summary.anchor, exact.edges - summary.anchor, rtol=4 * ACCURACY, atol=1e-12)
    # the reference counts are those of binning the rows themselves with these edges
    assert column.ref_counts.tolist() == column.bin(rows)[0].tolist()


def test_few_distinct_numbers_and_categories_fit_as_the_rows_do():
    rng = np.random.default_rng(3)
    flags = [int(v) if v < 2 else None for v in rng.integers(0, 3, 600)]
    mixed = [str(v) if v < 6 else (True if v == 6 else 3) for v in rng.integers(0, 8, 600)]
    for rows in (flags, mixed):
        summary = WarmupColumn(limit=10, max_kept=30)
        summary.add(rows[:250])
        summary.add(rows[250:])
        column, exact = Column.from_summary("x", summary, 600, 10, 5), Column.fit("x", rows, 10, 5)
        assert column.state() == exact.state()


def test_warm_up_state_does_not_depend_on_batches_and_a_version_2_snapshot_is_counted_on_load():
    rng = np.random.default_rng(5)
    rows = {"x": rng.normal(0, 1, 700).tolist(), "c": [f"k{v}" for v in rng.integers(0, 9, 700)]}

    def fed(cuts: list[int]) -> StreamSketch:
        sketch = StreamSketch(1000, 400, 4, 10, 5, 10)
        for a, b in zip([0, *cuts], [*cuts, 700]):
            sketch.update({k: v[a:b] for k, v in rows.items()}, np.arange(a, b), np.zeros(b - a))
        return sketch

    whole = snapshot.dumps(fed([]).state())
    assert snapshot.dumps(fed([1, 2, 350, 699]).state()) == whole
    # a sketch of format version 2 held its warm-up as raw rows (one list per column): counted as it loads
    old = fed([]).state()
    old["warmup"] = {name: list(values) for name, values in rows.items()}
    loaded = StreamSketch(1000, 400, 4, 10, 5, 10, state=snapshot.loads(snapshot.dumps(old)))
    assert snapshot.dumps(loaded.state()) == whole


@pytest.mark.parametrize("step", [1, 2, 7, 1_000])
def test_categories_and_distinct_numbers_whatever_the_steps(step: int) -> None:
    """Counted row by row: the categories kept are the first ``max_kept`` in row order, the rest ``other``;
    the distinct numbers dropped at the first one too many; the same however the rows come in batches."""
    rng = np.random.default_rng(3)
    values = [f"c{i}" for i in rng.integers(0, 9, 300)] + rng.integers(0, 4, 300).tolist() + [True, None, 2.0]
    values = [values[i] for i in rng.permutation(len(values))]
    whole = WarmupColumn(limit=4, max_kept=5)
    whole.add(values)
    stepped = WarmupColumn(limit=4, max_kept=5)
    for at in range(0, len(values), step):
        stepped.add(values[at : at + step])
    assert (stepped.categories, stepped.other, stepped.distinct) == (whole.categories, whole.other, whole.distinct)
    first = list(dict.fromkeys(str(v) for v in values if v is not None and type(v) not in (int, float)))
    assert list(whole.categories) == first[:5]
    assert whole.other == sum(str(v) in first[5:] for v in values if v is not None and type(v) not in (int, float))
    assert whole.distinct is None  # 0 to 3 and 2.0: five distinct texts, over the limit of 4


def _scored_events(n: int, unscored: set[int]) -> list[RawMessage]:
    """A classifier's predictions, with no score on the rows ``unscored`` (the decoder makes it NaN)."""
    rng = np.random.default_rng(11)
    messages = []
    for i in range(n):
        score = round(float(rng.beta(2, 5) if i < n // 2 else rng.beta(5, 2)), 4)
        event = {
            "event_id": f"e{i}",
            "model_id": "m",
            "timestamp": 1_700_000_000 + i,
            "features": {"x": round(float(rng.normal()), 4)},
            "prediction": int(score >= 0.5),
            **({} if i in unscored else {"score": score}),
        }
        messages.append(RawMessage("predictions", 0, i, b"m", orjson.dumps(event)))
    return messages


@pytest.mark.parametrize("first_scored", [True, False])
def test_a_missing_score_in_the_warm_up_is_missing_and_a_restart_during_it_changes_nothing(first_scored: bool):
    """A prediction without a score has NaN in the score column, which the monitoring phase bins as missing.
    The warm-up once counted it as a number: bucket key INT64_MIN, saved as int32 0 in a snapshot, so a model
    restored during its warm-up fitted another reference than one never restored; and a NaN first score made
    the anchor NaN, which a snapshot writes as null and which then failed to load (TypeError)."""
    settings = MonitorSettings(reference_size=300, window_size=200, subwindows=4, bins=8)
    unscored = {i for i in range(400) if i % 7 == 3} | (set() if first_scored else {0})
    messages = _scored_events(400, unscored)

    def run(restart_at: int | None) -> tuple[ModelMonitor, list[dict]]:
        monitor, events = ModelMonitor("m", settings), []
        for at in range(0, len(messages), 50):
            (batch,), rejected = decode_predictions(messages[at : at + 50])
            assert not rejected
            events += monitor.observe_predictions(batch)
            if at + 50 == restart_at:
                monitor = ModelMonitor.from_state("m", settings, snapshot.loads(snapshot.dumps(monitor.state())))
        return monitor, events

    uninterrupted, events = run(None)
    restarted, restarted_events = run(restart_at=150)  # restored half-way through the warm-up
    assert snapshot.dumps(restarted.state()) == snapshot.dumps(uninterrupted.state())
    assert restarted_events == events
    # the score's reference: the warm-up's unscored rows in its missing bin, the scores in bins between 0 and 1
    (score,) = [column for column in uninterrupted.outputs.columns if column.name == "score"]
    assert score.kind == NUMERIC and 0 <= score.edges[0] and score.edges[-1] <= 1.01
    assert score.ref_counts[score.missing_bin] == len([i for i in unscored if i < 300])
    assert score.ref_counts.sum() == 300


@pytest.mark.parametrize(
    "numbers",
    [[float(i) for i in range(30)], [float(i % 8) for i in range(16)], [3, 3.0, 0.0, -0.0] * 8],
)
def test_a_long_call_drops_the_distinct_numbers_as_row_by_row(numbers: list) -> None:
    """``_add_distinct``'s shortcut (a call with more distinct numbers than the limit) drops the table where
    counting row by row does, and only there: 30 distinct numbers do; 8 (the limit) and 3, 3.0, 0.0, -0.0 (four
    texts) do not."""
    whole, one_by_one = WarmupColumn(limit=8, max_kept=10), WarmupColumn(limit=8, max_kept=10)
    whole.add(numbers)
    for x in numbers:
        one_by_one.add([x])
    assert whole.distinct == one_by_one.distinct
    assert (whole.distinct is None) == (len(numbers) == 30)


def _tallies(column: WarmupColumn) -> tuple[list[int], list[int], list[list[int]]]:
    keys, counts = column.histogram()
    return keys.tolist(), counts.tolist(), column.bucket_scores.tolist()


def _version_3(column: WarmupColumn) -> dict:
    """The column's state as format version 3 wrote it: its histogram always, keys as they are, and the
    buckets' scores before the tables'."""
    keys, counts = column.histogram()
    state = {k: v for k, v in column.state().items() if k not in ("steps", "counts", "scores")}
    state |= {"buckets": keys.astype(np.int32), "counts": counts.astype(np.uint32)}
    if column.scored:
        tables = [(column.distinct or {}, column.distinct_scored, column.distinct_sums),
                  (column.categories, column.category_scored, column.category_sums)]  # fmt: skip
        scored, sums = column.bucket_scores.T.tolist()
        for table, table_scored, table_sums in tables:
            scored += [table_scored.get(k, 0) for k in sorted(table)]
            sums += [table_sums.get(k, 0) for k in sorted(table)]
        state["scores"] = {"scored": np.array([*scored, column.other_scored], np.uint32),
                           "sums": np.array([*sums, column.other_sum], np.uint64)}  # fmt: skip
    return state


def test_a_column_s_histogram_is_made_again_from_its_distinct_numbers_exactly() -> None:
    """While a column keeps its distinct numbers its state leaves out their histogram and its scores (format
    version 4): restored, the column has the histogram and bucket scores it had, whatever the numbers' kinds
    (ints, floats, 3 and 3.0, -0.0, integers past 2**53, far from the anchor, infinite); several columns
    restored together (``from_states``) as each alone; and version 3's states, which wrote the histogram, too."""
    rng = np.random.default_rng(3)
    rows = [
        [7, 3, 3.0, -0.0, 0.0, 0, 2**53 + 1, 10**20, -(10**20), 1e-300, -2.5, 3, 7, 1e300, 0.1],
        [0.5, *rng.normal(4, 2, 12).tolist(), 0.5, None, 4.25],
        [1, 0, 0, 1, 1, "k", None, 0],
        ["a", "b", None],
        [2.0, float("inf"), 2.0, -float("inf")],  # a key no finite number has: restored one column at a time
    ]
    made = []
    for values in rows:
        column = WarmupColumn(limit=20, max_kept=3, scored=True)
        for start in range(0, len(values), 4):
            part = values[start : start + 4]
            column.add(part, scores=[int(s) for s in rng.integers(-1, 2**20, len(part))])
        assert column.distinct is not None
        made.append(column)
    states = [column.state() for column in made]
    assert not any("steps" in state or "counts" in state for state in states)
    together = warmup.from_states(states, 20, 3)
    old = warmup.from_states([_version_3(column) for column in made], 20, 3)
    for column, state, restored, restored_3 in zip(made, states, together, old):
        alone = WarmupColumn.from_state(state, 20, 3)
        for again in (alone, restored, restored_3):
            assert _tallies(again) == _tallies(column)
            assert again.histogram()[0].dtype == again.histogram()[1].dtype == again.bucket_scores.dtype == np.int64
            assert snapshot.dumps(again.state()) == snapshot.dumps(state)
    assert len(made[0].histogram()[0]) == 9 and made[2].histogram()[1].tolist() == [3, 3]


def _listed(tree: dict) -> dict:
    """``tree`` with lists for its arrays, as a state not read from a file may hold them."""
    return {
        k: v.tolist() if isinstance(v, np.ndarray) else _listed(v) if isinstance(v, dict) else v
        for k, v in tree.items()
    }


@pytest.mark.parametrize("scored", [False, True])
def test_a_sketch_writes_its_warm_up_columns_together_and_reads_version_4_s_one_by_one(scored: bool) -> None:
    """Format version 5: a sketch's warm-up columns in one state, one array each for all of them; restored
    (lazily or not, from version 4's state per column too) the sketch goes on as the one never restored,
    whatever its features are named (a feature named "columns" or "numbers" does not confuse the layouts)."""
    rng = np.random.default_rng(9)
    n = 300
    rows = {
        "columns": rng.normal(0, 1, n).tolist(),  # many distinct numbers: a histogram written
        "numbers": [float(v) for v in rng.integers(0, 3, n)],  # few: their histogram made on load
        "steps": [f"k{v}" for v in rng.integers(0, 9, n)],
        "x": [None if v < 0.2 else v for v in rng.uniform(0, 1, n).tolist()],
    }
    scores = np.where(rng.uniform(0, 1, n) < 0.1, np.nan, rng.uniform(0, 1, n))

    def fed(sketch: StreamSketch, a: int, b: int) -> StreamSketch:
        sketch.update({k: v[a:b] for k, v in rows.items()}, np.arange(a, b), np.zeros(b - a), scores=scores[a:b])
        return sketch

    def fresh(state=None) -> StreamSketch:
        return StreamSketch(1000, 400, 4, 10, 5, 10, state=state, scored=scored)

    half = fed(fresh(), 0, 150)
    state = half.state()
    kept = state["warmup"]
    assert warmup.is_sketch_state(kept) and sorted(kept["columns"]) == ["columns", "numbers", "steps", "x"]
    assert [name for name, column in kept["columns"].items() if "buckets" in column] == ["columns", "x"]
    assert ("scores" in kept) is scored and (not scored or kept["scores"]["scored"] is not None)  # NaN scores
    columns = half.warmup
    as_version_4 = {**state, "warmup": warmup.states(columns)}
    assert not warmup.is_sketch_state(as_version_4["warmup"])
    whole = snapshot.dumps(fed(half, 150, n).state())
    for restored_from in (state, as_version_4):
        lazily = fresh(snapshot.loads(snapshot.dumps(restored_from)))
        assert snapshot.dumps(lazily.state()) == snapshot.dumps(restored_from)  # given back as restored
        assert snapshot.dumps(fed(lazily, 150, n).state()) == whole
        loaded = snapshot.loads(snapshot.dumps(restored_from))
        eagerly = fresh({**loaded, "warmup": _listed(loaded["warmup"])})  # lists: the columns made at once
        assert "_warmup" in eagerly.__dict__
        assert snapshot.dumps(fed(eagerly, 150, n).state()) == whole
    together = warmup.from_sketch_state(snapshot.loads(snapshot.dumps(kept)), 10, 50)
    for name, column in together.items():
        again = WarmupColumn.from_state(as_version_4["warmup"][name], 10, 50)  # taken before the rows after 150
        assert _tallies(column) == _tallies(again) and column.present_scores.tolist() == again.present_scores.tolist()


def _seeded_numbers(seed: int, n: int) -> tuple[list, list[int]]:
    """Numbers a warm-up column counts, with few distinct texts or many (ints and floats of one value, both
    zeros, integers past 64 bits, long floats), and fixed-point scores, 0 and ``UNSCORED`` (-1) among them."""
    rng = np.random.default_rng(seed)
    pool = [0, 1, 2, 0.0, -0.0, 1.0, 2.5, 3, 3.0, 2**70, -(2**63), 1e300, -1e-300, 0.1 + 0.2, float(rng.normal())]
    few = [pool[i] for i in rng.integers(0, len(pool), n)]
    many = rng.normal(size=n).tolist()
    numbers = few if seed % 2 else [x if rng.random() < 0.7 else y for x, y in zip(few, many)]
    scores = [[0, -1, int(s)][int(k)] for s, k in zip(rng.integers(0, 2**40, n), rng.choice(3, n, p=[0.1, 0.2, 0.7]))]
    return numbers, scores


class _ByText:
    """The distinct-number tables as they were counted before they were keyed by number (b666d1e): every number
    by its text, ``str``, a row at a time, dropped at the first text over the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.distinct: dict[str, int] | None = {}
        self.scored: dict[str, int] = {}
        self.sums: dict[str, int] = {}

    def add(self, numbers: list, scores: list[int] | None) -> None:
        for i, text in enumerate(map(str, numbers)):
            if self.distinct is None:
                return
            self.distinct[text] = self.distinct.get(text, 0) + 1
            if len(self.distinct) > self.limit:
                self.distinct, self.scored, self.sums = None, {}, {}
                return
            if scores is not None and scores[i] >= 0:
                self.scored[text] = self.scored.get(text, 0) + 1
                self.sums[text] = self.sums.get(text, 0) + scores[i]


@pytest.mark.parametrize("loop", ["c", "plain"])
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("scored", [True, False])
def test_the_distinct_numbers_keyed_by_number_are_the_tables_counted_by_text(
    seed: int, scored: bool, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm-up column keys its distinct numbers by number where that tells the texts apart (``warmup._key``),
    not by the text ``str`` writes of each (issue 19): its tables, read by text, are those of counting the texts,
    in the same order, dropped at the same row, batch after batch; with ints and floats of one value (3, 3.0),
    both zeros, integers past 64 bits, long floats; by the C loop (``_speedups.count_numbers``) and the plain
    one alike. And a state's texts come back as the same keys."""
    from streamdrift.core import decode

    if loop == "plain":
        monkeypatch.setattr(warmup, "_count_numbers", None)
    elif warmup._count_numbers is None:
        if decode.SPEEDUPS or os.environ.get("CI") == "true":
            pytest.fail("streamdrift.core._speedups has no count_numbers: rebuild it (make install)")
        pytest.skip("streamdrift.core._speedups not built")
    numbers, scores = _seeded_numbers(seed, 400)
    sizes = np.random.default_rng(100 + seed).integers(1, 9, 400).tolist()
    column, by_text, at = WarmupColumn(limit=16, max_kept=10, scored=scored), _ByText(limit=16), 0
    for size in sizes:
        if at >= len(numbers):
            break
        batch, batch_scores = numbers[at : at + size], scores[at : at + size] if scored else None
        column.add(batch, scores=batch_scores)
        by_text.add([x for x in batch if x is not None], batch_scores)
        assert (
            column.distinct is None
            if by_text.distinct is None
            else list(column.distinct.items()) == list(by_text.distinct.items())
        )
        if scored:
            assert list(column.distinct_scored.items()) == list(by_text.scored.items())
            assert list(column.distinct_sums.items()) == list(by_text.sums.items())
        at += size
    assert (column.distinct is None) == (seed % 2 == 0)  # the many-valued streams drop theirs; 15 texts fit
    if column.distinct is not None:
        again = WarmupColumn.from_state(column.state(), limit=16, max_kept=10)
        assert again._distinct == column._distinct and list(again._distinct) == list(column._distinct)
