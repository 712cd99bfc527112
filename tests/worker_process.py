"""Run ``streamdrift worker`` as a real subprocess against a real broker, and talk to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kafka_broker import free_ports
from streamdrift.core.records import RawMessage


def worker_env(bootstrap: str, prefix: str, snapshot_dir: Path, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
    env.update(
        {
            "STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "STREAMDRIFT_TOPICS__PREDICTIONS": f"{prefix}.predictions",
            "STREAMDRIFT_TOPICS__FEEDBACK": f"{prefix}.feedback",
            "STREAMDRIFT_TOPICS__ALERTS": f"{prefix}.alerts",
            "STREAMDRIFT_TOPICS__DEAD_LETTER": f"{prefix}.dead-letter",
            "STREAMDRIFT_TOPICS__STATE": f"{prefix}.state",
            "STREAMDRIFT_GROUP_ID": f"{prefix}.group",
            "STREAMDRIFT_SNAPSHOT_DIR": str(snapshot_dir),
            "STREAMDRIFT_METRICS_PORT": str(free_ports(1)[0]),
            "STREAMDRIFT_POLL_TIMEOUT_S": "0.2",
            # a SIGKILLed member holds its partitions until its session times out: keep that short in tests
            "STREAMDRIFT_KAFKA__CONSUMER_EXTRA": '{"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}',
        }
    )
    env.update({f"STREAMDRIFT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def streamdrift(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamdrift", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.port = int(env["STREAMDRIFT_METRICS_PORT"])
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", "worker"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_for(lambda: self.get("/readyz")[0] == 200, timeout, "worker ready")

    def status(self) -> dict:
        return orjson.loads(self.get("/status")[1])

    def counts(self) -> dict[str, tuple[int, int]]:
        """model_id -> (predictions, feedback) seen, over all owned partitions."""
        out = {}
        for part in self.status()["partitions"].values():
            for model_id, s in part["models"].items():
                out[model_id] = (s["predictions_total"], s["feedback_total"])
        return out

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}) waiting for {what}:\n{self.log()}")
            try:
                if predicate():
                    return
            except (OSError, ValueError):
                pass  # the HTTP server is not up yet
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode


def produce(bootstrap: str, items: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """Produce (topic, key, value) in order, with the murmur2 partitioner like streamdrift's producers."""
    p = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 20}
    )
    for topic, key, value in items:
        p.produce(topic, value, key)
        p.poll(0)
    assert p.flush(30) == 0


def read_topic(bootstrap: str, topic: str, expect: int = 0, timeout: float = 60) -> list[tuple[RawMessage, dict]]:
    """Every record of ``topic`` (at least ``expect`` of them) with its headers, in partition/offset order."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    n = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)])
    out: list[tuple[RawMessage, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ends = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(n))
            if len(out) >= max(ends, expect):
                break
            for msg in c.consume(500, 0.5):
                if msg.error() is None:
                    raw = RawMessage(
                        msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1]
                    )
                    out.append((raw, {k: v.decode() for k, v in msg.headers() or []}))
    finally:
        c.close()
    assert len(out) >= expect, f"{topic}: {len(out)} records, expected {expect}"
    return sorted(out, key=lambda mh: (mh[0].partition, mh[0].offset))
