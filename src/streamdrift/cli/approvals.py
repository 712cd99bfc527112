"""``streamdrift approvals list``, ``streamdrift approve`` and ``streamdrift reject``: decisions on retrain events.

A listener started with ``retrain-listener --require-approval`` holds each retrain event until a decision on the
approvals topic (``topics.approvals``, see ``retrain/approvals.py``) approves it (its hook is called) or rejects
it (it is skipped). ``approvals list`` shows the events a listener group has not handled yet and nobody decided
on (*pending*), then the decisions; ``approve`` / ``reject`` write a decision for an alert the group has not
handled yet, once: decisions are final.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streamdrift.core.errors import StreamdriftError
from streamdrift.core.policy import NEWS, rfc3339
from streamdrift.retrain.approvals import (
    DECIDED,
    DecisionError,
    DecisionLog,
    Decisions,
    decision_record,
)
from streamdrift.retrain.holding import Holding
from streamdrift.retrain.listener import DEFAULT_GROUP, parse
from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings

READ_TIMEOUT_S = 60.0  # reading the alerts a group has not handled, at most


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument(
        "--group", default=DEFAULT_GROUP, help=f"the retrain listener's consumer group (default {DEFAULT_GROUP})"
    )
    group.add_argument("--approvers-topic", metavar="TOPIC", help="the decisions' topic (default topics.approvals)")
    doc = "List retrain events waiting for a decision, and the decisions made."
    p = subparsers.add_parser("approvals", help=doc, description=doc, parents=[common, group])
    p.add_argument("action", choices=["list"])
    p.add_argument("--actions", default="retrain", help="comma-separated actions the listener holds (default retrain)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    for decision, verb in (("approve", "Approve"), ("reject", "Reject")):
        doc = f"{verb} a retrain event held by `retrain-listener --require-approval` (a decision is final)."
        p = subparsers.add_parser(decision, help=doc, description=doc, parents=[common, group])
        p.add_argument("alert_id", metavar="ALERT_ID")
        p.add_argument("--by", required=True, metavar="NAME", help="who decides (kept in the audit trail)")
        p.add_argument("--reason", metavar="TEXT", help="why (kept in the audit trail)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    decisions = Decisions()
    log = DecisionLog(settings, args.approvers_topic or settings.topics.approvals, decisions)
    try:
        log.open()
        if args.command == "approvals":
            return _list(settings, args, decisions)
        return _decide(settings, args, log, decisions)
    finally:
        log.close()


def _list(settings: Settings, args: argparse.Namespace, decisions: Decisions) -> int:
    actions = {a.strip() for a in args.actions.split(",") if a.strip()}
    for partition, offset, published_at, event in unhandled(settings, args.group):
        if event["action"] not in actions or event.get("kind") in NEWS or decisions.get(event["alert_id"]):
            continue
        row = {
            "status": "pending",
            "alert_id": event["alert_id"],
            "model_id": event["model_id"],
            "kind": event.get("kind"),
            "action": event["action"],
            "detected_at": event["detected_at"],
            "published_at": rfc3339(published_at),
            "partition": partition,
            "offset": offset,
        }
        print(
            orjson.dumps(row).decode()
            if args.json
            else f"pending   {row['alert_id']}  {row['model_id']}  {row['kind']}  published {row['published_at']}"
        )
    for record in decisions:
        row = {"status": DECIDED[record["decision"]], **record}
        print(
            orjson.dumps(row).decode()
            if args.json
            else f"{row['status']:<9} {record['alert_id']}  {record['model_id']}  {record.get('kind')}  "
            f"by {record['by']} at {record['decided_at']}" + (f": {record['reason']}" if record.get("reason") else "")
        )
    return 0


def _decide(settings: Settings, args: argparse.Namespace, log: DecisionLog, decisions: Decisions) -> int:
    earlier = decisions.get(args.alert_id)
    if earlier is not None:
        raise StreamdriftError(
            f"alert {args.alert_id} was {DECIDED[earlier['decision']]} by {earlier['by']} at "
            f"{earlier['decided_at']}: a decision is final, nothing written"
        )
    event = next((e for _, _, _, e in unhandled(settings, args.group) if e["alert_id"] == args.alert_id), None)
    if event is None:
        raise StreamdriftError(
            f"no drift event {args.alert_id!r} waits for group {args.group!r} (handled already, or no such alert; "
            "`streamdrift approvals list` shows those that wait): nothing written"
        )
    try:
        record = decision_record(event, args.command, args.by, args.reason, rfc3339(time.time()))
    except DecisionError as exc:
        raise StreamdriftError(str(exc)) from None
    log.write(record)
    print(f"{DECIDED[args.command]} {args.alert_id} ({event['model_id']} {event.get('kind')}) by {args.by}")
    return 0


def unhandled(settings: Settings, group: str) -> list[tuple[int, int, float, dict[str, Any]]]:
    """(partition, offset, publication time, drift event) of the alerts ``group`` has not handled: from its
    committed offsets (the beginning where it has none) to the end, but those its commit's metadata says it
    handled beyond them. Nothing is committed."""
    topic = settings.topics.alerts
    n = kafka.partition_counts(kafka.admin(settings), [topic]).get(topic)
    if not n:
        raise StreamdriftError(f"alerts topic {topic!r} does not exist: create it with `streamdrift topics create`")
    reader = Consumer(kafka.consumer_config(settings, **{"group.id": f"streamdrift-approvals-{uuid.uuid4().hex[:8]}"}))
    grouped = Consumer(kafka.consumer_config(settings, **{"group.id": group}))  # only asked, never joined
    out = []
    try:
        committed = grouped.committed([TopicPartition(topic, p) for p in range(n)], timeout=30)
        skip: dict[int, Holding] = {}  # what the group handled beyond its commit
        ends: dict[int, int] = {}
        assigned = []
        for tp in committed:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=30)
            start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            if tp.offset >= 0:
                skip[tp.partition] = Holding()
                skip[tp.partition].restore(tp.offset, tp.metadata)
            if high > max(tp.offset, low):
                ends[tp.partition] = high
                assigned.append(TopicPartition(topic, tp.partition, start))
        reader.assign(assigned)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while ends:
            if time.monotonic() > deadline:
                raise StreamdriftError(f"alerts topic {topic!r}: not read to its end in {READ_TIMEOUT_S:g} s")
            for msg in reader.consume(500, 0.5):
                part, offset = msg.partition(), msg.offset()
                if msg.error() is not None or part is None or offset is None:
                    continue
                event, _ = parse(msg.value())
                if event is not None and not (part in skip and skip[part].handled_before(offset)):
                    out.append((part, offset, msg.timestamp()[1] / 1000, event))
            for tp in reader.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
    finally:
        reader.close()
        grouped.close()
    return out
