"""``bench.py --state``: what keeping the state in Kafka costs (issue 16's figures).

1. **Throughput by store and guarantee.** On one stream (``--events`` predictions
   of ``--models`` models), in each of ``--repeat`` rounds, a fresh worker with
   ``state_store = local``, one with ``kafka`` (the default) and one with
   ``kafka`` + ``processing_guarantee = exactly_once`` (``max_task_idle_ms`` 100
   for all three); ratios within a round, then the median. Targets: kafka / local >= 0.9, exactly_once / at_least_once >= 0.8.
2. **State-topic bytes per input byte**: every record the worker wrote to its
   state topic (key + value; aborted transactions included) over the input
   records' key + value bytes, at ``--models`` (from step 1's kafka run) and on
   a stream of ``--state-models`` models, ``--state-events`` predictions, every
   model active in every checkpoint. Target at 10,000 models: <= 0.25.
3. **Restore of ``--state-models`` models**, once that worker stopped: a worker
   of the same group on the same snapshot directory (the local cache plus the
   topic's tail; target <= 3 s), then one on an empty directory (the topic
   alone; target <= 10 s). Measured: the worker's own ``restore_s`` (logged when
   its partitions are restored) and its parts (the local cache read and decoded, the topic read, its
   records unpacked, the monitors built), and start to ready.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

import orjson

from bench import Topics, Worker, free_port, log, run_worker_throughput
from bench_stream import Stream, produce_all

TARGETS = {
    "kafka_over_local": 0.9,
    "exactly_once_over_at_least_once": 0.8,
    "bytes_per_input_byte_large": 0.25,
    "restore_topic_s": 10.0,
    "restore_cache_s": 3.0,
}


def topic_bytes(bootstrap: str, topics: list[str], timeout: float = 600) -> tuple[int, int]:
    """(records, key + value bytes) of every data record of ``topics``, read to their ends (read_uncommitted:
    what was written, aborted transactions included)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-bytes-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_uncommitted",
        }
    )
    metadata = consumer.list_topics(timeout=10)
    assigned = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata.topics[t].partitions]
    consumer.assign(assigned)
    pending = {(tp.topic, tp.partition) for tp in assigned}
    records = size = 0
    deadline = time.monotonic() + timeout
    try:
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard((msg.topic(), msg.partition()))
                    continue
                records += 1
                size += len(msg.key() or b"") + len(msg.value() or b"")
    finally:
        consumer.close()
    if pending:
        raise RuntimeError(f"could not read {sorted(pending)} to their end in {timeout:.0f} s")
    return records, size


RESTORE_PARTS = ("cache_s", "read_s", "unpack_s", "build_s")  # what the worker logs restore_s is made of


def restore_s(log_text: str) -> tuple[float, int, dict[str, float]]:
    """(seconds, models, seconds of each part) of the worker's restores from the state topic, from its log
    (a worker from before the parts were logged: none)."""
    seconds, models = 0.0, 0
    parts: dict[str, float] = {}
    for line in log_text.splitlines():
        if '"state restored from the state topic"' in line:
            fields = orjson.loads(line)
            seconds += fields["restore_s"]
            models += fields["models"]
            for part in RESTORE_PARTS:
                if part in fields:
                    parts[part] = round(parts.get(part, 0.0) + fields[part], 3)
    return seconds, models, parts


def restart(env: dict[str, str], log_path: Path, models: int) -> dict:
    """Start a worker on ``env``, time it to ready, check it restored ``models`` models, stop it."""
    worker = Worker({**env, "STREAMDRIFT_METRICS_PORT": str(free_port())}, log_path)
    try:
        ready = worker.wait_ready(timeout=600, interval=0.1)
    finally:
        code = worker.stop()
    if code != 0:
        raise RuntimeError(f"worker exited {code}:\n{worker.tail()}")
    seconds, restored, parts = restore_s(log_path.read_text())
    if restored != models:
        raise RuntimeError(f"restored {restored} models, not {models}:\n{worker.tail()}")
    log(f"  restore_s {seconds:.3f} of {models:,} models: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    return {"restore_s": seconds, "start_to_ready_s": ready - worker.started, "models": restored, "parts": parts}


def state(bootstrap: str, args: argparse.Namespace, workdir: Path, run_id: str) -> dict:
    out: dict = {"rounds": []}
    topics = Topics(bootstrap, f"bench-{run_id}.state", args.partitions)
    topics.create(workdir)
    log(f"state: producing {args.events:,} predictions for {args.models} models to {topics.prefix}.*")
    made = produce_all(bootstrap, Stream(args.models, args.seed), args.events, topics.predictions, topics.feedback)
    _, input_bytes = topic_bytes(bootstrap, [topics.predictions, topics.feedback])
    timeout = max(300.0, (made["predictions"] + made["feedback"]) / 500)
    # At the end of a backlog the merge waits max_task_idle_ms (3 s) before its last forced release: a
    # fixed tail that would hide the stores' difference on a short stream, so these runs wait 100 ms.
    kinds = {
        "local": {"state_store": "local", "max_task_idle_ms": 100},
        "kafka": {"state_store": "kafka", "max_task_idle_ms": 100},
        "exactly_once": {"state_store": "kafka", "processing_guarantee": "exactly_once", "max_task_idle_ms": 100},
    }
    for i in range(args.repeat):
        log(f"state: round {i + 1}/{args.repeat}: " + ", ".join(kinds))
        r = {
            name: run_worker_throughput(topics, workdir, made["predictions"], made["feedback"], timeout, **settings)
            for name, settings in kinds.items()
        }
        log("  ".join(f"{k} {v['events_per_s']:,.0f} events/s" for k, v in r.items()))
        out["rounds"].append(r)
    rounds = out["rounds"]
    _, state_bytes = topic_bytes(bootstrap, [rounds[-1]["kafka"]["state_topic"]])
    out["small"] = {"models": args.models, "input_bytes": input_bytes, "state_bytes": state_bytes}

    out.update(large_phase(bootstrap, args, workdir, run_id))
    out["summary"] = summary(out)
    return out


def large_phase(bootstrap: str, args: argparse.Namespace, workdir: Path, run_id: str, restarts: int = 1) -> dict:
    """``--state-models`` models: a worker consumes their stream and stops (its last checkpoint writes the
    state topic and its local cache), then ``restarts`` times a worker restores them from the local cache
    plus the topic's tail, and one from the topic alone (an empty snapshot directory)."""
    out: dict = {}
    log(f"state: {args.state_models:,} models, {args.state_events:,} predictions")
    large = Topics(bootstrap, f"bench-{run_id}.state-large", args.partitions)
    large.create(workdir)
    made = produce_all(
        bootstrap, Stream(args.state_models, args.seed), args.state_events, large.predictions, large.feedback
    )
    _, large_input = topic_bytes(bootstrap, [large.predictions, large.feedback])
    snapshots = workdir / "state-large-snapshots"
    budget = {} if args.state_write_budget is None else {"state_write_budget": args.state_write_budget}
    env = large.env(snapshots, **budget)
    worker = Worker(env, workdir / "worker-state-large.log")
    try:
        ready = worker.wait_ready(timeout=600, interval=0.1)
        done = worker.wait_for(
            lambda: worker.counts() == (made["predictions"], made["feedback"]), 1800, "every event counted", 1.0
        )
    finally:
        code = worker.stop()  # the final checkpoint writes the state topic and its local cache
    if code != 0:
        raise RuntimeError(f"worker exited {code}:\n{worker.tail()}")
    _, large_state = topic_bytes(bootstrap, [env["STREAMDRIFT_TOPICS__STATE"]])
    models = args.state_models
    out["large"] = {
        "models": models,
        "input_bytes": large_input,
        "state_bytes": large_state,
        "state_bytes_per_input_byte": round(large_state / large_input, 3),
        "events_per_s": (made["predictions"] + made["feedback"]) / (done - ready),
    }
    for i in range(restarts):  # the figures of the last: a round before warms the machine's caches alike
        log("state: restore from the local cache plus the topic's tail, then from the topic alone")
        out["restore_cache"] = restart(env, workdir / f"worker-restore-cache-{i}.log", models)
        empty = {**env, "STREAMDRIFT_SNAPSHOT_DIR": str(workdir / f"state-empty-snapshots-{i}")}
        out["restore_topic"] = restart(empty, workdir / f"worker-restore-topic-{i}.log", models)
        out.setdefault("restores", []).append({"cache": out["restore_cache"], "topic": out["restore_topic"]})
    return out


def summary(out: dict) -> dict:
    rounds = out["rounds"]

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(r[a]["events_per_s"] / r[b]["events_per_s"] for r in rounds), 3)

    small, large = out["small"], out["large"]
    return {
        "state_local_events_per_s": round(statistics.median(r["local"]["events_per_s"] for r in rounds), 1),
        "state_kafka_events_per_s": round(statistics.median(r["kafka"]["events_per_s"] for r in rounds), 1),
        "state_exactly_once_events_per_s": round(
            statistics.median(r["exactly_once"]["events_per_s"] for r in rounds), 1
        ),
        "state_kafka_over_local": ratio("kafka", "local"),
        "state_exactly_once_over_at_least_once": ratio("exactly_once", "kafka"),
        f"state_topic_bytes_per_input_byte_{small['models']}_models": round(
            small["state_bytes"] / small["input_bytes"], 4
        ),
        f"state_topic_bytes_per_input_byte_{large['models']}_models": round(
            large["state_bytes"] / large["input_bytes"], 4
        ),
        f"state_restore_{large['models']}_models_topic_s": round(out["restore_topic"]["restore_s"], 3),
        f"state_restore_{large['models']}_models_cache_s": round(out["restore_cache"]["restore_s"], 3),
        f"state_start_to_ready_{large['models']}_models_topic_s": round(out["restore_topic"]["start_to_ready_s"], 3),
        f"state_start_to_ready_{large['models']}_models_cache_s": round(out["restore_cache"]["start_to_ready_s"], 3),
    }
