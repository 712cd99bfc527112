"""A monitor's summary is made once per batch observed and shared until the next (``ModelMonitor.summary``): it
must be, at any point of any stream, the summary made afresh; a restore from the state taken there must show
the same; and a record's summary (``statetopic.record_summary``) must be that of a fresh computation.

The streams are ``test_batch_split``'s (a classifier and a regressor, every kind of drift), shorter: through
the warm-up (300 rows) and a few windows, cut into random batches with summaries, states and restores between."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st
from test_batch_split import make_stream, new_monitor, topic_runs

from streamdrift.core import state as snapshot
from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.summary import summary_doc
from streamdrift.runtime.statetopic import record_summary
from streams import PRED


@functools.cache
def stream() -> list[RawMessage]:
    return make_stream(700, 1, 0.595)


def _fresh(monitor: ModelMonitor) -> dict:
    return monitor._make_summary().as_dict()


@settings(deadline=None, max_examples=25)
@given(data=st.data())
def test_a_summary_is_the_one_made_afresh_whatever_the_batches_and_reads(data: st.DataObject) -> None:
    messages = stream()
    cuts = set(data.draw(st.lists(st.integers(1, len(messages) - 1), max_size=60), label="cuts"))
    ends = sorted(set(topic_runs(messages)) | cuts)
    monitors: dict[str, ModelMonitor] = {}
    reads = {"summary": 0, "state": 0, "restore": 0}
    for start, stop in zip(ends, ends[1:]):
        chunk = messages[start:stop]
        batches, _ = (decode_predictions if chunk[0].topic == PRED else decode_feedback)(chunk)
        for batch in batches:
            monitor = monitors.setdefault(batch.model_id, new_monitor(batch.model_id))
            if chunk[0].topic == PRED:
                monitor.observe_predictions(batch)  # type: ignore[arg-type]
            else:
                monitor.observe_feedback(batch)  # type: ignore[arg-type]
        for model_id in sorted(monitors):
            monitor = monitors[model_id]
            # what a worker does between batches: publish a summary, take a state (held rows counted), restart
            for read in data.draw(st.lists(st.sampled_from(sorted(reads)), max_size=3), label="reads"):
                reads[read] += 1
                if read == "summary":
                    monitor.summary()
                elif read == "state":
                    monitor.state()
                else:
                    shown = monitor.summary().as_dict()
                    stored = snapshot.loads(snapshot.dumps({model_id: monitor.state()}))[model_id]
                    monitor = monitors[model_id] = new_monitor(model_id, stored)
                    assert monitor.summary().as_dict() == shown  # a restored model shows what the live one did
            assert monitor.summary().as_dict() == _fresh(monitor)
            doc = record_summary(monitor)
            assert doc == summary_doc(monitor._make_summary())
    assert sum(m.predictions_total + m.feedback_total for m in monitors.values()) == len(messages)


def test_a_summary_is_shared_until_the_next_batch() -> None:
    """Not vacuous: the cache is hit between batches (a state taken too), and missed after each."""
    messages = stream()[:400]
    ends = topic_runs(messages)
    monitor = None
    kept = 0
    for start, stop in zip(ends, ends[1:]):
        chunk = messages[start:stop]
        batches, _ = (decode_predictions if chunk[0].topic == PRED else decode_feedback)(chunk)
        for batch in batches:
            if batch.model_id != "clf":
                continue
            monitor = monitor or new_monitor("clf")
            before = monitor.summary()
            if chunk[0].topic == PRED:
                monitor.observe_predictions(batch)  # type: ignore[arg-type]
            else:
                monitor.observe_feedback(batch)  # type: ignore[arg-type]
            after = monitor.summary()
            assert after is not before
            monitor.state()
            assert monitor.summary() is after
            kept += 1
    assert kept >= 4
