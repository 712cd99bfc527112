"""What a model costs the first time: its monitor made, its first prediction batch and its first labels, against
its later batches, in CPU µs per call (issue 19).

``bench_fleet.py``'s run is recorded (every ``observe_predictions`` / ``observe_feedback`` call of its engines,
with its batch, in order), then replayed on fresh monitors made by ``monitor_factory``, each call timed and
counted as a model's first of its kind or a later one; the least of ``--rounds`` replays. A replay leaves out
the decoder, the merge and the checkpoints, whose noise under the machine's load hides a few per cent of
processing in ``bench_fleet``'s figures. ``--compare-src DIR`` replays the same recorded calls with another
source tree too (the recording is pickled to a temporary file; batches are plain records).

    .venv/bin/python benchmarks/bench_new_model.py --models 2000 --events 40000
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

KINDS = ("made", "first_predictions", "later_predictions", "first_feedback", "later_feedback")


def record(n_models: int, n_predictions: int) -> list[tuple[str, str, object]]:
    """(model_id, "p" or "f", batch) of every monitor call of ``bench_fleet``'s run, in order."""
    import bench_fleet
    from streamdrift.core.config import MonitorSettings
    from streamdrift.core.monitor import ModelMonitor

    calls: list[tuple[str, str, object]] = []
    observe_predictions, observe_feedback = ModelMonitor.observe_predictions, ModelMonitor.observe_feedback

    def predictions(self: ModelMonitor, batch):  # type: ignore[no-untyped-def]
        calls.append((self.model_id, "p", batch))
        return observe_predictions(self, batch)

    def feedback(self: ModelMonitor, batch):  # type: ignore[no-untyped-def]
        calls.append((self.model_id, "f", batch))
        return observe_feedback(self, batch)

    ModelMonitor.observe_predictions, ModelMonitor.observe_feedback = predictions, feedback  # type: ignore[method-assign]
    try:
        bench_fleet.process(bench_fleet.stamped(n_predictions, n_models), MonitorSettings(), 3.5, n_models)
    finally:
        ModelMonitor.observe_predictions, ModelMonitor.observe_feedback = observe_predictions, observe_feedback  # type: ignore[method-assign]
    return calls


def replay(calls: list[tuple[str, str, object]], rounds: int) -> dict[str, dict[str, float]]:
    """CPU µs per call of each kind (``KINDS``), the least of ``rounds`` replays, and the calls of each."""
    from streamdrift.core.config import MonitorSettings
    from streamdrift.core.monitor import monitor_factory
    from streamdrift.runtime.worker import GC_THRESHOLDS

    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    models = list(dict.fromkeys(model_id for model_id, _, _ in calls))
    best: dict[str, float] = dict.fromkeys(KINDS, math.inf)
    counts: dict[str, int] = defaultdict(int)
    for _ in range(rounds):
        gc.collect()
        make = monitor_factory(MonitorSettings())
        spent: dict[str, float] = defaultdict(float)
        counts.clear()
        t0 = time.process_time()
        monitors = {model_id: make(model_id) for model_id in models}
        spent["made"], counts["made"] = time.process_time() - t0, len(models)
        seen: set[tuple[str, str]] = set()
        for model_id, kind, batch in calls:
            monitor = monitors[model_id]
            name = ("first_" if (model_id, kind) not in seen else "later_") + (
                "predictions" if kind == "p" else "feedback"
            )
            seen.add((model_id, kind))
            observe = monitor.observe_predictions if kind == "p" else monitor.observe_feedback
            t0 = time.process_time()
            observe(batch)  # type: ignore[arg-type]
            spent[name] += time.process_time() - t0
            counts[name] += 1
        for kind in KINDS:
            best[kind] = min(best[kind], spent[kind])
    return {
        kind: {
            "calls": counts[kind],
            "us_per_call": round(best[kind] / counts[kind] * 1e6, 1),
            "s": round(best[kind], 3),
        }
        for kind in KINDS
    } | {"total": {"s": round(sum(best.values()), 3), "one_time_us_per_model": one_time(best, counts)}}


def one_time(best: dict[str, float], counts: dict[str, int]) -> float:
    """A model's monitor made, and what its first batch of each kind cost beyond a later one, µs."""
    per_call = {kind: best[kind] / max(1, counts[kind]) * 1e6 for kind in KINDS}
    return round(
        per_call["made"]
        + per_call["first_predictions"]
        - per_call["later_predictions"]
        + per_call["first_feedback"]
        - per_call["later_feedback"],
        1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--events", type=int, default=40_000, help="predictions (feedback for half of them)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare-src", help="another source tree (its src/ directory): replayed in the same run")
    parser.add_argument("--replay", help=argparse.SUPPRESS)  # a child's recording to replay (one JSON line out)
    args = parser.parse_args()
    if args.replay:
        with open(args.replay, "rb") as f:
            print(json.dumps(replay(pickle.load(f), args.rounds)))
        return
    calls = record(args.models, args.events)
    with tempfile.NamedTemporaryFile(suffix=".pickle") as f:
        pickle.dump(calls, f)
        f.flush()
        trees = {"this": None} | ({"compared": args.compare_src} if args.compare_src else {})
        for name, src in trees.items():  # each in a fresh process, of its own tree
            env = dict(os.environ) | ({"PYTHONPATH": src} if src else {})
            cmd = [sys.executable, __file__, "--replay", f.name, "--rounds", str(args.rounds)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr)
            print(json.dumps({"models": args.models, "tree": name, **json.loads(done.stdout.splitlines()[-1])}))


if __name__ == "__main__":
    main()
