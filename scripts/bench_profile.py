"""The worker's hot path without Kafka: decode + ModelMonitor over the benchmark's messages.

``measure`` times the two stages separately (events/s of decode alone, of the
monitors alone, of both); ``profile`` runs the same loop under pyinstrument
(a dev tool, not a dependency: ``.venv/bin/pip install pyinstrument``) and
returns its text report. Batches are cut as the worker gets them from
``consume(batch_size)``: consecutive messages, predictions and feedback mixed.
"""

from __future__ import annotations

import time

from bench_stream import Stream
from streamdrift.decode import decode_feedback, decode_predictions
from streamdrift.monitor import ModelMonitor
from streamdrift.records import RawMessage
from streamdrift.settings import MonitorSettings

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


def batches(messages: list[RawMessage], batch_size: int) -> list[tuple[list[RawMessage], list[RawMessage]]]:
    out = []
    for i in range(0, len(messages), batch_size):
        chunk = messages[i: i + batch_size]
        out.append(([m for m in chunk if m.topic == PRED], [m for m in chunk if m.topic == FB]))
    return out


def run(split: list, settings: MonitorSettings) -> dict[str, float]:
    """The worker's ``process`` minus Kafka; seconds spent decoding and monitoring."""
    monitors: dict[str, ModelMonitor] = {}
    decode_s = monitor_s = 0.0
    for preds, fbs in split:
        t0 = time.perf_counter()
        p_batches, _ = decode_predictions(preds)
        f_batches, _ = decode_feedback(fbs)
        t1 = time.perf_counter()
        for b in p_batches:
            mon = monitors.get(b.model_id) or monitors.setdefault(b.model_id, ModelMonitor(b.model_id, settings))
            mon.observe_predictions(b)
        for b in f_batches:
            mon = monitors.get(b.model_id) or monitors.setdefault(b.model_id, ModelMonitor(b.model_id, settings))
            mon.observe_feedback(b)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        monitor_s += t2 - t1
    return {"decode_s": decode_s, "monitor_s": monitor_s}


def measure(n_predictions: int, n_models: int = 10, batch_size: int = 1000) -> dict:
    messages = raw_messages(n_predictions, n_models)
    split = batches(messages, batch_size)
    t = run(split, MonitorSettings())
    n = len(messages)
    total = t["decode_s"] + t["monitor_s"]
    return {"events": n, "decode_events_per_s": n / t["decode_s"], "monitor_events_per_s": n / t["monitor_s"],
            "inprocess_events_per_s": n / total, "decode_share": t["decode_s"] / total}


def profile(n_predictions: int, n_models: int = 10, batch_size: int = 1000) -> str:
    from pyinstrument import Profiler

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
