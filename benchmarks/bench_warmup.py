"""What a model in warm-up costs: snapshot bytes, resident memory and feeding time, in a process of its own.

``--models`` models of the benchmark stream (24 features, ``bench_stream.Stream``) are fed decoded polls until
each has about ``--rows`` predictions (default: half of ``reference_size``, so every sketch is mid-warm-up).
Then their states are encoded (``snapshot.dumps``, what both stores write) and monitors restored from them
(the memory they allocate, by ``tracemalloc``). Prints one JSON object.

    .venv/bin/python benchmarks/bench_warmup.py --models 50
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc

import orjson

from bench_stream import Stream
from streamdrift.core import state as snapshot
from streamdrift.core.config import MonitorSettings
from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--rows", type=int, default=None, help="predictions per model (default reference_size / 2)")
    parser.add_argument(
        "--poll", type=int, default=5_000, help="events decoded at a time (a model's batch: poll / models)"
    )
    args = parser.parse_args(argv)
    settings = MonitorSettings()
    rows = args.rows or settings.reference_size // 2
    stream = Stream(args.models, seed=7, feedback_share=1.0)
    monitors: dict[str, ModelMonitor] = {}
    offset, fed = 0, 0.0
    for chunk in stream.chunks(rows * args.models, size=args.poll):
        preds = [RawMessage("p", 0, offset + i, k, v) for i, (k, v) in enumerate(chunk.predictions)]
        fbs = [RawMessage("f", 0, offset + i, k, v) for i, (k, v) in enumerate(chunk.feedback)]
        offset += len(chunk)
        p_batches, f_batches = decode_predictions(preds)[0], decode_feedback(fbs)[0]
        started = time.perf_counter()
        for batch in p_batches:
            monitors.setdefault(batch.model_id, ModelMonitor(batch.model_id, settings)).observe_predictions(batch)
        for batch in f_batches:
            monitors.setdefault(batch.model_id, ModelMonitor(batch.model_id, settings)).observe_feedback(batch)
        fed += time.perf_counter() - started
    assert not any(m.features.ready for m in monitors.values()), "a model is past its warm-up: lower --rows"
    started = time.perf_counter()
    states = [snapshot.dumps(m.state()) for m in monitors.values()]
    encode_s = time.perf_counter() - started
    del monitors
    gc.collect()
    tracemalloc.start()  # freed memory would hide resident growth: Python's and numpy's allocations, counted
    restored = [ModelMonitor.from_state(f"m{i}", settings, snapshot.loads(s)) for i, s in enumerate(states)]
    gc.collect()
    allocated = tracemalloc.get_traced_memory()[0] / len(restored)
    tracemalloc.stop()
    print(
        orjson.dumps(
            {
                "models": len(states),
                "predictions_per_model": rows,
                "state_bytes_per_model": sum(map(len, states)) / len(states),
                "allocated_bytes_per_restored_model": allocated,
                "observe_us_per_prediction": fed / (rows * len(states)) * 1e6,
                "state_encode_us_per_model": encode_s / len(states) * 1e6,
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
