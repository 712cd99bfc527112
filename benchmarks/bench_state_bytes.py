"""What the state topic's bytes are made of, and how they scale with the checkpoint interval (issue 16).

In process, no Kafka: the benchmark's stream (``bench_stream.Stream``) goes
through one ``PartitionEngine`` with the default settings, and a checkpoint is
simulated every ``every`` events per model (what ``checkpoint_interval_s``
gives at a throughput: a worker at 3,551 events/s over 10,000 models checkpoints
every 3.5 events per model with the default 10 s). At each one, every model
changed since the one before is packed as the worker packs it
(``statetopic.pack`` under a model record's seal, key included, its summary in its header; ``without_summaries``:
the same records without them, as the release before wrote them); the partition
record (one per partition and checkpoint, a few hundred bytes) is left out. For
each interval it prints state bytes per input byte (key + value of every input
record, as ``bench.py --state`` counts them), the share of each top-level
piece of a model's state (each piece compressed alone, its share of their sum),
at the last checkpoint, and what each piece down to three levels costs in a
model's record (``left_out``: the record's bytes less those without the piece).

``once`` is a single checkpoint at the end: the least any store that writes a
model's whole state can write, its floor whatever the interval.

    .venv/bin/python benchmarks/bench_state_bytes.py                       # 1,000 models x 20 predictions
    .venv/bin/python benchmarks/bench_state_bytes.py --models 10 --predictions 30000  # past the warm-up
"""

from __future__ import annotations

import argparse
import collections
import math
import time
import zlib

import orjson

from bench_stream import Stream
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.core.state import Seal, encode_tree
from streamdrift.runtime.statetopic import (
    COMPRESS_LEVEL,
    SUMMARY_FIELD,
    model_key,
    model_seal,
    pack,
    record_summary,
    summaries,
)

# a seal as the worker's: the settings and where the state belongs (no snapshot_key: no MAC)
SEAL = Seal.of(
    {"monitor": MonitorSettings().model_dump(mode="json"), "models": {}},
    {"cluster": "bench-cluster-id-0000000", "group": "bench", "topics": ["bench.predictions", "bench.feedback"]},
)


def messages(topic: str, records: list[tuple[bytes, bytes]], offsets: dict[str, int]) -> list[RawMessage]:
    out = []
    for key, value in records:
        timestamp_ms = int(orjson.loads(value)["timestamp"] * 1000)
        out.append(RawMessage(topic, 0, offsets[topic], key, value, timestamp_ms))
        offsets[topic] += 1
    return out


def record_bytes(state: dict, seal: str | Seal, summary: dict | None = None) -> tuple[int, int]:
    """A model record's value bytes as ``pack`` makes it (with ``summary`` in its header, as the worker writes
    it), and compressed without the preset dictionary."""
    encoded = encode_tree(state, seal, {SUMMARY_FIELD: summary} if summary is not None else None)
    return len(pack(state, seal, summary)), len(zlib.compress(encoded, COMPRESS_LEVEL))


def pieces(state: dict) -> dict[str, int]:
    """Bytes of each top-level piece of a model's state, compressed alone (the empty tree's bytes taken off)."""
    empty = len(zlib.compress(encode_tree({}, "c"), 1))
    return {k: len(zlib.compress(encode_tree({k: v}, "c"), 1)) - empty for k, v in state.items()}


def left_out(monitors: list, seal: str | Seal, depth: int = 3) -> dict[str, float]:
    """What each piece of a model's record costs in it: the record's bytes (as ``pack`` makes them, its summary
    in its header) less those of the same record without the piece, on average over ``monitors``; pieces down
    to ``depth`` levels of the state (``summary``: the header's). Unlike ``pieces`` (each piece compressed
    alone), this is what leaving a piece out of the record, or making it smaller, can save."""
    saved: collections.Counter[str] = collections.Counter()
    for monitor in monitors:
        state, summary = monitor.state(), record_summary(monitor)
        whole = len(pack(state, seal, summary))
        saved["summary"] += whole - len(pack(state, seal))
        for path in _paths(state, depth):
            saved[".".join(path)] += whole - len(pack(_without(state, path), seal, summary))
    return {k: round(v / len(monitors), 1) for k, v in saved.most_common()}


def _paths(tree: dict, depth: int, above: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in tree.items():
        out.append((*above, key))
        if isinstance(value, dict) and depth > 1:
            out += _paths(value, depth - 1, (*above, key))
    return out


def _without(tree: dict, path: tuple[str, ...]) -> dict:
    """``tree`` without the piece at ``path`` (the dicts on the way copied, the rest shared)."""
    copy = dict(tree)
    if len(path) == 1:
        del copy[path[0]]
    else:
        copy[path[0]] = _without(copy[path[0]], path[1:])
    return copy


def run(models: int, predictions: int, intervals: list[float], seed: int, multivariate: bool = False) -> dict:
    """State bytes per input byte at each interval (events per model between checkpoints; inf: once)."""
    stream = Stream(models, seed)
    settings = MonitorSettings(multivariate=multivariate)
    engine = PartitionEngine(0, "p", "f", monitor_factory(settings), epoch_ms=1000)
    changed: dict[float, set[str]] = {every: set() for every in intervals}

    def note(topic: str, batch: object, monitored: bool, events: object) -> None:
        for models_changed in changed.values():
            models_changed.add(batch.model_id)  # type: ignore[attr-defined]

    engine.on_batch = note
    offsets = {"p": 0, "f": 0}
    input_bytes = 0
    state_bytes = dict.fromkeys(intervals, 0)
    unsummarised_bytes = dict.fromkeys(intervals, 0)  # the same records without their summaries, as before them
    plain_bytes = dict.fromkeys(intervals, 0)  # values compressed without the preset dictionary, as before it
    checkpoints = dict.fromkeys(intervals, 0)
    events = 0
    next_at = {every: every * models for every in intervals}
    finite = [e for e in intervals if math.isfinite(e)]
    # chunks of a quarter of the shortest interval (~1.5 events per prediction: half of them get a label)
    step = max(1, int(min(finite) * models / 1.5 / 4)) if finite else predictions
    done = 0
    seal = model_seal(SEAL)
    while done < predictions:
        chunk = stream.chunk(min(step, predictions - done))
        done += len(chunk.predictions)
        for topic, records in (("p", chunk.predictions), ("f", chunk.feedback)):
            input_bytes += sum(len(k) + len(v) for k, v in records)
            events += len(records)
            engine.add(topic, messages(topic, records, offsets))
        engine.release(ended={"p", "f"})
        last = done >= predictions
        for every in intervals:
            if events >= next_at[every] or last:
                while next_at[every] <= events:
                    next_at[every] += every * models
                shown = summaries(engine.monitors, changed[every])
                for model_id, state in engine.snapshot(changed[every]).models.items():
                    with_dictionary, without = record_bytes(state, seal, shown.get(model_id))
                    key = len(model_key(0, 0, model_id))
                    state_bytes[every] += key + with_dictionary
                    plain_bytes[every] += key + without
                    unsummarised_bytes[every] += key + record_bytes(state, seal)[0]
                checkpoints[every] += 1
                changed[every].clear()
    share: collections.Counter[str] = collections.Counter()
    for monitor in list(engine.monitors.values())[:50]:
        share.update(pieces(monitor.state()))
    total = sum(share.values())
    sample = next(iter(engine.monitors.values()))
    record = sum(len(pack(m.state(), seal, record_summary(m))) for m in engine.monitors.values()) / models
    return {
        "models": models,
        "predictions": predictions,
        "events": events,
        "input_bytes": input_bytes,
        "model_record_bytes": round(record),
        "model_record_bytes_without_summary": round(
            sum(len(pack(m.state(), seal)) for m in engine.monitors.values()) / models
        ),
        "model_record_bytes_without_dictionary": round(
            sum(record_bytes(m.state(), seal, record_summary(m))[1] for m in engine.monitors.values()) / models
        ),
        "reference_ready": sample.features.ready,
        "intervals": {
            ("once" if not math.isfinite(every) else every): {
                "checkpoints": checkpoints[every],
                "state_bytes_per_input_byte": round(state_bytes[every] / input_bytes, 3),
                "without_dictionary": round(plain_bytes[every] / input_bytes, 3),
                "without_summaries": round(unsummarised_bytes[every] / input_bytes, 3),
            }
            for every in intervals
        },
        "pieces": {k: round(v / total, 3) for k, v in share.most_common() if v / total >= 0.01},
        # the bytes a record saves without each piece (of 50 models' records), those of 1 % of a record or more
        "left_out": {k: v for k, v in left_out(list(engine.monitors.values())[:50], seal).items() if v >= record / 100},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--predictions", type=int, default=20_000, help="20 per model: bench.py --state's stream")
    parser.add_argument(
        "--every",
        default="0.9,3.5,10,35,once",
        help="events per model between checkpoints, comma-separated ('once': one checkpoint at the end)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--multivariate", action="store_true", help="every model with multivariate drift on")
    args = parser.parse_args()
    intervals = [math.inf if e == "once" else float(e) for e in args.every.split(",")]
    started = time.perf_counter()
    out = run(args.models, args.predictions, intervals, args.seed, args.multivariate)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


if __name__ == "__main__":
    main()
