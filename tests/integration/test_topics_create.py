"""``create_topics`` on a real broker: it returns once the broker's metadata lists what it created, and with
nothing to create it only looks.

A broker acknowledges CreateTopics when its controller has committed the topics; its metadata cache, which answers
``list_topics``, catches up a moment later (KRaft applies the records asynchronously). ``streamdrift topics create``
checks the topics right after creating them, so without the wait it could say that the topics it had just created
"do not exist" (seen on a loaded machine, in the integration tests' setup). That moment cannot be made to happen
on demand on a real broker: the first test pins what follows a creation, and the wait's loop itself,
``kafka.poll_until``, is pinned by its doctest.
"""

from __future__ import annotations

import pytest

from streamdrift.runtime import kafka
from streamdrift.runtime.settings import Settings, load_settings

pytestmark = pytest.mark.kafka


class CountingAdmin:
    """The broker's AdminClient, counting the metadata requests (``list_topics``) made through it."""

    def __init__(self, settings: Settings):
        self.admin = kafka.admin(settings)
        self.metadata_requests = 0

    def list_topics(self, *args, **kwargs):
        self.metadata_requests += 1
        return self.admin.list_topics(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.admin, name)


def fresh_settings(bootstrap: str, name: str) -> Settings:
    names = ("predictions", "feedback", "alerts", "dead_letter", "state", "approvals")
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        state_store="local",
        topics={**{t: f"{name}.{t}" for t in names}, "partitions": 2},
    )


def test_create_topics_returns_once_the_metadata_lists_them_and_with_nothing_to_create_only_looks(
    kafka_bootstrap, unique_name
):
    settings = fresh_settings(kafka_bootstrap, unique_name("sd"))
    t = settings.topics
    created = kafka.create_topics(settings)
    assert created == [t.predictions, t.feedback, t.alerts, t.dead_letter, t.approvals]
    # what `streamdrift topics create` does next, with a client of its own: the four topics are there,
    # co-partitioned; the approvals topic has one partition (a few decisions, every retrain listener reads it whole)
    assert kafka.partition_counts(kafka.admin(settings), created) == {**dict.fromkeys(created[:4], 2), t.approvals: 1}

    counting = CountingAdmin(settings)
    assert kafka.create_topics(settings, client=counting) == []
    assert counting.metadata_requests == 1  # the look at the existing topics, and no wait
