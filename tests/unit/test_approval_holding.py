"""The retrain listener's holding of undecided events, driven poll by poll against an in-memory alerts log (the
broker's part, a real one, is tests/integration/test_retrain_approval.py): the cap on held events pauses the
partition and a decision resumes it, a decision read before its event acts at once, and a restart from the
commit's metadata calls no hook twice."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition

from streamdrift.retrain import approvals, listener
from streamdrift.retrain.approvals import Decisions, decision_record
from streamdrift.retrain.listener import RetrainListener
from streamdrift.runtime.settings import load_settings

TOPIC = "alerts"
AT = "2026-12-05T00:00:00.000Z"


def event(n: int, model: str = "m", action: str = "retrain") -> dict:
    return {"alert_id": f"a{n}", "model_id": f"{model}{n}", "action": action, "kind": "concept_drift", "detected_at": n}


class Msg:
    def __init__(self, offset: int, value: bytes):
        self._offset, self._value = offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, 1_700_000_000_000  # published in 2023: any approval timeout has passed


class Broker:
    """One alerts partition and the groups' commits; ``script`` runs before each poll (index = poll number)."""

    def __init__(self, events: list[dict]):
        self.log = [Msg(i, orjson.dumps(e)) for i, e in enumerate(events)]
        self.commits: dict[str, TopicPartition] = {}
        self.script: dict[int, Callable[[], None]] = {}


class FakeConsumer:
    """What the listener asks of a confluent_kafka Consumer, on ``broker``."""

    def __init__(self, broker: Broker, config: dict):
        self.broker, self.group = broker, config["group.id"]
        self.position, self.paused, self.polls = 0, False, 0

    def subscribe(self, topics, on_assign, on_revoke, on_lost) -> None:
        on_assign(self, [TopicPartition(TOPIC, 0)])

    def committed(self, tps, timeout=None):
        c = self.broker.commits.get(self.group)
        return [TopicPartition(TOPIC, 0, c.offset, metadata=c.metadata) if c else TopicPartition(TOPIC, 0, -1001)]

    def get_watermark_offsets(self, tp, timeout=None):
        return 0, len(self.broker.log)

    def assign(self, tps) -> None:
        self.position = max(tps[0].offset, 0)

    def consume(self, n: int, timeout: float):
        action = self.broker.script.pop(self.polls, None)
        self.polls += 1
        if action is not None:
            action()
        if self.paused:
            return []
        batch = self.broker.log[self.position : self.position + n]
        self.position += len(batch)
        return batch

    def pause(self, tps) -> None:
        self.paused = True

    def resume(self, tps) -> None:
        self.paused = False

    def seek(self, tp) -> None:
        self.position = tp.offset

    def commit(self, offsets, asynchronous=True) -> None:
        self.broker.commits[self.group] = offsets[0]

    def close(self) -> None:
        pass


class FakeDecisions:
    """The approvals topic: decisions appear when ``arrive`` puts them there, and the listener's own are kept."""

    def __init__(self, decisions: Decisions):
        self.topic, self.decisions, self.incoming, self.written = "approvals", decisions, [], []

    def open(self) -> None:
        self.poll()

    def poll(self, timeout_s: float = 0.0) -> int:
        new = sum(self.decisions.add(r) for r in self.incoming)
        self.incoming.clear()
        return new

    def write(self, record: dict) -> None:
        self.written.append(record)

    def close(self) -> None:
        pass


def decide(n: int, decision: str) -> dict:
    return decision_record(event(n), decision, "alice", None, AT)


def run(broker: Broker, decided: list[dict], stop_at: int, **options) -> tuple[RetrainListener, list[str]]:
    """A listener with --require-approval on ``broker`` for ``stop_at`` polls; its hook calls (alert ids)."""
    calls: list[str] = []
    settings = load_settings(poll_timeout_s=0.01, topics={"alerts": TOPIC})
    retrain = RetrainListener(
        settings, lambda e: calls.append(e["alert_id"]), require_approval=True, debounce_s=0, **options
    )
    retrain.approvals = FakeDecisions(retrain.decisions)  # type: ignore[assignment]
    retrain.approvals.incoming.extend(decided)
    broker.script[stop_at] = retrain.stop
    return retrain, calls


@pytest.fixture
def fake_kafka(monkeypatch):
    def install(broker: Broker) -> None:
        monkeypatch.setattr(listener, "Consumer", lambda config: FakeConsumer(broker, config))

    return install


def test_past_the_cap_the_partition_waits_and_a_decision_lets_it_go_on(fake_kafka, monkeypatch):
    monkeypatch.setattr(listener, "MAX_HELD", 2)
    broker = Broker([event(n) for n in range(4)])
    fake_kafka(broker)
    retrain, calls = run(broker, [], stop_at=6)
    broker.script[3] = lambda: retrain.approvals.incoming.append(decide(1, "approve"))
    retrain.run()
    state = retrain.partitions[0]
    # a0 and a1 held, a2 over the cap: paused; a1 approved: called, the partition resumed, a2 held in its place,
    # a3 over the cap again
    assert calls == ["a1"]
    assert sorted(state.held) == [0, 2] and state.full
    assert retrain.counts.held == 3 and retrain.counts.triggered == 1
    commit = broker.commits[retrain.group_id]
    assert (commit.offset, approvals.handled_beyond(commit.offset, commit.metadata)) == (0, (3, frozenset({0, 2})))


def test_a_decision_read_before_its_event_acts_at_once_and_a_restart_calls_no_hook_twice(fake_kafka):
    broker = Broker([event(0), event(1), event(2, action="investigate"), event(3), event(4)])
    fake_kafka(broker)
    first, calls = run(broker, [decide(1, "approve"), decide(3, "reject")], stop_at=3)
    first.run()
    assert calls == ["a1"]  # a0 and a4 held, a3 rejected, a2 not a retrain
    assert (first.counts.held, first.counts.rejected, first.counts.ignored) == (2, 1, 1)
    assert broker.commits[first.group_id].offset == 0  # a0 is undecided: a restart reads it again

    # restarted (the decisions read again from the topic), a4 approved meanwhile: a1 is not called again
    second, calls = run(broker, [decide(1, "approve"), decide(3, "reject"), decide(4, "approve")], stop_at=3)
    second.run()
    assert calls == ["a4"] and second.counts.replayed == 3  # a1, a2, a3: handled beyond the commit
    assert sorted(second.partitions[0].held) == [0]
    assert broker.commits[second.group_id].offset == 0


def test_the_timeout_decides_and_records_it_before_acting(fake_kafka):
    broker = Broker([event(0), event(1)])
    fake_kafka(broker)
    # the records were published long ago (Msg.timestamp): a second's timeout has passed; a1 was decided
    retrain, calls = run(broker, [decide(1, "reject")], stop_at=3, approval_timeout_s=1.0, on_timeout="approve")
    retrain.run()
    assert calls == ["a0"] and retrain.counts.timed_out == 1 and retrain.counts.rejected == 1
    (written,) = retrain.approvals.written
    assert (written["alert_id"], written["decision"], written["by"], written["source"]) == (
        "a0",
        "approve",
        "streamdrift (timeout)",
        "timeout",
    )
    assert broker.commits[retrain.group_id].offset == 2
