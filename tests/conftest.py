"""Shared pytest fixtures.

Kafka tests request ``kafka_bootstrap`` and are marked ``@pytest.mark.kafka``.
Set ``STREAMDRIFT_TEST_BOOTSTRAP=host:port`` to use an existing broker instead
of starting one (scripts/kafka, real Apache Kafka from Maven Central). If no
broker can be had, those tests are skipped locally but FAIL when ``CI=true``.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from kafka_broker import BrokerStartError, broker_unavailable, start_broker, wait_ready

# Distinguishes this session's topics/groups from earlier runs on a shared broker.
_SESSION_TOKEN = uuid.uuid4().hex[:6]
_name_counter = itertools.count(1)

# Hypothesis profiles. "ci": the same examples on every run (derandomized, no example database),
# bounded, chosen when CI=true; "long": ten times as many, random, for `--hypothesis-profile long`.
# Tests set their own deadline (None where one example replays a whole stream).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=200,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running Kafka broker for the whole test session."""
    external = os.environ.get("STREAMDRIFT_TEST_BOOTSTRAP", "").strip()
    if external:
        try:
            wait_ready(external, timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure means "no broker"
            broker_unavailable(f"STREAMDRIFT_TEST_BOOTSTRAP={external} is not reachable: {exc}")
        yield external
        return

    try:
        broker = start_broker(tmp_path_factory.mktemp("kafka-session"))
    except (BrokerStartError, OSError) as exc:
        broker_unavailable(str(exc))
    try:
        wait_ready(broker.bootstrap, timeout=30)
    except Exception as exc:  # noqa: BLE001
        broker.stop()
        broker_unavailable(f"broker started but does not answer at {broker.bootstrap}: {exc}")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory for topic / group names unique to this test and session.

    ``unique_name("topic")`` -> ``"sd-test_foo-topic-3fa2c1-7"``; every call
    returns a new name. Only Kafka-legal characters (``[A-Za-z0-9._-]``).
    """
    test = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:80]

    def make(kind: str = "t") -> str:
        kind = re.sub(r"[^A-Za-z0-9_-]+", "-", kind) or "t"
        return f"sd-{test}-{kind}-{_SESSION_TOKEN}-{next(_name_counter)}"

    return make
