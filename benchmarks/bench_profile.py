"""The worker's hot path without Kafka: decode + ModelMonitor over the benchmark's messages.

``measure`` times the two stages separately, in CPU µs per event, beside
``orjson.loads`` alone and ``bench_baseline``'s per-event loop over the same
messages: the gap to the baseline split into decoding and monitoring, free of
Kafka and of the noise between processes; ``profile`` runs the same loop under pyinstrument
(a dev tool, not a dependency: ``.venv/bin/pip install pyinstrument``) and
returns its text report. Batches are cut as a worker decodes them in a
backlog (``batches``).
"""

from __future__ import annotations

import gc
import time

import orjson

from bench_stream import Stream
from streamdrift.core.config import MonitorSettings
from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.runtime.worker import GC_THRESHOLDS

PARTITIONS = 4
PRED, FB = "predictions", "feedback"


def raw_messages(n_predictions: int, n_models: int = 10, seed: int = 42) -> list[RawMessage]:
    """The stream as the worker would receive it, models spread over ``PARTITIONS`` partitions."""
    offsets: dict[tuple[str, int], int] = {}
    out: list[RawMessage] = []
    for chunk in Stream(n_models, seed).chunks(n_predictions):
        for topic, items in ((PRED, chunk.predictions), (FB, chunk.feedback)):
            for key, value in items:
                p = int(key.rsplit(b"-", 1)[1]) % PARTITIONS
                o = offsets.get((topic, p), 0)
                offsets[(topic, p)] = o + 1
                out.append(RawMessage(topic, p, o, key, value))
    return out


def batches(messages: list[RawMessage], batch_size: int) -> list[tuple[str, list[RawMessage]]]:
    """``(topic, messages)`` as a worker catching up on a backlog decodes them.

    Its merge hands over runs of one topic partition, which ``_process_run``
    decodes ``batch_size`` at a time (wrapping decode in a real worker over the
    benchmark's topics shows runs of 1,000 for nine tenths of the events). So:
    windows of ``batch_size`` messages per topic partition, each grouped by
    (partition, topic), stably, predictions first (as the merge releases an
    epoch), and sliced by ``batch_size``.
    """
    out = []
    window = batch_size * 2 * PARTITIONS
    for i in range(0, len(messages), window):
        runs: dict[tuple[int, str], list[RawMessage]] = {}
        for m in messages[i : i + window]:
            runs.setdefault((m.partition, m.topic), []).append(m)
        for (_, topic), run in sorted(runs.items(), key=lambda item: (item[0][0], item[0][1] != PRED)):
            out.extend((topic, run[j : j + batch_size]) for j in range(0, len(run), batch_size))
    return out


def run(split: list[tuple[str, list[RawMessage]]], settings: MonitorSettings) -> dict[str, float]:
    """The worker's ``process`` minus Kafka; CPU seconds spent decoding and monitoring."""
    monitors: dict[str, ModelMonitor] = {}
    decode_s = monitor_s = 0.0
    for topic, messages in split:
        predictions = topic == PRED
        t0 = time.process_time()
        decoded, _ = (decode_predictions if predictions else decode_feedback)(messages)
        t1 = time.process_time()
        for b in decoded:
            mon = monitors.get(b.model_id) or monitors.setdefault(b.model_id, ModelMonitor(b.model_id, settings))
            if predictions:
                mon.observe_predictions(b)
            else:
                mon.observe_feedback(b)
        t2 = time.process_time()
        decode_s += t1 - t0
        monitor_s += t2 - t1
    return {"decode_s": decode_s, "monitor_s": monitor_s}


def parse_only(messages: list[RawMessage]) -> float:
    """CPU seconds of ``orjson.loads`` over every message: what the floor and the baseline pay too."""
    t0 = time.process_time()
    for m in messages:
        orjson.loads(m.value)
    return time.process_time() - t0


def baseline_loop(messages: list[RawMessage]) -> float:
    """CPU seconds of ``bench_baseline``'s per-event loop over the same messages, without Kafka."""
    from river.drift import ADWIN

    from bench_baseline import Monitor

    monitors: dict[str, Monitor] = {}
    t0 = time.process_time()
    for m in messages:
        event = orjson.loads(m.value)
        monitor = monitors.get(event["model_id"])
        if monitor is None:
            monitor = monitors[event["model_id"]] = Monitor(ADWIN)
        if m.topic == PRED:
            monitor.prediction(event)
        else:
            monitor.feedback(event)
    return time.process_time() - t0


def measure(n_predictions: int, n_models: int = 10, batch_size: int = 1000, rounds: int = 3) -> dict:
    """CPU µs per event of each stage, and of the baseline's loop, in one process: the least of ``rounds``.

    Without Kafka, so the split is exact where the Kafka run's is not: how much of the
    gap to the baseline is decoding and how much is the monitors' work.
    """
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    messages = raw_messages(n_predictions, n_models)
    split = batches(messages, batch_size)
    n = len(messages)
    best: dict[str, float] = {}
    for _ in range(rounds):  # interleaved, so that a slow minute of the machine hits every stage alike
        t = run(split, MonitorSettings())
        t["parse_s"] = parse_only(messages)
        t["baseline_s"] = baseline_loop(messages)
        for k, v in t.items():
            best[k] = min(best.get(k, v), v)
    us = {k.removesuffix("_s"): max(v, 1e-9) / n * 1e6 for k, v in best.items()}
    total = us["decode"] + us["monitor"]
    return {
        "events": n,
        "decode_us_per_event": us["decode"],
        "monitor_us_per_event": us["monitor"],
        "parse_us_per_event": us["parse"],
        "baseline_us_per_event": us["baseline"],
        "inprocess_us_per_event": total,
        "inprocess_events_per_s": 1e6 / total,
        "decode_events_per_s": 1e6 / us["decode"],
        "monitor_events_per_s": 1e6 / us["monitor"],
        "decode_share": us["decode"] / total,
        "inprocess_ratio_to_baseline": us["baseline"] / total,
        # the most a decoder costing only orjson.loads could give: parse + the monitors, against the baseline
        "parse_and_monitor_ratio_to_baseline": us["baseline"] / (us["parse"] + us["monitor"]),
    }


def profile(n_predictions: int, n_models: int = 10, batch_size: int = 1000) -> str:
    from pyinstrument import Profiler

    gc.set_threshold(*GC_THRESHOLDS)
    split = batches(raw_messages(n_predictions, n_models), batch_size)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    run(split, MonitorSettings())
    profiler.stop()
    return profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False)


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="predictions (feedback for half of them)")
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--pyinstrument", action="store_true", help="print pyinstrument's report too")
    args = parser.parse_args()
    print(json.dumps(measure(args.events, args.models, args.batch_size)))
    if args.pyinstrument:
        print(profile(args.events, args.models, args.batch_size))
