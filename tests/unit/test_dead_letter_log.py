"""A flood of bad records is not a flood of log lines: the worker logs the first few dead letters of each reason
in an interval, then one summary line with counts per reason; the dead-letter topic and
``streamdrift_dead_letters_total`` still get every record. The clock is the test's (no wall-clock asserts)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from streamdrift.core.records import RawMessage, Rejected
from streamdrift.runtime import deadletter
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import Worker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict]]:
    return [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]


def test_the_first_of_each_reason_are_logged_then_one_summary_per_interval(caplog) -> None:
    clock = Clock()
    log = deadletter.DeadLetterLog(logging.getLogger("test.dead"), clock, first=2, max_lines=10, interval_s=60)
    with caplog.at_level(logging.WARNING, logger="test.dead"):
        for offset in range(100):
            log.record("predictions", 0, offset, "invalid JSON")
            log.record("feedback", 1, offset, "field 'label' must be a string, number or boolean, got null")
        clock.now += 59.9
        log.tick()
        assert len(caplog.records) == 4  # two of each reason, nothing summed up yet
        clock.now += 0.1
        log.tick()
        log.tick()  # one summary per interval
    assert lines(caplog) == [
        ("dead letter", {"topic": "predictions", "partition": 0, "offset": 0, "reason": "invalid JSON"}),
        (
            "dead letter",
            {
                "topic": "feedback",
                "partition": 1,
                "offset": 0,
                "reason": "field 'label' must be a string, number or boolean, got null",
            },
        ),
        ("dead letter", {"topic": "predictions", "partition": 0, "offset": 1, "reason": "invalid JSON"}),
        (
            "dead letter",
            {
                "topic": "feedback",
                "partition": 1,
                "offset": 1,
                "reason": "field 'label' must be a string, number or boolean, got null",
            },
        ),
        (
            "dead letters not logged one by one",
            {
                "dead_letters": 196,
                "interval_s": 60.0,
                "reasons": {
                    "field 'label' must be a string, number or boolean, got null": 98,
                    "invalid JSON": 98,
                },
                "other_reasons": 0,
            },
        ),
    ]


def test_after_a_summary_the_next_interval_logs_the_first_again_and_a_quiet_interval_says_nothing(caplog) -> None:
    clock = Clock()
    log = deadletter.DeadLetterLog(logging.getLogger("test.dead"), clock, first=1, max_lines=10, interval_s=60)
    with caplog.at_level(logging.WARNING, logger="test.dead"):
        log.record("predictions", 0, 0, "invalid JSON")
        clock.now += 61
        log.tick()  # nothing left unlogged: no summary
        log.record("predictions", 0, 1, "invalid JSON")  # a new interval: logged in full
        log.record("predictions", 0, 2, "invalid JSON")
        clock.now += 61
        log.flush()
    assert [(m, f.get("offset"), f.get("dead_letters")) for m, f in lines(caplog)] == [
        ("dead letter", 0, None),
        ("dead letter", 1, None),
        ("dead letters not logged one by one", None, 1),
    ]


def test_reasons_are_not_a_bound_the_lines_of_an_interval_and_the_reasons_a_summary_names_are(caplog) -> None:
    """A reason can name a feature (or, with redact_values false, a value): one per record would log them all."""
    clock = Clock()
    log = deadletter.DeadLetterLog(
        logging.getLogger("test.dead"), clock, first=5, max_lines=3, interval_s=60, max_reasons=2
    )
    with caplog.at_level(logging.WARNING, logger="test.dead"):
        for offset in range(10):
            log.record("predictions", 0, offset, f"field 'features.f{offset}' must be a number")
        log.record("predictions", 0, 10, "field 'features.f9' must be a number")
        clock.now += 60
        log.tick()
    summary = lines(caplog)[-1][1]
    assert len(caplog.records) == 4
    assert summary == {
        "dead_letters": 8,
        "interval_s": 60.0,
        "reasons": {"field 'features.f3' must be a number": 1, "field 'features.f4' must be a number": 1},
        "other_reasons": 6,
    }


class _Producer:
    def __init__(self) -> None:
        self.produced: list[SimpleNamespace] = []

    def produce(self, topic, value, key, headers=None, on_delivery=None, **_) -> None:
        self.produced.append(SimpleNamespace(topic=topic, value=value, key=key, headers=headers))


def test_the_worker_writes_and_counts_every_dead_letter_and_logs_a_few(tmp_path, caplog) -> None:
    clock = Clock()
    worker = Worker(Settings(state_store="local", snapshot_dir=tmp_path))
    worker.dead_letter_log = deadletter.DeadLetterLog(logging.getLogger("streamdrift.worker"), clock)
    worker.producer = producer = _Producer()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="streamdrift.worker"):
        for offset in range(1000):
            worker._dead_letter(
                Rejected(RawMessage("streamdrift.predictions", 0, offset, b"m1", b"{", 1), "invalid JSON")
            )
        clock.now += deadletter.LOG_INTERVAL_S
        worker.dead_letter_log.tick()
    assert [p.topic for p in producer.produced] == [worker.topics.dead_letter] * 1000
    assert worker.m_dead.labels("streamdrift.predictions")._value.get() == 1000
    assert [r.getMessage() for r in caplog.records] == ["dead letter"] * deadletter.LOG_FIRST + [
        "dead letters not logged one by one"
    ]
    assert caplog.records[-1].fields["dead_letters"] == 1000 - deadletter.LOG_FIRST
