"""``create_topics`` returns once the broker's metadata lists what it created.

A broker acknowledges CreateTopics when its controller has committed the topics; its metadata cache, which
answers ``list_topics``, catches up a moment later (KRaft applies the records asynchronously). ``streamdrift
topics create`` checks the topics right after creating them, so without the wait it could say that the topics it
had just created "do not exist" (seen on a loaded machine, in the integration tests' setup).
"""

from __future__ import annotations

from types import SimpleNamespace

from streamdrift.runtime import kafka
from streamdrift.runtime.settings import load_settings


class LaggingAdmin:
    """An AdminClient whose metadata lists a created topic only from the ``lag``-th ``list_topics`` after the
    creation on."""

    def __init__(self, lag: int):
        self.lag = lag
        self.created: dict[str, int] = {}  # topic -> partitions
        self.pending: dict[str, int] = {}  # topic -> list_topics calls until it is listed
        self.calls = 0

    def create_topics(self, new_topics, operation_timeout: float = 0):
        done = SimpleNamespace(result=lambda: None)
        for nt in new_topics:
            self.created[nt.topic] = nt.num_partitions
            self.pending[nt.topic] = self.lag
        return {nt.topic: done for nt in new_topics}

    def list_topics(self, timeout: float = 0):
        self.calls += 1
        listed = {}
        for topic, partitions in self.created.items():
            if self.pending[topic] > 0:
                self.pending[topic] -= 1
                continue
            listed[topic] = SimpleNamespace(partitions=dict.fromkeys(range(partitions)), error=None)
        return SimpleNamespace(topics=listed)


def test_create_topics_returns_once_the_metadata_lists_every_created_topic():
    settings = load_settings(state_store="local")
    client = LaggingAdmin(lag=3)
    created = kafka.create_topics(settings, 2, client=client)
    t = settings.topics
    assert created == [t.predictions, t.feedback, t.alerts, t.dead_letter, t.approvals]
    # what `streamdrift topics create` does next: the four topics are there, co-partitioned; the approvals
    # topic has one partition (a few decisions, every retrain listener reads it whole)
    assert kafka.partition_counts(client, created) == {**dict.fromkeys(created[:4], 2), t.approvals: 1}


def test_create_topics_with_nothing_to_create_asks_the_metadata_once():
    settings = load_settings(state_store="local")
    client = LaggingAdmin(lag=0)
    kafka.create_topics(settings, 2, client=client)
    client.calls = 0
    assert kafka.create_topics(settings, 2, client=client) == []
    assert client.calls == 1
