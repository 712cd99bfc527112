"""Where a restore of many models spends its time, in process (issue 16: 10,000 models in <= 10 s from
the state topic alone, <= 3 s from the local cache plus the topic's tail).

No Kafka: the benchmark's stream (``bench_stream.Stream``, 20 predictions per model by default, as
``bench.py --state``) goes through one ``PartitionEngine``; its state is kept in ``--work`` (a snapshot
file, made once and reused). Then, ``--repeat`` times, each piece of the two restores the worker does:

- ``topic_unpack_s``: every model's value packed as a checkpoint writes it (``statetopic.pack``), then
  ``unpack`` (inflate + decode) of each;
- ``cache_decode_s``: the partition's snapshot file as the local store writes it, ``decode``;
- ``restore_s``: ``engine.restore`` of those states (the monitors built), the same for both paths.

and, after the restore, what /status and a checkpoint of every model cost (summaries, ``snapshot()``);
then the restore from the local cache plus the topic's tail end to end, as the worker does it (the cache
file loaded, the tail's records restored over it, the monitors built, the summaries /status publishes
before ``/readyz``), with the cache as it was written before (every model's state decoded in the file:
``cache_tail_before_s``) and as it is now (each model kept as the topic's value with its summary, built at
its first event: ``cache_tail_s``, and its parts ``cache_load_s``, ``tail_restore_s``, ``cache_build_s``,
``cache_summaries_s``); the tail is a checkpoint of ``--tail`` models after the cache's; then what writing
the cache costs the forked packer once every model was built and none changed since the cache: the layout
before (every state captured and written, ``cache_write_before_s``), today's (the cache on disk loaded and
each model's stored bytes taken from it, ``cache_write_s``) and today's without a cache to take them from
(every model packed and summarised, ``cache_write_repack_s``);
then a restore from the topic alone end to end once its records are read (``restore``, the engine restored, the
summaries /status publishes), its model records as the release before wrote them (no summary, every model
decoded and built: ``topic_before_s``) and as they are written now (each with its summary, kept encoded until
its first event: ``topic_now_s``), with their parts (``_unpack_s``, ``_build_s``, ``_summaries_s``);
then what a checkpoint to the state topic does in the consume loop once every model had events: the
states captured (``checkpoint_capture_s``), then encoded and compressed into records with their summaries
(``checkpoint_pack_s``).
The figures are CPU seconds of this process (``time.process_time``), the best of the rounds: the
machine is shared, and its wall clock counts the others' work too.

    .venv/bin/python benchmarks/bench_restore.py                 # 10,000 models x 20 predictions
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import orjson

from bench_state_bytes import SEAL, messages
from bench_stream import Stream
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.state import decode, encode
from streamdrift.runtime import statecache
from streamdrift.runtime.checkpoint import LocalSnapshotStore
from streamdrift.runtime.statetopic import (
    Changelog,
    Record,
    Stored,
    checkpoint_records,
    chunk_bytes_for,
    model_seal,
    pack,
    restore,
    summaries,
    unpack,
)


def engine_of() -> PartitionEngine:
    return PartitionEngine(0, "p", "f", monitor_factory(MonitorSettings()), epoch_ms=1000)


def build(models: int, predictions: int, seed: int, path: Path) -> bytes:
    """The snapshot file of one partition of ``models`` models after ``predictions`` predictions (cached)."""
    if path.exists():
        return path.read_bytes()
    engine = engine_of()
    stream = Stream(models, seed)
    offsets = {"p": 0, "f": 0}
    done = 0
    while done < predictions:
        chunk = stream.chunk(min(20_000, predictions - done))
        done += len(chunk.predictions)
        for topic, records in (("p", chunk.predictions), ("f", chunk.feedback)):
            engine.add(topic, messages(topic, records, offsets))
        engine.release(ended={"p", "f"})
    data = encode(engine.snapshot(), SEAL)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def stored(records: list[Record], log: list[Stored]) -> int:
    """Append ``records`` to ``log`` as a state-topic partition holds them; the offset after the last one."""
    for record in records:
        gen, chunks = (int(value) for _, value in record.headers)  # type: ignore[arg-type]
        log.append(Stored(len(log), record.key, record.value, gen, chunks))
    return len(log)


def caches(
    engine: PartitionEngine, work: Path, tail_models: int
) -> tuple[LocalSnapshotStore, LocalSnapshotStore, list[Stored]]:
    """The partition checkpointed to a state-topic log, its cache in the layout before (every state decoded
    in the file) and in today's, then ``tail_models`` models checkpointed again: the records past the cache."""
    log: list[Stored] = []
    chunk = chunk_bytes_for(1_000_000)
    everything = engine.snapshot()
    records, changelog = checkpoint_records(
        everything,
        everything.models,
        Changelog(),
        SEAL,
        chunk,
        monitored=engine.monitors,
        summaries=summaries(engine.monitors, everything.models),
    )
    changelog.offset = stored(records, log)
    before, after = LocalSnapshotStore(work / "before", SEAL), LocalSnapshotStore(work / "after", SEAL)
    everything.changelog = changelog.state()
    before.save(everything)
    after.write(*statecache.cache_body(engine, changelog.state(), SEAL))
    again = sorted(engine.monitors)[:tail_models]
    records, _ = checkpoint_records(
        engine.snapshot(again),
        again,
        changelog,
        SEAL,
        chunk,
        monitored=engine.monitors,
        summaries=summaries(engine.monitors, again),
    )
    stored(records, log)
    return before, after, log[changelog.offset - 1 :]  # from the cached checkpoint's partition record


def topic_logs(engine: PartitionEngine) -> dict[str, list[Stored]]:
    """The partition checkpointed once to a state-topic log, its model records as the release before wrote them
    (no summary: ``before``) and as the worker writes them now (each with its summary: ``now``)."""
    logs: dict[str, list[Stored]] = {"before": [], "now": []}
    everything = engine.snapshot()
    for name, log in logs.items():
        shown = summaries(engine.monitors, everything.models) if name == "now" else {}
        records, _ = checkpoint_records(
            everything,
            everything.models,
            Changelog(),
            SEAL,
            chunk_bytes_for(1_000_000),
            monitored=engine.monitors,
            summaries=shown,
        )
        stored(records, log)
    return logs


def restored_from_topic(log: list[Stored], rounds: dict[str, list[float]], prefix: str) -> None:
    """A restore from the topic alone, as the worker's once the records are read: the records restored
    (``unpack``), the engine restored (``build``), the summaries /status publishes before ``/readyz``."""
    at = time.process_time()
    snapshot, _ = restore(0, log, SEAL, "bench")
    assert snapshot is not None
    at = timed(rounds, f"{prefix}_unpack_s", at)
    engine = engine_of()
    engine.restore(snapshot)
    at = timed(rounds, f"{prefix}_build_s", at)
    [monitor.summary() for monitor in engine.monitors.values()]
    timed(rounds, f"{prefix}_summaries_s", at)


def restored_from(store: LocalSnapshotStore, log: list[Stored], rounds: dict[str, list[float]], parts: bool) -> None:
    """A restore from ``store``'s cache and the records of ``log`` after it, as the worker's; its parts timed."""
    at = time.process_time()
    cache = store.load(0)
    assert cache is not None
    at = timed(rounds, "cache_load_s", at) if parts else at
    snapshot, _ = restore(0, log, SEAL, "bench", cache)
    assert snapshot is not None
    at = timed(rounds, "tail_restore_s", at) if parts else at
    engine = engine_of()
    engine.restore(snapshot)
    at = timed(rounds, "cache_build_s", at) if parts else at
    [monitor.summary() for monitor in engine.monitors.values()]
    timed(rounds, "cache_summaries_s", at) if parts else at


def cache_writes(before: LocalSnapshotStore, after: LocalSnapshotStore, log: list[Stored], rounds: dict) -> None:
    """The cache written, in each layout, from an engine whose every model is built and unchanged since."""
    cache = after.load(0)
    assert cache is not None
    snapshot, changelog = restore(0, log, SEAL, "bench", cache)
    assert snapshot is not None
    engine = engine_of()
    engine.restore(snapshot)
    for model_id in list(engine.monitors):
        engine.monitor(model_id)  # built, as after every model's first event
    writes = LocalSnapshotStore(after.directory.parent / "writes", SEAL)
    at = time.process_time()
    everything = engine.snapshot()
    everything.changelog = changelog.state()
    writes.save(everything)
    at = timed(rounds, "cache_write_before_s", at)
    writes.write(*statecache.cache_body(engine, changelog.state(), SEAL, previous=after.load(0)))
    at = timed(rounds, "cache_write_s", at)
    writes.write(*statecache.cache_body(engine, changelog.state(), SEAL))
    timed(rounds, "cache_write_repack_s", at)


def timed(rounds: dict[str, list[float]], name: str, started: float) -> float:
    """Record the CPU seconds of this process since ``started`` (wall time is the other engineers' too)."""
    now = time.process_time()
    rounds.setdefault(name, []).append(now - started)
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--predictions", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tail", type=int, default=100, help="models checkpointed again after the cache")
    parser.add_argument("--work", type=Path, default=Path("/tmp/streamdrift-bench-restore"))
    args = parser.parse_args()
    path = args.work / f"partition-{args.models}x{args.predictions}-{args.seed}.snapshot"
    started = time.perf_counter()
    data = build(args.models, args.predictions, args.seed, path)
    made_s = time.perf_counter() - started
    seal = model_seal(SEAL)
    values = {m: pack(s, seal) for m, s in decode(data, SEAL, "cache").models.items()}
    rounds: dict[str, list[float]] = {}
    gc.disable()  # as the worker restores: the collector paused (``worker._gc_paused``)
    made = engine_of()
    made.restore(decode(data, SEAL, "cache"))
    before, after, log = caches(made, args.work / "caches", args.tail)
    topic = topic_logs(made)
    topic_bytes = {name: sum(len(r.value or b"") for r in records) for name, records in topic.items()}
    tail_records = len(log) - 1
    cache_bytes = {"before": before.path(0).stat().st_size, "after": after.path(0).stat().st_size}
    del made
    gc.collect()
    for _ in range(args.repeat):
        at = time.process_time()
        models = {m: unpack(v, seal, m, "") for m, v in values.items()}
        at = timed(rounds, "topic_unpack_s", at)
        snapshot = decode(data, SEAL, "cache")
        at = timed(rounds, "cache_decode_s", at)
        snapshot.models = models
        engine = engine_of()
        engine.restore(snapshot)
        at = timed(rounds, "restore_s", at)
        [monitor.summary() for monitor in engine.monitors.values()]
        at = timed(rounds, "summaries_s", at)
        engine.snapshot()
        at = timed(rounds, "snapshot_s", at)
        # a checkpoint to the state topic after every model had events: what its step 2 does in the consume
        # loop, the models' states captured (their warm-ups made, as events make them), then encoded and compressed
        for monitor in engine.monitors.values():
            for sketch in (monitor.features, monitor.outputs, monitor.attributions, monitor.labels):
                sketch.warmup  # noqa: B018 - made, as a model's first event makes it
        at = time.process_time()
        captured = engine.snapshot()
        at = timed(rounds, "checkpoint_capture_s", at)
        checkpoint_records(  # with the summaries the records carry, as the worker makes them
            captured,
            captured.models,
            Changelog(),
            SEAL,
            chunk_bytes_for(1_000_000),
            monitored=models,
            summaries=summaries(engine.monitors, captured.models),
        )
        at = timed(rounds, "checkpoint_pack_s", at)
        del engine, snapshot, models, captured
        gc.collect()
        at = time.process_time()
        restored_from(before, log, rounds, parts=False)
        at = timed(rounds, "cache_tail_before_s", at)
        gc.collect()
        at = time.process_time()
        restored_from(after, log, rounds, parts=True)
        timed(rounds, "cache_tail_s", at)
        gc.collect()
        cache_writes(before, after, log, rounds)
        gc.collect()
        for name, records in topic.items():
            at = time.process_time()
            restored_from_topic(records, rounds, f"topic_{name}")
            timed(rounds, f"topic_{name}_s", at)
            gc.collect()
    out = {
        "models": args.models,
        "predictions": args.predictions,
        "made_s": round(made_s, 1),
        "cache_file_bytes": len(data),
        "topic_value_bytes": sum(len(v) for v in values.values()),
        "cache_bytes_before": cache_bytes["before"],
        "cache_bytes": cache_bytes["after"],
        "tail_records": tail_records,
        "topic_bytes_before": topic_bytes["before"],
        "topic_bytes": topic_bytes["now"],
        **{name: round(min(seconds), 3) for name, seconds in rounds.items()},
    }
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
