"""Input topics bound how far ahead of the broker's clock a record may be stamped, on a real broker.

With CreateTime the Kafka timestamp is whatever the producer says; one record (and event) stamped year 9999 would
move its partition's event clock for good: every idle-TTL'd model evicted at its next event, the merge's epoch
stuck there. ``topics create`` sets ``message.timestamp.after.max.ms`` (KIP-937) on the input topics from
``topics.max_timestamp_ahead_s``, so the broker refuses such records; ``topics check`` (and the worker's start)
name input topics that accept more. Kafka 4.x already defaults to one hour (KIP-1030; checked on 4.1.1), 3.6 to
3.9 to unbounded: the tests set a tighter bound than that default, and an unbounded topic explicitly, so that they
pin what streamdrift does, not what the broker defaults to.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import NewTopic

from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings, load_settings

pytestmark = pytest.mark.kafka

LONG_MAX = str(2**63 - 1)  # what Kafka 3.6 to 3.9 default to: unbounded


def settings_for(bootstrap: str, name: str, ahead_s: int) -> Settings:
    names = ("predictions", "feedback", "alerts", "dead_letter", "state", "approvals")
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        state_store="local",
        topics={**{t: f"{name}.{t}" for t in names}, "partitions": 1, "max_timestamp_ahead_s": ahead_s},
    )


def produce_stamped(bootstrap: str, topic: str, ahead_s: float) -> KafkaError | None:
    """Produce one record stamped ``ahead_s`` past now; return the broker's error (None: accepted)."""
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.send.max.retries": 0})
    stamp_ms = int((time.time() + ahead_s) * 1000)
    producer.produce(topic, b"{}", timestamp=stamp_ms, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(30) == 0
    return errors[0]


def test_topics_create_bounds_future_timestamps_and_the_broker_refuses_a_record_two_days_ahead(
    kafka_bootstrap, unique_name
):
    settings = settings_for(kafka_bootstrap, unique_name("sd"), ahead_s=600)
    kafka.create_topics(settings)
    for topic in (settings.topics.predictions, settings.topics.feedback):
        refused = produce_stamped(kafka_bootstrap, topic, ahead_s=2 * 86400)
        assert refused is not None and refused.code() == KafkaError.INVALID_TIMESTAMP
        # 30 minutes ahead: within Kafka 4's default hour, beyond the topic's 10 minutes
        refused = produce_stamped(kafka_bootstrap, topic, ahead_s=1800)
        assert refused is not None and refused.code() == KafkaError.INVALID_TIMESTAMP
        assert produce_stamped(kafka_bootstrap, topic, ahead_s=0) is None
    assert kafka.future_timestamp_warnings(settings, kafka.admin(settings)) == []


def test_topics_check_names_an_input_topic_without_the_bound_and_the_fix(kafka_bootstrap, unique_name):
    settings = settings_for(kafka_bootstrap, unique_name("sd"), ahead_s=3600)
    t = settings.topics
    admin = kafka.admin(settings)
    unbounded = NewTopic(t.predictions, 1, 1, config={kafka.TIMESTAMP_AHEAD_CONFIG: LONG_MAX})
    stamped_by_broker = NewTopic(
        t.feedback, 1, 1, config={kafka.TIMESTAMP_AHEAD_CONFIG: LONG_MAX, "message.timestamp.type": "LogAppendTime"}
    )
    for future in admin.create_topics([unbounded, stamped_by_broker]).values():
        future.result()

    assert kafka.future_timestamp_warnings(settings, admin) == [
        f"input topic {t.predictions} accepts records stamped up to {LONG_MAX} ms ahead of the broker's clock "
        "(message.timestamp.after.max.ms); one record stamped far in the future moves its partition's event "
        f"clock for good. Bound it: kafka-configs --alter --entity-type topics --entity-name {t.predictions} "
        "--add-config message.timestamp.after.max.ms=3600000"
    ]


def test_a_broker_that_does_not_know_the_bound_still_gets_its_input_topics(kafka_bootstrap, unique_name, monkeypatch):
    """A broker before Kafka 3.6 refuses message.timestamp.after.max.ms as an unknown topic config (INVALID_CONFIG):
    ``topics create`` then makes the input topics without it. Shown here with a config name no broker knows."""
    monkeypatch.setattr(kafka, "TIMESTAMP_AHEAD_CONFIG", "message.timestamp.unknown.to.this.broker.ms")
    settings = settings_for(kafka_bootstrap, unique_name("sd"), ahead_s=600)
    t = settings.topics
    created = kafka.create_topics(settings)
    assert sorted(created) == sorted([t.predictions, t.feedback, t.alerts, t.dead_letter, t.approvals])
    assert kafka.partition_counts(kafka.admin(settings), [t.predictions, t.feedback]) == {
        t.predictions: 1,
        t.feedback: 1,
    }
