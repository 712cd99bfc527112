"""``streamdrift topics create|check``: the Kafka topics, their co-partitioning, the state and approvals topics, and
routing.

``check`` also samples the latest records of each input partition (``--sample`` per partition, read without
committing anything) and says per topic which share is misrouted, i.e. not on the partition murmur2 maps its
key (or, for a null key, its ``model_id``) to, and which partitioner its producers most likely use
(``core/routing.py``). The worker forwards misrouted records (``misrouted = "forward"``), at the price of writing
them twice: fixing the producers is better.
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from streamdrift.core.routing import Router, consistent_partition, likely_partitioner
from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings

SAMPLE_TIMEOUT_S = 15.0  # reading the samples of every partition, at most


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doc = "Manage the Kafka topics."
    p = subparsers.add_parser("topics", help=doc, description=doc, parents=[common])
    p.add_argument("action", choices=["create", "check"])
    p.add_argument("--partitions", type=int, help="partitions of every topic (default: topics.partitions)")
    p.add_argument("--sample", type=int, default=200, help="check: latest records read per input partition (0: none)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "create":
        created = kafka.create_topics(settings, args.partitions)
        print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
    n = kafka.check_topics(settings)
    print(f"topics ok: {settings.topics.predictions} and {settings.topics.feedback} have {n} partitions each")
    if settings.state_store == "kafka":  # check_topics checked it
        print(f"state topic ok: {settings.topics.state} is compacted and has {n} partitions")
    approvals = kafka.check_approvals_topic(kafka.admin(settings), settings.topics.approvals)
    print(f"approvals topic ok: {settings.topics.approvals} is compacted and has {approvals} partition(s)")
    for line in kafka.future_timestamp_warnings(settings, kafka.admin(settings)):
        print(f"warning: {line}")
    if args.action == "check" and args.sample > 0:
        for topic in (settings.topics.predictions, settings.topics.feedback):
            print(sample_routing(settings, topic, n, args.sample).report(settings.misrouted))
    return 0


@dataclass
class RoutingSample:
    """How the latest records of one topic are placed."""

    topic: str
    records: int = 0
    misrouted: int = 0  # not on their murmur2 partition
    murmur2: int = 0  # keyed, on their murmur2 partition where CRC32 would have put them elsewhere
    null_keys: int = 0  # of them, with a null key
    consistent: int = 0  # of them, keyed and where librdkafka's CRC32 maps the key

    def add(self, partition: int, key: bytes | None, value: bytes | None, router: Router) -> None:
        home = router.partition(key, value)
        self.records += 1
        if home is None or home == partition:
            if home is not None and key is not None and consistent_partition(key, router.partitions) != partition:
                self.murmur2 += 1
            return
        self.misrouted += 1
        if key is None:
            self.null_keys += 1
        elif consistent_partition(key, router.partitions) == partition:
            self.consistent += 1

    def report(self, action: str) -> str:
        """One line: the share misrouted, the likely partitioner, what the worker does and the fix.

        >>> print(RoutingSample("feedback", 300, 180, 0, 0, 180).report("forward"))
        feedback: 180 of 300 latest records misrouted (60.0%); producers' partitioner: consistent_random (CRC32); \
the worker forwards them to their partition (misrouted = "forward", written twice): produce with \
partitioner=murmur2_random (librdkafka clients) or the Java client's default
        """
        if not self.records:
            return f"{self.topic}: no records to sample"
        unknown = self.misrouted - self.null_keys - self.consistent
        likely = likely_partitioner(self.murmur2, self.consistent, self.null_keys, unknown)
        share = f"{100 * self.misrouted / self.records:.1f}%"
        line = (
            f"{self.topic}: {self.misrouted} of {self.records} latest records misrouted ({share}); "
            f"producers' partitioner: {likely}"
        )
        if not self.misrouted:
            return line
        does = {
            "forward": 'forwards them to their partition (misrouted = "forward", written twice)',
            "dead_letter": 'dead-letters them (misrouted = "dead_letter")',
            "process": 'processes them where they are (misrouted = "process": their labels may never join)',
        }[action]
        return (
            f"{line}; the worker {does}: produce with partitioner=murmur2_random (librdkafka clients) "
            "or the Java client's default"
        )


def sample_routing(settings: Settings, topic: str, partitions: int, per_partition: int) -> RoutingSample:
    """Read the latest ``per_partition`` records of every partition of ``topic`` (no group, nothing committed)."""
    consumer = Consumer(
        kafka.consumer_config(settings, **{"group.id": f"{settings.group_id}.topics-check.{uuid.uuid4().hex[:8]}"})
    )
    out = RoutingSample(topic)
    router = Router(partitions)
    try:
        ends: dict[int, int] = {}
        assigned = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assigned.append(TopicPartition(topic, p, max(low, high - per_partition)))
        consumer.assign(assigned)
        deadline = time.monotonic() + SAMPLE_TIMEOUT_S
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is not None:
                    continue
                part, offset = msg.partition(), msg.offset()
                assert part is not None and offset is not None  # a message without an error has both
                if part in ends:
                    out.add(part, msg.key(), msg.value(), router)
                    if offset + 1 >= ends[part]:
                        del ends[part]
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:  # the rest were transaction markers
                    del ends[tp.partition]
    finally:
        consumer.close()
    return out
