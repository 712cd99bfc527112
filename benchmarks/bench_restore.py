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
then what a checkpoint to the state topic does in the consume loop once every model had events: the
states captured (``checkpoint_capture_s``), then encoded and compressed into records (``checkpoint_pack_s``).
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
from streamdrift.runtime.statetopic import Changelog, checkpoint_records, chunk_bytes_for, model_seal, pack, unpack


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
        checkpoint_records(captured, captured.models, Changelog(), SEAL, chunk_bytes_for(1_000_000), monitored=models)
        at = timed(rounds, "checkpoint_pack_s", at)
        del engine, snapshot, models, captured
        gc.collect()
    out = {
        "models": args.models,
        "predictions": args.predictions,
        "made_s": round(made_s, 1),
        "cache_file_bytes": len(data),
        "topic_value_bytes": sum(len(v) for v in values.values()),
        **{name: round(min(seconds), 3) for name, seconds in rounds.items()},
    }
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
