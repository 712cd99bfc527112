"""The two consumers streamdrift is measured against, each run in a process of its own.

``floor``: consume in batches and decode with orjson, nothing else; no
consumer of these topics can be faster in Python.

``baseline``: what a user would write in an afternoon instead of deploying
streamdrift: confluent-kafka, orjson, one River ``ADWIN`` per numeric feature
per model fed event by event, and a running accuracy per model, joining each
label to its prediction by ``event_id`` in a dict bounded as streamdrift's
join buffer is (``MAX_PENDING``; the oldest waiting prediction goes first).

Both read every partition of both topics from the beginning (``assign``, no
group: no rebalance to wait for) and stop once they have seen ``--expect``
messages. The clocks (wall and process CPU, librdkafka's threads included)
start at the first consume call. Prints one JSON object.

    python benchmarks/bench_baseline.py floor|baseline --bootstrap HOST:PORT \\
        --predictions TOPIC --feedback TOPIC --expect N
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def consumer(bootstrap: str, topics: list[str]) -> Consumer:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    metadata = c.list_topics(timeout=30)
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata.topics[t].partitions])
    return c


def floor(c: Consumer, topics: list[str], expect: int, timeout: float) -> dict:
    seen = 0
    loads = orjson.loads
    started, cpu = time.perf_counter(), time.process_time()
    deadline = time.monotonic() + timeout
    while seen < expect and time.monotonic() < deadline:
        for msg in c.consume(num_messages=1000, timeout=0.5):
            if msg.error() is None:
                loads(msg.value())
                seen += 1
    return {"events": seen, "seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


MAX_PENDING = 20_000


class Monitor:
    """One model: an ADWIN per numeric feature, a running accuracy."""

    def __init__(self, make_adwin) -> None:
        self.make_adwin = make_adwin
        self.adwins: dict[str, object] = {}
        self.correct = 0
        self.labelled = 0
        self.drifts: dict[str, int] = {}
        self.pending: dict[str, object] = {}  # event_id -> prediction, oldest first

    def prediction(self, event: dict) -> None:
        if len(self.pending) >= MAX_PENDING:
            del self.pending[next(iter(self.pending))]
        self.pending[event["event_id"]] = event["prediction"]
        for name, value in event["features"].items():
            if type(value) is float or type(value) is int:
                adwin = self.adwins.get(name)
                if adwin is None:
                    adwin = self.adwins[name] = self.make_adwin()
                adwin.update(value)
                if adwin.drift_detected:
                    self.drifts[name] = self.drifts.get(name, 0) + 1

    def feedback(self, event: dict) -> None:
        prediction = self.pending.pop(event["event_id"], None)
        if prediction is not None:  # a label read before its prediction is lost: an afternoon's script
            self.labelled += 1
            self.correct += prediction == event["label"]

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else float("nan")


def baseline(c: Consumer, topics: list[str], expect: int, timeout: float) -> dict:
    from river.drift import ADWIN  # imported before the clocks start

    predictions, _ = topics
    monitors: dict[str, Monitor] = {}
    seen = 0
    started, cpu = time.perf_counter(), time.process_time()
    deadline = time.monotonic() + timeout
    while seen < expect and time.monotonic() < deadline:
        for msg in c.consume(num_messages=1000, timeout=0.5):
            if msg.error() is not None:
                continue
            seen += 1
            try:
                event = orjson.loads(msg.value())
                monitor = monitors.get(event["model_id"])
                if monitor is None:
                    monitor = monitors[event["model_id"]] = Monitor(ADWIN)
                if msg.topic() == predictions:
                    monitor.prediction(event)
                else:
                    monitor.feedback(event)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                pass  # what an afternoon's script does with bad input
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "events": seen,
        "seconds": seconds,
        "cpu_s": cpu,
        "models": len(monitors),
        "labelled": sum(m.labelled for m in monitors.values()),
        "adwin_drifts": sum(sum(m.drifts.values()) for m in monitors.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["floor", "baseline"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--feedback", required=True)
    parser.add_argument("--expect", type=int, required=True, help="messages to consume, both topics together")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    topics = [args.predictions, args.feedback]
    c = consumer(args.bootstrap, topics)
    try:
        result = (floor if args.kind == "floor" else baseline)(c, topics, args.expect, args.timeout)
    finally:
        c.close()
    print(orjson.dumps(result).decode())
    return 0 if result["events"] >= args.expect else 1


if __name__ == "__main__":
    sys.exit(main())
