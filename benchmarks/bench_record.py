"""What a model record of the state topic costs, part by part, and what each zlib level would make of it.

A fleet is built as ``bench_fleet.py`` builds it (its stream, its engines, one checkpoint at the end; what
they hold is settled first, and the summaries a record carries are made first: neither is timed here). Then
every model's record is made once, in one pass, as the forked packer makes it: its state
(``ModelMonitor.state()``) and its value (``statetopic.pack``: encoded, compressed). That pass
(``record: ...``) includes what a packer pays for reading each model's objects from memory for the first
time; a second pass, warm, times some parts on their own (``part: ...``). CPU µs per model. Then the encoded
records compressed at levels 6 down to 1 (least of 3 passes, µs and bytes per record, against level 6): the
trade of ``statetopic.COMPRESS_LEVEL``. Compare trees by running it with ``PYTHONPATH=<other tree>/src``.

    .venv/bin/python benchmarks/bench_record.py --models 2000 --events 100000   # every model in its warm-up
    .venv/bin/python benchmarks/bench_record.py --models 200 --events 500000    # every model past it
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import zlib
from collections import defaultdict

import bench_fleet
from streamdrift.core.config import MonitorSettings
from streamdrift.core.state import encode_tree
from streamdrift.runtime import state_dictionary, statetopic
from streamdrift.runtime.worker import GC_THRESHOLDS

PARTS = ("join", "performance", "features", "outputs", "labels", "attributions")  # timed on their own


def records(n_models: int, n_predictions: int) -> tuple[dict[str, float], list[bytes], int]:
    """CPU µs per model of a record and of its parts, the encoded records, and how many models are past
    their warm-up."""
    engines, _ = bench_fleet.process(
        bench_fleet.stamped(n_predictions, n_models), MonitorSettings(), float("inf"), n_models
    )
    monitors = [m for engine in engines.values() for m in engine.monitors.values()]
    for monitor in monitors:
        monitor.settle()  # what the engines held is processing, not the record
    summaries = [statetopic.record_summary(m) for m in monitors]  # the summary's cost is not this benchmark's
    gc.collect()
    spent: dict[str, float] = defaultdict(float)
    clock = time.process_time
    # first pass, as the packer makes the records: each model's objects read from memory for the first time
    for monitor, summary in zip(monitors, summaries):
        start = clock()
        state = monitor.state()
        taken = clock()
        statetopic.pack(state, "bench", summary)
        spent["record: state()"] += taken - start
        spent["record: pack()"] += clock() - taken
    # second pass, now warm: the parts
    encoded = []
    for monitor, summary in zip(monitors, summaries):
        for name in PARTS:
            part = getattr(monitor, name)
            start = clock()
            if part is not None:
                part.state()
            spent[f"part: {name}.state()"] += clock() - start
        state = monitor.state()
        start = clock()
        value = encode_tree(state, "bench", {statetopic.SUMMARY_FIELD: summary} if summary is not None else None)
        made = clock()
        deflate = zlib.compressobj(statetopic.COMPRESS_LEVEL, zdict=state_dictionary.CURRENT)
        deflate.compress(value) + deflate.flush()
        spent["part: encode_tree"] += made - start
        spent[f"part: zlib level {statetopic.COMPRESS_LEVEL}, a new compressor"] += clock() - made
        encoded.append(value)
    per_model = {name: round(seconds / len(monitors) * 1e6, 1) for name, seconds in spent.items()}
    return per_model, encoded, sum(m.features.ready for m in monitors)


def levels(encoded: list[bytes]) -> list[dict[str, float]]:
    """Each level's CPU µs and bytes per record (least of 3 passes), and their change against level 6."""
    rows = []
    for level in (6, 5, 4, 3, 2, 1):
        best, size = float("inf"), 0
        for _ in range(3):
            start, size = time.process_time(), 0
            for value in encoded:
                deflate = zlib.compressobj(level, zdict=state_dictionary.CURRENT)
                size += len(deflate.compress(value) + deflate.flush())
            best = min(best, time.process_time() - start)
        rows.append({"level": level, "us": best / len(encoded) * 1e6, "bytes": size / len(encoded)})
    for row in rows:
        row["us_change"] = round(row["us"] - rows[0]["us"], 1)
        row["bytes_change_pct"] = round((row["bytes"] / rows[0]["bytes"] - 1) * 100, 1)
        row["us"], row["bytes"] = round(row["us"], 1), round(row["bytes"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100_000, help="predictions (feedback for half of them)")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    per_model, encoded, ready = records(args.models, args.events)
    print(json.dumps({"models": args.models, "past_warmup": ready, "us_per_model": per_model}))
    print(json.dumps({"encoded_bytes_per_record": round(sum(map(len, encoded)) / len(encoded))}))
    for row in levels(encoded):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
