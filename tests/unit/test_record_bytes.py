"""A model record of the state topic costs less to make and keeps its bytes (issue 19).

``statetopic.pack`` joins the body once and checksums it in one call (``state.encode_tree``), starts its
compressor from a copy of one that read the preset dictionary, and the join writes its recent pairs from
the heap that holds them (``FeedbackJoin._recent_pairs``). Each record must be byte for byte what the plain
path made before: the file's pieces joined (``state.file_pieces``), a new compressor, the recent pairs
sorted from ``recent``. Compared on seeded streams: models in their warm-up and past it, multivariate on,
quarantined, restored from their state and fed on; and the joins on random streams (hypothesis).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdrift.core.config import MonitorSettings
from streamdrift.core.join import FeedbackJoin
from streamdrift.core.join_bulk import BulkFeedbackJoin
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.state import Seal, decode_tree, file_pieces, tree_body
from streamdrift.runtime import state_dictionary, statetopic
from streams import demo_messages, run_monitors

SEAL = Seal.of({"monitor": {"window_size": 100}}, {"cluster": "k", "group": "g", "topics": ["p", "f"]}, b"key")


def plain_recent(join: FeedbackJoin) -> list[list[Any]]:
    """The recent pairs as the join wrote them before: from ``recent``, a list per pair."""
    return sorted([t, i] for i, t in join.recent.items())


def plain_state(monitor: ModelMonitor) -> dict[str, Any]:
    state = monitor.state()
    state["join"] = {**state["join"], "recent": plain_recent(monitor.join)}
    return state


def plain_pack(tree: dict[str, Any], config: str | Seal, summary: dict[str, Any] | None) -> bytes:
    """``statetopic.pack`` as it was: the file's pieces joined, a new compressor with the preset dictionary."""
    extra = {statetopic.SUMMARY_FIELD: summary} if summary is not None else None
    deflate = zlib.compressobj(statetopic.COMPRESS_LEVEL, zdict=state_dictionary.CURRENT)
    return deflate.compress(b"".join(file_pieces(*tree_body(tree), config, extra))) + deflate.flush()


def assert_records_as_before(monitors: dict[str, ModelMonitor]) -> None:
    assert monitors
    for monitor in monitors.values():
        summary = statetopic.record_summary(monitor)  # None for a quarantined model
        for config in ("c", SEAL, statetopic.model_seal(SEAL)):
            record = statetopic.pack(monitor.state(), config, summary)
            assert record == plain_pack(plain_state(monitor), config, summary), monitor.model_id
            # and it reads back as the state it holds
            assert orjson.dumps(
                statetopic.unpack(record, config, "test", ""), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS
            ) == orjson.dumps(plain_state(monitor), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS)


WARMUP = MonitorSettings(reference_size=500, window_size=200, subwindows=4)  # 300 events: all in the warm-up
MONITORING = MonitorSettings(reference_size=60, window_size=100, subwindows=5)  # 300 events: past it


@pytest.mark.parametrize(
    "settings_",
    [WARMUP, MONITORING, MONITORING.model_copy(update={"multivariate": True})],
    ids=["warmup", "monitoring", "multivariate"],
)
def test_a_record_has_the_bytes_of_the_plain_path(settings_: MonitorSettings) -> None:
    monitors, _ = run_monitors(demo_messages(300, seed=7), 37, settings_)
    assert any(m.join.recent for m in monitors.values()) and any(m.join.predictions.entries for m in monitors.values())
    assert all(m.features.ready for m in monitors.values()) is (settings_ is not WARMUP)
    assert_records_as_before(monitors)


def test_a_quarantined_or_restored_model_has_the_bytes_of_the_plain_path() -> None:
    messages = demo_messages(400, seed=11)
    monitors, _ = run_monitors(messages[:250], 29, MONITORING)
    first = next(iter(monitors.values()))
    first.quarantine("ZeroDivisionError", "test_record_bytes.py:1", "predictions")
    assert_records_as_before(monitors)
    restored = {
        model_id: ModelMonitor.from_state(model_id, MONITORING, decode_tree(statetopic.inflate(record), "c", "t", ""))
        for model_id, record in ((i, statetopic.pack(m.state(), "c")) for i, m in monitors.items())
        if not monitors[model_id].quarantined
    }
    assert_records_as_before(restored)
    run_monitors(messages[250:], 31, MONITORING, restored)
    assert_records_as_before(restored)


# -- the recent pairs of a join, on random streams -----------------------------------------------------

ids = st.sampled_from([f"e{i}" for i in range(12)])
rows = st.lists(st.tuples(ids, st.integers(0, 40)), max_size=8)
steps = st.lists(st.tuples(st.booleans(), rows), min_size=1, max_size=25)


@settings(deadline=None)
@given(steps=steps, max_pending=st.integers(1, 6), ttl_s=st.sampled_from([3.0, 10.0, 1e9]))
def test_the_recent_pairs_from_the_heap_are_those_of_recent(steps, max_pending: int, ttl_s: float) -> None:
    """Pairs come, duplicates, expiries by the watermark and trims at ``max_pending`` go; after each batch
    the join's state has the bytes of the recent pairs sorted from ``recent``, in both join paths."""
    for kind in (FeedbackJoin, BulkFeedbackJoin):
        join = kind(ttl_s=ttl_s, max_pending=max_pending, max_pending_bytes=1 << 20)
        for predictions, batch in steps:
            event_ids = [event_id for event_id, _ in batch]
            times = np.array([float(t) for _, t in batch])
            n = len(batch)
            if predictions:
                join.add_predictions(event_ids, times, [1] * n, np.full(n, 0.5), ["v1"] * n, [None] * n)
            else:
                join.add_feedback(event_ids, times, [0] * n, [None] * n, np.full(n, np.nan), None, None)
            state = join.state()
            assert orjson.dumps(state["recent"]) == orjson.dumps(plain_recent(join))
            restored = kind(ttl_s=ttl_s, max_pending=max_pending, max_pending_bytes=1 << 20)
            restored.load_state(orjson.loads(orjson.dumps(state)))
            assert orjson.dumps(restored.state()) == orjson.dumps(state)
