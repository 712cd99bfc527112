"""The model records a checkpoint writes along fixed streams are the bytes of the commit before issue 19's speed
changes of 2026-12-05 (415163a).

Each of those changes (a record's encoding, the warm-up tables' and histograms' C paths, the classification report
in plain Python, the summary made once per batch) was tested against a plain twin written beside it; this test
holds them, and the next ones, to the bytes the code wrote before them: a model's state with its summary in the
header, as ``statetopic.pack`` encodes it before compressing it. ``tests/fixtures/golden/records.json`` was
written by ``make_records.py`` with the interpreter of 415163a, and again once since, for a change that meant to
alter records: the classification metrics' totals stored in the narrowest integer dtype that holds them, not
int64 (issue 19, 2026-12-05; with that change undone the records were 415163a's bytes). A change that alters a
record (its state's bytes, its summary) fails here; regenerate the file only for a change that means to, and
say why in the commit.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest

from streamdrift.core.monitor import ModelMonitor
from streams import GOLDEN, golden_module

make_records = golden_module("make_records")
EXPECTED = orjson.loads((GOLDEN / "records.json").read_bytes())
STREAMS = {name: (seed, n, checkpoints) for name, seed, n, checkpoints in make_records.STREAMS}


@functools.cache
def computed(name: str) -> tuple[list[list[Any]], frozenset[str]]:
    """The stream's records as the golden file lists them, and what the monitors showed on the way."""
    seen: set[str] = set()

    def look(monitor: ModelMonitor) -> None:
        warmup = monitor.state()["features"].get("warmup")
        if warmup is not None:
            seen.add("warm-up")
            tables = [column["distinct"] for column in warmup["columns"].values()]
            seen.update({"table as integers" for t in tables if type(t) is int})
            seen.update({"table as texts" for t in tables if type(t) is dict and t})
            seen.update({"histogram" for t in tables if t is None})
        else:
            seen.add("past the warm-up")
        report = monitor.performance.report("cumulative") if monitor.performance is not None else {}
        if "confusion" in report:
            seen.add(f"{len(report['confusion']['labels'])} classes")
        heap = monitor.join._recent_heap
        if heap != sorted(heap):  # a late pair pushed in the middle: the heap is no sorted list
            seen.add("recent pairs out of order")

    seed, n, checkpoints = STREAMS[name]
    return make_records.records(seed, n, checkpoints, look), frozenset(seen)


def test_the_golden_streams_cover_what_the_speed_changes_touched() -> None:
    assert sorted(EXPECTED) == sorted(STREAMS)
    seen = frozenset().union(*(computed(name)[1] for name in STREAMS))
    wanted = {"warm-up", "past the warm-up", "table as integers", "table as texts", "histogram"}
    wanted.add("recent pairs out of order")
    # the classification report in plain Python up to report_small.SMALL_CLASSES (16), numpy's past it
    assert wanted | {"16 classes", "17 classes"} <= seen


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_records_are_the_bytes_of_the_commit_before_the_speed_changes(name: str) -> None:
    records = computed(name)[0]
    assert [r[:2] for r in records] == [r[:2] for r in EXPECTED[name]]  # the same checkpoints and models
    for got, expected in zip(records, EXPECTED[name]):
        assert got == expected, f"the record of {got[1]} at message {got[0]} differs"
