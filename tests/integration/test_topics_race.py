"""``streamdrift topics create`` run twice at once, on a real broker: the topics the other run made between this
run's look at the topics and its create are fine, and the check that follows verifies them as any other."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from streamdrift.runtime import kafka
from streamdrift.runtime.errors import StateTopicError
from streamdrift.runtime.settings import Settings, load_settings

pytestmark = pytest.mark.kafka


class OtherCreatorAfterTheLook:
    """The broker's AdminClient, but right after the first look at the topics (``list_topics``) another creator
    (``other``, with its own client) makes topics: the race of two runs, at its narrowest point, every time."""

    def __init__(self, settings: Settings, other: Callable[[], list[str]]):
        self.admin = kafka.admin(settings)
        self.other = other
        self.other_created: list[str] | None = None

    def list_topics(self, *args, **kwargs):
        metadata = self.admin.list_topics(*args, **kwargs)
        if self.other_created is None:
            self.other_created = self.other()
        return metadata

    def __getattr__(self, name: str):
        return getattr(self.admin, name)


def fresh_settings(bootstrap: str, name: str) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        state_store="kafka",
        topics={
            "predictions": f"{name}.predictions",
            "feedback": f"{name}.feedback",
            "alerts": f"{name}.alerts",
            "dead_letter": f"{name}.dead-letter",
            "state": f"{name}.state",
            "approvals": f"{name}.approvals",
            "partitions": 2,
        },
    )


def test_topics_another_run_created_between_the_look_and_the_create_are_fine(kafka_bootstrap, unique_name):
    settings = fresh_settings(kafka_bootstrap, unique_name("sd"))
    racing = OtherCreatorAfterTheLook(settings, lambda: kafka.create_topics(settings))
    created = kafka.create_topics(settings, client=racing)
    t = settings.topics
    assert racing.other_created == [t.predictions, t.feedback, t.alerts, t.dead_letter, t.approvals, t.state]
    assert created == []  # all of them were the other run's
    assert kafka.check_topics(settings) == 2  # inputs co-partitioned, the state topic compacted with 2 partitions


def test_a_topic_another_creator_made_otherwise_is_still_refused_by_the_check(kafka_bootstrap, unique_name):
    settings = fresh_settings(kafka_bootstrap, unique_name("sd"))
    t = settings.topics

    def by_hand() -> list[str]:  # a state topic that deletes by age, made meanwhile
        admin = kafka.admin(settings)
        for future in admin.create_topics([NewTopic(t.state, 2, 1)], operation_timeout=30).values():
            future.result()
        return [t.state]

    created = kafka.create_topics(settings, client=OtherCreatorAfterTheLook(settings, by_hand))
    assert created == [t.predictions, t.feedback, t.alerts, t.dead_letter, t.approvals]
    with pytest.raises(StateTopicError, match=f"state topic {t.state} has cleanup.policy=delete, not compact"):
        kafka.check_topics(settings)


def test_any_other_creation_error_still_stops_it(kafka_bootstrap, unique_name):
    settings = fresh_settings(kafka_bootstrap, unique_name("sd"))
    settings = settings.model_copy(update={"topics": settings.topics.model_copy(update={"replication_factor": 3})})
    with pytest.raises(KafkaException, match="INVALID_REPLICATION_FACTOR"):
        kafka.create_topics(settings)  # one broker
