"""Run ``streamdrift worker`` as a real subprocess against a real broker, and talk to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streamdrift.core.records import RawMessage
from streamdrift.runtime.settings import Settings, load_settings


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
            "STREAMDRIFT_TOPICS__APPROVALS": f"{prefix}.approvals",  # `topics create` makes it: one per test
            "STREAMDRIFT_GROUP_ID": f"{prefix}.group",
            "STREAMDRIFT_SNAPSHOT_DIR": str(snapshot_dir),
            # 0: the worker binds a free port and logs it (WorkerProcess.port). A port picked here and bound by the
            # worker later could be taken meanwhile (a Kafka client's connection takes one), and was (CI).
            "STREAMDRIFT_METRICS_PORT": "0",
            "STREAMDRIFT_POLL_TIMEOUT_S": "0.2",
            # a SIGKILLed member holds its partitions until its session times out: keep that short in tests
            "STREAMDRIFT_KAFKA__CONSUMER_EXTRA": '{"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}',
        }
    )
    env.update({f"STREAMDRIFT_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def worker_settings(env: dict[str, str]) -> Settings:
    """The settings a worker started with ``env`` reads: its ``STREAMDRIFT_*`` variables over the defaults.

    Its ``state_seal()`` is what the worker's checkpoints are written under, in either store.
    """
    ours = {k: v for k, v in os.environ.items() if k.startswith("STREAMDRIFT_")}
    for name in ours:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith("STREAMDRIFT_")})
    try:
        return load_settings()
    finally:
        for name in [k for k in os.environ if k.startswith("STREAMDRIFT_")]:
            del os.environ[name]
        os.environ.update(ours)


def streamdrift(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamdrift", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


class StreamdriftProcess:
    """A ``streamdrift`` command run as a real subprocess, its output appended to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str):
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self._log_start = self._log.tell()  # where this process's lines begin (a log may be appended to)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamdrift", *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def own_log(self) -> str:
        """The lines this process wrote (not those of an earlier process that appended to the same file)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode


class WorkerProcess(StreamdriftProcess):
    def __init__(self, env: dict[str, str], log_path: Path):
        super().__init__(env, log_path, "worker")
        port = int(env.get("STREAMDRIFT_METRICS_PORT", "9108"))
        self._port = port or None

    @property
    def port(self) -> int:
        """The port it serves on: the one its "worker started" line names where the settings let it pick (0).
        Before that line, ConnectionRefusedError, as a port not served yet answers."""
        if self._port is None:
            for line in self.own_log().splitlines():
                if line.startswith("{") and '"msg":"worker started"' in line:
                    self._port = urllib.parse.urlsplit(orjson.loads(line)["metrics"]).port
                    break
            else:
                raise ConnectionRefusedError(f"{self.log_path}: the worker has not started serving yet")
        return self._port

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


def produce(bootstrap: str, items: list[tuple]) -> None:
    """Produce (topic, key, value) in order, with the murmur2 partitioner like streamdrift's producers; an item
    (topic, key, value, timestamp_ms) with that Kafka timestamp, else the time it is produced at."""
    p = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 20}
    )
    for topic, key, value, *stamp in items:
        p.produce(topic, value, key, timestamp=stamp[0] if stamp else 0)
        p.poll(0)
    assert p.flush(30) == 0


def read_topic(bootstrap: str, topic: str, expect: int = 0, timeout: float = 60) -> list[tuple[RawMessage, dict]]:
    """Every record of ``topic`` (at least ``expect`` of them) with its headers, in partition/offset order.

    Read until every partition is at its end (read_committed: its last stable offset), as the consumer's
    partition-EOF events tell, and ``expect`` records are in. Not by asking for the high watermarks while
    fetching: the broker answers a consumer's requests in order, so each such question waits behind the
    fetch in flight (up to fetch.wait.max.ms, 500 ms), and this loop asked twice a poll.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    n = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)])
    out: list[tuple[RawMessage, dict]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (len(at_end) < n or len(out) < expect):
            for msg in c.consume(500, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                    continue
                at_end.discard(msg.partition())  # more came after its end: read on to the new end
                raw = RawMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1])
                out.append((raw, {k: v.decode() for k, v in msg.headers() or []}))
    finally:
        c.close()
    assert len(out) >= expect, f"{topic}: {len(out)} records, expected {expect}"
    return sorted(out, key=lambda mh: (mh[0].partition, mh[0].offset))


# -- helpers of the outage test and scripts/chaos.py -------------------------

# A retrain hook that appends the drift event it got on stdin, as one JSON line, to the file argv[1].
RECORDING_HOOK = """
import sys
event = sys.stdin.buffer.read()
with open(sys.argv[1], "ab") as out:
    out.write(event.strip() + b"\\n")
"""


class ListenerProcess(StreamdriftProcess):
    """``streamdrift retrain-listener --command <RECORDING_HOOK>`` as a real subprocess; ``calls()`` are the
    drift events its hook got, in call order."""

    def __init__(self, env: dict[str, str], workdir: Path, *args: str):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "hook.py").write_text(RECORDING_HOOK)
        self.out_path = workdir / "hook-calls.jsonl"
        command = subprocess.list2cmdline([sys.executable, str(workdir / "hook.py"), str(self.out_path)])
        super().__init__(env, workdir / "listener.log", "retrain-listener", "--command", command, *args)

    def calls(self) -> list[dict]:
        if not self.out_path.exists():
            return []
        return [orjson.loads(line) for line in self.out_path.read_bytes().splitlines() if line]


def model_summaries(worker: WorkerProcess) -> dict[str, dict]:
    """model_id -> its summary on ``/status``, over all the worker's partitions: what its state shows."""
    return {m: s for part in worker.status()["partitions"].values() for m, s in part["models"].items()}


def end_offsets(bootstrap: str, topic: str) -> list[int]:
    """The high watermark of each partition of ``topic``."""
    n = len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic].partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{time.time_ns()}"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(n)]
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topics: list[str], partitions: int) -> list[int]:
    """``group``'s committed offset of each partition of ``topics`` (OFFSET_INVALID where none), topic by topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        wanted = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        return [tp.offset for tp in consumer.committed(wanted, timeout=30)]
    finally:
        consumer.close()


def resume_offsets(log: str) -> list[dict[str, int]]:
    """The offsets ("<topic>[<p>]" -> next offset) each assignment resumed at, in order, from a worker's log."""
    out = []
    for line in log.splitlines():
        record = orjson.loads(line) if line.startswith("{") else {}
        if record.get("msg") == "partitions assigned":
            out.append(record["offsets"])
    return out


class PacedProducer(threading.Thread):
    """Produce (topic, key, value) in order, ``chunk`` records every ``pause_s``, in a thread of its own: a
    stream that goes on while the test does something else (stops the broker: what is produced meanwhile
    waits in the producer, and goes out once the broker is back, within ``message.timeout.ms``).
    ``join()`` then ``check()``: every record delivered."""

    def __init__(self, bootstrap: str, items: list[tuple[str, bytes | None, bytes | None]], chunk: int, pause_s: float):
        super().__init__(daemon=True)
        self.bootstrap, self.items, self.chunk, self.pause_s = bootstrap, items, chunk, pause_s
        self.produced = 0
        self.undelivered: int | None = None
        self.errors: list[str] = []

    def run(self) -> None:
        p = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "log_level": 0,  # the broker going away is the point here: its connection errors are noise
            }
        )

        def delivered(err: object, msg: object) -> None:
            if err is not None:
                self.errors.append(str(err))

        for start in range(0, len(self.items), self.chunk):
            for topic, key, value in self.items[start : start + self.chunk]:
                p.produce(topic, value, key, on_delivery=delivered)
            self.produced = min(start + self.chunk, len(self.items))
            p.poll(0)
            time.sleep(self.pause_s)
        self.undelivered = p.flush(600)

    def check(self) -> None:
        assert self.undelivered == 0 and not self.errors, (self.undelivered, self.errors[:3])
