"""Human approval of retrain events: decision records, and the approvals topic that holds them.

A **decision** is one record on the approvals topic (``topics.approvals``, default ``streamdrift.approvals``,
compacted, one partition, made by ``streamdrift topics create``), key = the alert id, value = a JSON object
(``schemas/approval_decision.schema.json``)::

    {"format": 1, "alert_id": "...", "model_id": "...", "kind": "...", "action": "retrain",
     "decision": "approve", "by": "alice", "reason": "checked the training window", "decided_at": "...Z",
     "source": "cli"}

``streamdrift approve`` / ``reject`` write them (``source: "cli"``), and so does a listener whose
``--approval-timeout-s`` passed (``source: "timeout"``, ``by: "streamdrift (timeout)"``), so an event nobody looked
at leaves the same trail as one somebody did. A decision names ids, its author, the time and the author's reason,
never a value of the data. Decisions are final: the command refuses a second one for an alert, and a reader keeps
the *first* decision it reads for an alert id (``Decisions``): the one a listener acted on. The topic is
the audit trail: compaction keeps one record per alert id, the decision.

**Holding** (``holding.py``). A listener with ``--require-approval`` keeps each undecided retrain event in
memory and goes on with the records behind it; it commits the alerts offset of the first event still held, with
what it handled beyond it in the commit's metadata.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import OrderedDict
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streamdrift.core.errors import StreamdriftError
from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings

DECISION_FORMAT = 1
APPROVE, REJECT = "approve", "reject"
DECIDED = {APPROVE: "approved", REJECT: "rejected"}
TIMEOUT_AUTHOR = "streamdrift (timeout)"
MAX_AUTHOR_CHARS = 128
MAX_REASON_CHARS = 1024
MAX_DECISIONS = 100_000  # remembered by a reader, the latest ones
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
log = logging.getLogger("streamdrift.retrain")


class DecisionError(ValueError):
    """A decision that cannot be written: the message names the field and the rule."""


def decision_record(
    event: dict[str, Any], decision: str, by: str, reason: str | None, decided_at: str, source: str = "cli"
) -> dict[str, Any]:
    """The approvals topic's record of ``decision`` on the drift ``event``; ``DecisionError`` if it is not one.

    >>> event = {"alert_id": "a1", "model_id": "churn", "kind": "concept_drift", "action": "retrain"}
    >>> record = decision_record(event, "approve", "alice", "window checked", "2026-12-05T00:00:00.000Z")
    >>> record["decision"], record["by"], record["source"], sorted(record) == sorted(parse_decision(record_bytes(record)))
    ('approve', 'alice', 'cli', True)
    >>> decision_record(event, "approve", "bob\\n", None, "2026-12-05T00:00:00.000Z")
    Traceback (most recent call last):
    ...
    streamdrift.retrain.approvals.DecisionError: --by holds a control character
    """
    if decision not in DECIDED:
        raise DecisionError(f"a decision is approve or reject, not {decision!r}")
    _check_text("--by", by, MAX_AUTHOR_CHARS, required=True)
    if reason is not None:
        _check_text("--reason", reason, MAX_REASON_CHARS, required=False, newlines=True)
    return {
        "format": DECISION_FORMAT,
        "alert_id": event["alert_id"],
        "model_id": event["model_id"],
        "kind": event.get("kind"),
        "action": event["action"],
        "decision": decision,
        "by": by,
        "reason": reason or None,
        "decided_at": decided_at,
        "source": source,
    }


def _check_text(name: str, value: str, limit: int, required: bool, newlines: bool = False) -> None:
    if required and not value.strip():
        raise DecisionError(f"{name} is empty: say who decides")
    if len(value) > limit:
        raise DecisionError(f"{name} is longer than {limit} characters")
    control = _CONTROL.search(value.replace("\n", "") if newlines else value)
    if control is not None:
        raise DecisionError(f"{name} holds a control character")


def record_bytes(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def parse_decision(value: bytes | None) -> dict[str, Any] | None:
    """The decision in an approvals record, or None for anything else (a tombstone, another format, junk)."""
    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("format") != DECISION_FORMAT:
        return None
    if record.get("decision") not in DECIDED or not isinstance(record.get("alert_id"), str):
        return None
    if not isinstance(record.get("by"), str):
        return None
    return record


class Decisions:
    """The decisions read so far: alert id -> the first decision read for it (decisions are final).

    >>> d = Decisions(remember=2)
    >>> [d.add({"alert_id": a, "decision": x}) for a, x in (("a1", "approve"), ("a1", "reject"), ("a2", "reject"))]
    [True, False, True]
    >>> d.get("a1")["decision"], d.add({"alert_id": "a3", "decision": "approve"}), d.get("a1")
    ('approve', True, None)
    """

    def __init__(self, remember: int = MAX_DECISIONS):
        self.remember = remember
        self._by_alert: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, record: dict[str, Any]) -> bool:
        """Note ``record``; False if its alert had a decision already (kept)."""
        if record["alert_id"] in self._by_alert:
            return False
        self._by_alert[record["alert_id"]] = record
        while len(self._by_alert) > self.remember:
            self._by_alert.popitem(last=False)
        return True

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self._by_alert.get(alert_id)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_alert.values())

    def __len__(self) -> int:
        return len(self._by_alert)


# -- the Kafka shell -------------------------------------------------------


class DecisionLog:
    """The approvals topic, read whole (no group, nothing committed) into ``decisions``, and written to.

    Parameters
    ----------
    settings
        Connection settings.
    topic
        The approvals topic.
    decisions
        Where the decisions read go.
    """

    def __init__(self, settings: Settings, topic: str, decisions: Decisions):
        self.settings = settings
        self.topic = topic
        self.decisions = decisions
        self.malformed = 0
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    def open(self, timeout_s: float = 60.0) -> None:
        """Read the topic to its end; ``StreamdriftError`` if it is missing or cannot be read in ``timeout_s``."""
        partitions = kafka.check_approvals_topic(kafka.admin(self.settings), self.topic)
        self._consumer = Consumer(
            kafka.consumer_config(
                self.settings,
                **{
                    "group.id": f"streamdrift-approvals-reader-{uuid.uuid4().hex[:8]}",  # never commits
                    "isolation.level": "read_committed",
                    "logger": logging.getLogger("streamdrift.retrain.kafka"),
                },
            )
        )
        ends = {}
        for p in range(partitions):
            _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
            ends[p] = high
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll(0.2)
            positions = self._consumer.position([TopicPartition(self.topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions):
                return
            if time.monotonic() > deadline:
                raise StreamdriftError(f"approvals topic {self.topic!r}: not read to its end in {timeout_s:g} s")

    def poll(self, timeout_s: float = 0.0) -> int:
        """Read what has come; return the number of new decisions."""
        assert self._consumer is not None, "open() first"
        new = 0
        for msg in self._consumer.consume(500, timeout_s):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise StreamdriftError(f"fatal error reading {self.topic!r}: {err}")
                continue
            record = parse_decision(msg.value())
            if record is None:
                self.malformed += 1
                continue
            new += self.decisions.add(record)
        return new

    def write(self, record: dict[str, Any]) -> None:
        """Produce ``record`` (key = its alert id) and wait until it is stored; ``StreamdriftError`` if not."""
        if self._producer is None:
            self._producer = Producer(kafka.producer_config(self.settings, **{"linger.ms": 0}))
        errors: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        self._producer.produce(self.topic, record_bytes(record), record["alert_id"].encode(), on_delivery=delivered)
        if self._producer.flush(30) or errors:
            raise StreamdriftError(
                f"decision on {record['alert_id']} not written to {self.topic!r}: {errors or 'timeout'}"
            )

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.flush(30)
