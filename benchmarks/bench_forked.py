"""A fleet's checkpoints as the worker forks them, in-process: CPU of the loop and of each forked copy.

``bench_fleet.py`` takes its checkpoints in its own process, so what the worker's fork changes does not show
there: the copy's work is lost to the loop (what it counts is counted again by the loop or by the next copy).
Here ``bench_fleet.process``'s engines and polls, and at each checkpoint the loop flushes what its engines hold
and settles the changed models (``PartitionEngine.settle``, as the worker does before it forks), then a forked
child takes their states and packs them (``statetopic.pack``, without summaries), and the loop waits for it; the
child's CPU is read from ``os.wait4``. Reports CPU µs per event of processing (the flushes included), of the loop's
settling before each fork (its pause, but for the fork itself) and of the children, one round (compare rounds of
one run only).

    .venv/bin/python benchmarks/bench_forked.py --models 2000 --events 400000 --every 40
    .venv/bin/python benchmarks/bench_forked.py --models 200 --events 100000 --every 40 --no-count-pending
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time

from bench_fleet import Run, process, stamped
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.sketch import StreamSketch
from streamdrift.runtime.statetopic import pack
from streamdrift.runtime.worker import GC_THRESHOLDS


def forked_checkpoint(engines: dict[int, PartitionEngine], changed: dict[int, set[str]], run: Run) -> None:
    """The loop's part (flush: processing; settle: ``run.checkpoint_s``), then a forked child's (states taken and
    packed: ``run.children_s``), as the worker's."""
    t0 = time.process_time()
    for engine in engines.values():
        engine.flush()
    t1 = time.process_time()
    for p, engine in engines.items():
        engine.settle(changed[p])
    t2 = time.process_time()
    pid = os.fork()
    if pid == 0:  # the copy: takes and packs, then leaves without running the parent's exit handlers
        for p, engine in engines.items():
            for state in engine.snapshot(changed[p]).models.values():
                pack(state, "bench")
        os._exit(0)
    _, status, usage = os.wait4(pid, 0)
    assert status == 0, f"the packing child failed ({status})"
    run.process_s += t1 - t0
    run.checkpoint_s += t2 - t1
    run.children_s += usage.ru_utime + usage.ru_stime
    run.checkpoints += 1
    for models in changed.values():
        models.clear()


def measure(n_models: int, n_predictions: int, every: float) -> dict[str, object]:
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    messages = stamped(n_predictions, n_models)
    _, run = process(messages, MonitorSettings(), every, n_models, take=forked_checkpoint)
    cpu = {"process": run.process_s, "loop_checkpoint": run.checkpoint_s, "children": run.children_s}
    per_event = {f"{k}_us_per_event": round(v / len(messages) * 1e6, 2) for k, v in cpu.items()}
    everything = round(sum(cpu.values()) / len(messages) * 1e6, 2)
    return {"models": n_models, "events": len(messages), "every": every, **per_event, "all_us_per_event": everything}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100_000, help="predictions (feedback for half of them)")
    parser.add_argument("--every", type=float, default=40.0, help="events per model between checkpoints")
    parser.add_argument(
        "--no-count-pending",
        action="store_true",
        help="the loop leaves the warm-up columns' uncounted numbers to the copy (before 2026-12-05's change)",
    )
    args = parser.parse_args()
    if args.no_count_pending:
        StreamSketch.count_pending = lambda self: None  # type: ignore[method-assign]
    print(json.dumps(measure(args.models, args.events, args.every) | {"count_pending": not args.no_count_pending}))


if __name__ == "__main__":
    main()
