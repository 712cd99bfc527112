"""scripts/kafka: start/status/stop of a real broker, and a restart on the same data dir.

Uses its own broker (own ports, own data dir), not the session ``kafka_bootstrap``.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from kafka_broker import KAFKA_SCRIPT, REPO_ROOT, BrokerStartError, broker_unavailable, start_broker, wait_ready


def _run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKA_SCRIPT), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def test_bad_arguments_print_usage() -> None:
    for args in ((), ("restart",), ("start", "extra")):
        proc = _run_script(*args)
        assert proc.returncode == 2, proc
        assert proc.stderr.strip() == "usage: scripts/kafka start|stop|status"


def test_status_and_stop_without_broker(tmp_path: Path) -> None:
    env = dict(os.environ, KAFKA_DATA_DIR=str(tmp_path / "never-started"), KAFKA_PORT="1")
    status = _run_script("status", env=env)
    assert status.returncode == 3, status
    assert "stopped" in status.stdout
    assert _run_script("stop", env=env).returncode == 0
    assert not (tmp_path / "never-started").exists()  # status/stop create nothing


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"})
    delivered: list[object] = []
    producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: delivered.append(err or msg))
    assert producer.flush(30) == 0
    assert len(delivered) == 1 and not isinstance(delivered[0], Exception), delivered
    assert delivered[0].error() is None  # type: ignore[attr-defined]


def _consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[tuple[bytes, bytes]]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"sd-script-test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    got: list[tuple[bytes, bytes]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return got


@pytest.mark.kafka
def test_start_status_roundtrip_stop_restart(tmp_path: Path) -> None:
    try:
        broker = start_broker(tmp_path / "data")
    except (BrokerStartError, OSError) as exc:
        broker_unavailable(str(exc))
    try:
        assert "started" in broker.start_output
        assert broker.status() == 0
        assert (tmp_path / "data" / "kafka.pid").is_file()
        wait_ready(broker.bootstrap)

        topic = f"sd-script-{uuid.uuid4().hex[:8]}"
        _create_topic(broker.bootstrap, topic)
        _produce(broker.bootstrap, topic, b"k1", b"hello")
        assert _consume_all(broker.bootstrap, topic, expected=1) == [(b"k1", b"hello")]

        broker.stop()
        assert broker.status() == 3
        assert not (tmp_path / "data" / "kafka.pid").exists()

        # Second start on the same data dir: jars come from the cache and the
        # storage is not formatted again. A fake mvn first on PATH proves that
        # Maven is not called.
        fake_bin = tmp_path / "fake-bin"
        fake_bin.mkdir()
        mvn_called = tmp_path / "mvn-called"
        (fake_bin / "mvn").write_text(f'#!/bin/sh\ntouch "{mvn_called}"\nexit 1\n')
        (fake_bin / "mvn").chmod(0o755)
        proc = broker.start(extra_env={"PATH": f"{fake_bin}:{broker.env.get('PATH', '')}"})
        out = proc.stdout + proc.stderr
        assert "using cached jars" in out, out
        assert "storage already formatted" in out, out
        assert "resolving" not in out, out
        assert not mvn_called.exists()
        assert broker.status() == 0
        wait_ready(broker.bootstrap)

        # Data survived the restart.
        _produce(broker.bootstrap, topic, b"k2", b"again")
        assert _consume_all(broker.bootstrap, topic, expected=2) == [(b"k1", b"hello"), (b"k2", b"again")]
    finally:
        broker.stop()
    assert broker.status() == 3
