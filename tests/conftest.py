"""Shared pytest fixtures.

Kafka tests request ``kafka_bootstrap`` and are marked ``@pytest.mark.kafka``.
Set ``STREAMDRIFT_TEST_BOOTSTRAP=host:port`` to use an existing broker instead
of starting one (scripts/kafka, real Apache Kafka from Maven Central). If no
broker can be had, those tests are skipped locally but FAIL when ``CI=true``.

Under pytest-xdist (``make test`` runs ``-n 2``) the workers share one broker: the
controller picks a directory, the first worker that needs Kafka starts the broker
there, and the controller stops it once every worker is done. Tests keep apart by
their names (``unique_name``), never by having a broker of their own.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from kafka_broker import BrokerStartError, broker_unavailable, shared_broker, start_broker, stop_broker, wait_ready

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


# xdist: the directory of the broker the workers share, chosen by the controller (absent without xdist).
_SHARED_BROKER_DIR = pytest.StashKey[Path]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # node: xdist's WorkerController
    """xdist, in the controller: hand every worker the same broker directory."""
    config = node.config
    if _SHARED_BROKER_DIR not in config.stash:
        config.stash[_SHARED_BROKER_DIR] = Path(tempfile.mkdtemp(prefix="streamdrift-kafka-"))
    node.workerinput["streamdrift_kafka_dir"] = str(config.stash[_SHARED_BROKER_DIR])


def pytest_unconfigure(config: pytest.Config) -> None:
    """xdist, in the controller: every worker is done; stop the broker they shared, if one started it."""
    shared = config.stash.get(_SHARED_BROKER_DIR, None)
    if shared is not None:
        if (shared / "kafka").exists():
            stop_broker(shared / "kafka")
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running Kafka broker for the whole test session."""
    external = os.environ.get("STREAMDRIFT_TEST_BOOTSTRAP", "").strip()
    if external:
        try:
            wait_ready(external, timeout=30)
        except Exception as exc:  # noqa: BLE001 - any failure means "no broker"
            broker_unavailable(f"STREAMDRIFT_TEST_BOOTSTRAP={external} is not reachable: {exc}")
        yield external
        return

    workerinput = getattr(request.config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: the broker is shared, and the controller stops it
        try:
            bootstrap = shared_broker(Path(workerinput["streamdrift_kafka_dir"]))
        except (BrokerStartError, OSError) as exc:
            broker_unavailable(str(exc))
        yield bootstrap
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
