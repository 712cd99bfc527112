"""Human approval of retrain events on a real broker (issue 23 item 3): ``retrain-listener --require-approval``
holds retrain events until ``streamdrift approve`` / ``reject`` decides, across a SIGKILL, and decides itself
after ``--approval-timeout-s``; past its cap on held events a partition is paused and rewound, and a decision lets
it go on; a restart replays what was handled beyond the commit. The bookkeeping without the consumer:
``tests/unit/test_holding.py``."""

from __future__ import annotations

import os
import signal

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from test_retrain import T0, _in_thread, committed, drift, produce, record, wait_for

from streamdrift.retrain.approvals import DecisionLog, Decisions, decision_record
from streamdrift.retrain.listener import RetrainListener
from streamdrift.runtime.settings import load_settings
from worker_process import ListenerProcess, read_topic, streamdrift

DECISION_FIELDS = {
    "format",
    "alert_id",
    "model_id",
    "kind",
    "action",
    "decision",
    "by",
    "reason",
    "decided_at",
    "source",
}


@pytest.fixture
def approval(kafka_bootstrap, unique_name, tmp_path):
    """A fresh alerts topic (one partition) and approvals topic; ``start`` runs listeners (killed at the end),
    ``cli`` runs ``streamdrift`` commands against them."""
    alerts, approvals = unique_name("alerts"), unique_name("approvals")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [NewTopic(alerts, 1, 1), NewTopic(approvals, 1, 1, config={"cleanup.policy": "compact"})]
    for future in admin.create_topics(topics, operation_timeout=30).values():
        future.result()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env.update(
        {
            "STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "STREAMDRIFT_TOPICS__ALERTS": alerts,
            "STREAMDRIFT_TOPICS__APPROVALS": approvals,
            "STREAMDRIFT_POLL_TIMEOUT_S": "0.2",
            # a SIGKILLed member holds its partitions until its session expires: keep that short
            "STREAMDRIFT_KAFKA__EXTRA": '{"session.timeout.ms": "6000"}',
        }
    )
    started: list[ListenerProcess] = []

    def start(name: str, *args: str) -> ListenerProcess:
        listener = ListenerProcess(env, tmp_path / name, *args)
        started.append(listener)
        return listener

    def cli(*args: str):
        return streamdrift(env, *args, timeout=120)

    yield alerts, approvals, start, cli
    for listener in started:
        listener.stop(signal.SIGKILL)


def _log(listener: ListenerProcess, msg: str) -> list[dict]:
    return [line for line in map(orjson.loads, listener.log().splitlines()) if line.get("msg") == msg]


def _stopped_counts(listener: ListenerProcess) -> dict:
    (totals,) = _log(listener, "retrain listener stopped")
    return {k: totals[k] for k in ("triggered", "held", "approved", "rejected", "timed_out", "replayed", "ignored")}


@pytest.mark.kafka
def test_a_held_event_survives_sigkill_then_approve_calls_the_hook_once_and_reject_never(approval, kafka_bootstrap):
    alerts, approvals, start, cli = approval
    group = f"{alerts}.retrain"
    e1 = drift("credit-risk", "retrain", T0, 100)
    e2 = drift("churn", "retrain", T0 + 5, 100)
    e3 = drift("fraud", "retrain", T0 + 10, 100)
    skipped = drift("churn", "investigate", T0 + 20, 200)
    produce(kafka_bootstrap, alerts, [record(e) for e in (e1, e2, e3, skipped)])
    args = ("--group", group, "--require-approval", "--debounce-s", "0")

    first = start("first", *args)
    wait_for(lambda: len(_log(first, "waiting for approval")) == 3, 60, "three events held", first.log)
    wait_for(lambda: committed(kafka_bootstrap, group, alerts, 1) == [0], 30, "the commit at the first held", first.log)
    listed = cli("approvals", "list", "--group", group, "--json")
    assert listed.returncode == 0, listed.stderr
    pending = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert [(p["status"], p["alert_id"], p["offset"]) for p in pending] == [
        ("pending", e["alert_id"], i) for i, e in enumerate((e1, e2, e3))
    ]

    # an event behind the first held one does not wait for it
    approved = cli("approve", e2["alert_id"], "--by", "alice", "--reason", "training window checked", "--group", group)
    assert approved.returncode == 0, approved.stderr
    wait_for(lambda: len(first.calls()) == 1, 60, "the approved event's hook call", first.log)
    assert first.calls() == [e2]
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert committed(kafka_bootstrap, group, alerts, 1) == [0]  # e1 is still undecided: a restart must see it

    second = start("second", *args)
    wait_for(lambda: len(_log(second, "waiting for approval")) == 2, 60, "e1 and e3 held again", second.log)
    assert [h["alert_id"] for h in _log(second, "waiting for approval")] == [e1["alert_id"], e3["alert_id"]]
    listed = cli("approvals", "list", "--group", group, "--json")
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["status"], r["alert_id"]) for r in rows] == [
        ("pending", e1["alert_id"]),
        ("pending", e3["alert_id"]),
        ("approved", e2["alert_id"]),
    ]
    assert (rows[2]["by"], rows[2]["reason"]) == ("alice", "training window checked")

    assert cli("approve", e1["alert_id"], "--by", "bob", "--group", group).returncode == 0
    wait_for(lambda: len(second.calls()) == 1, 60, "e1's hook call", second.log)
    rejected = cli("reject", e3["alert_id"], "--by", "carol", "--reason", "a holiday, not a drift", "--group", group)
    assert rejected.returncode == 0, rejected.stderr
    wait_for(lambda: committed(kafka_bootstrap, group, alerts, 1) == [4], 60, "all decided and committed", second.log)

    again = cli("approve", e3["alert_id"], "--by", "dave", "--group", group)
    assert again.returncode == 2 and "rejected by carol" in again.stderr and "final" in again.stderr
    unknown = cli("approve", "0" * 32, "--by", "dave", "--group", group)
    assert unknown.returncode == 2 and "nothing written" in unknown.stderr
    assert second.stop() == 0
    assert (first.calls(), second.calls()) == ([e2], [e1])  # e2 once (before the kill), e1 once, e3 never
    assert _stopped_counts(second) == {
        "triggered": 1,
        "held": 2,
        "approved": 1,
        "rejected": 1,
        "timed_out": 0,
        "replayed": 2,  # e2 and the investigate event, handled before the kill beyond the commit (its metadata)
        "ignored": 0,
    }
    trail = [orjson.loads(r.value) for r, _ in read_topic(kafka_bootstrap, approvals, expect=3)]
    assert [(d["alert_id"], d["decision"], d["by"], d["source"]) for d in trail] == [
        (e2["alert_id"], "approve", "alice", "cli"),
        (e1["alert_id"], "approve", "bob", "cli"),
        (e3["alert_id"], "reject", "carol", "cli"),
    ]
    assert all(set(d) == DECISION_FIELDS for d in trail)  # ids, author, time and reason: no value of the data


@pytest.mark.kafka
def test_events_nobody_decides_on_are_decided_by_the_timeout_and_recorded(approval, kafka_bootstrap):
    alerts, approvals, start, _ = approval
    a = drift("credit-risk", "retrain", T0, 100)
    b = drift("churn", "retrain", T0, 100)
    produce(kafka_bootstrap, alerts, [record(a), record(b)])
    timeout = ("--require-approval", "--approval-timeout-s", "1", "--debounce-s", "0")
    rejecting = start("rejecting", "--group", f"{alerts}.reject", *timeout)  # --on-timeout reject by default
    wait_for(
        lambda: committed(kafka_bootstrap, f"{alerts}.reject", alerts, 1) == [2], 60, "both timed out", rejecting.log
    )
    assert rejecting.stop() == 0
    assert rejecting.calls() == []
    assert _stopped_counts(rejecting)["timed_out"] == 2 and _stopped_counts(rejecting)["rejected"] == 2

    # a decision is about the alert, whoever wrote it: another group skips a and b too; c times out approved
    c = drift("fraud", "retrain", T0 + 60, 100)
    produce(kafka_bootstrap, alerts, [record(c)])
    approving = start("approving", "--group", f"{alerts}.approve", *timeout, "--on-timeout", "approve")
    wait_for(lambda: committed(kafka_bootstrap, f"{alerts}.approve", alerts, 1) == [3], 60, "c approved", approving.log)
    assert approving.stop() == 0
    assert approving.calls() == [c]
    trail = [orjson.loads(r.value) for r, _ in read_topic(kafka_bootstrap, approvals, expect=3)]
    assert [(d["alert_id"], d["decision"], d["by"], d["source"]) for d in trail] == [
        (a["alert_id"], "reject", "streamdrift (timeout)", "timeout"),
        (b["alert_id"], "reject", "streamdrift (timeout)", "timeout"),
        (c["alert_id"], "approve", "streamdrift (timeout)", "timeout"),
    ]
    assert trail[0]["reason"] == "no decision within 1 s of its publication"


@pytest.mark.kafka
def test_a_missing_or_deleting_approvals_topic_stops_the_listener_at_start_naming_it(approval, kafka_bootstrap):
    alerts, approvals, start, _ = approval
    deleting = approvals + ".deleting"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(deleting, 1, 1)], operation_timeout=30).values():
        future.result()
    for topic, says in (
        (approvals + ".missing", "does not exist"),
        (deleting, "has cleanup.policy=delete, not compact"),
    ):
        listener = start(topic, "--require-approval", "--approvers-topic", topic)
        assert listener.proc.wait(60) == 2
        assert f"approvals topic {topic!r} {says}" in listener.log()


def _commit(bootstrap: str, group: str, topic: str) -> tuple[int, str | None]:
    """The group's committed offset of partition 0 and its metadata."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset, tp.metadata
    finally:
        c.close()


def _wait_for_commit(bootstrap: str, group: str, topic: str, expected: tuple[int, str], what: str) -> None:
    wait_for(
        lambda: _commit(bootstrap, group, topic) == expected,
        60,
        what,
        lambda: f"last commit: {_commit(bootstrap, group, topic)}",
    )


def _decide(bootstrap: str, approvals: str, event: dict, decision: str) -> None:
    """What `streamdrift approve` / `reject` writes (without its checks: the events need not be read yet)."""
    settings = load_settings(kafka={"bootstrap_servers": bootstrap})
    log = DecisionLog(settings, approvals, Decisions())
    log.write(decision_record(event, decision, "alice", None, "2026-12-05T00:00:00.000Z"))
    log.close()


class _InThread:
    """A ``RetrainListener --require-approval`` in a thread of the test, with a Python hook that notes the
    alert ids it is called with."""

    def __init__(self, bootstrap: str, alerts: str, approvals: str, group: str, **options: object):
        settings = load_settings(
            kafka={"bootstrap_servers": bootstrap},
            topics={"alerts": alerts, "approvals": approvals},
            poll_timeout_s=0.2,
        )
        self.calls: list[str] = []
        self.listener = RetrainListener(
            settings,
            lambda event: self.calls.append(event["alert_id"]),
            group_id=group,
            require_approval=True,
            debounce_s=0,
            **options,
        )
        self.thread, self.errors = _in_thread(self.listener)

    def held(self) -> list[int]:
        state = self.listener.partitions.get(0)
        return [] if state is None else sorted(state.holding.held)

    def stop(self) -> None:
        self.listener.stop()
        self.thread.join(30)
        assert not self.errors and not self.thread.is_alive()


@pytest.mark.kafka
def test_past_the_cap_the_partition_is_paused_and_rewound_and_a_decision_lets_it_go_on(approval, kafka_bootstrap):
    alerts, approvals, _, _ = approval
    group = f"{alerts}.retrain"
    events = [drift(f"model-{n}", "retrain", T0 + n, 100 + n) for n in range(4)]
    produce(kafka_bootstrap, alerts, [record(e) for e in events])
    ids = [e["alert_id"] for e in events]

    running = _InThread(kafka_bootstrap, alerts, approvals, group, max_held=2)
    try:
        # e0 and e1 held; e2 over the cap: the partition waits, rewound to e2 (e2 and e3 were fetched already)
        wait_for(lambda: running.held() == [0, 1] and running.listener.partitions[0].holding.full, 60, "the cap")
        wait_for(lambda: _commit(kafka_bootstrap, group, alerts)[0] == 0, 30, "the commit at the first held event")
        assert running.listener.counts.held == 2

        _decide(kafka_bootstrap, approvals, events[1], "approve")
        # e1 called; the partition resumed from e2, which takes the room, and e3 is over the cap in its turn
        wait_for(lambda: running.held() == [0, 2] and running.listener.counts.held == 3, 60, "e2 held after e1")
        _wait_for_commit(
            kafka_bootstrap, group, alerts, (0, '{"format":1,"to":3,"held":[2]}'), "e2 held in the metadata"
        )
        assert running.calls == [ids[1]] and running.listener.partitions[0].holding.full
    finally:
        running.stop()
    assert (running.listener.counts.triggered, running.listener.counts.held) == (1, 3)


@pytest.mark.kafka
def test_a_decision_read_before_its_event_acts_at_once_and_a_restart_replays_what_was_handled(
    approval, kafka_bootstrap
):
    alerts, approvals, _, _ = approval
    group = f"{alerts}.retrain"
    e0, e1, e3, e4 = (drift(f"model-{n}", "retrain", T0 + n, 100 + n) for n in (0, 1, 3, 4))
    e2 = drift("model-2", "investigate", T0 + 2, 102)
    produce(kafka_bootstrap, alerts, [record(e) for e in (e0, e1, e2, e3, e4)])
    _decide(kafka_bootstrap, approvals, e1, "approve")
    _decide(kafka_bootstrap, approvals, e3, "reject")

    first = _InThread(kafka_bootstrap, alerts, approvals, group)
    try:
        # e1 approved and e3 rejected before they were read: acted on at once; e0 and e4 held; e2 not a retrain
        _wait_for_commit(kafka_bootstrap, group, alerts, (0, '{"format":1,"to":5,"held":[4]}'), "all five handled")
        assert first.calls == [e1["alert_id"]] and first.held() == [0, 4]
    finally:
        first.stop()
    counts = first.listener.counts
    assert (counts.triggered, counts.held, counts.rejected, counts.ignored) == (1, 2, 1, 1)

    _decide(kafka_bootstrap, approvals, e4, "approve")  # while no listener runs
    second = _InThread(kafka_bootstrap, alerts, approvals, group)
    try:
        # e1, e2 and e3 replayed from the commit's metadata, no call; e0 held again; e4 called
        _wait_for_commit(kafka_bootstrap, group, alerts, (0, '{"format":1,"to":5,"held":[]}'), "e4 called")
        assert second.calls == [e4["alert_id"]] and second.held() == [0]
    finally:
        second.stop()
    counts = second.listener.counts
    assert (counts.replayed, counts.triggered, counts.held, counts.rejected) == (3, 1, 1, 0)
