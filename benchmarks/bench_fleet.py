"""A fleet's cost in-process: the engines of a worker behind on its backlog, and its checkpoints, per model count.

``bench.py``'s fleet table times a worker over Kafka, where the machine's load moves the figures by a fifth
or more, and where a checkpoint's cost per event depends on how many events came in its interval (wall
time). Here, without Kafka, one process: ``PartitionEngine`` s as a worker runs them while it is behind (its
``hold`` of 10 polls, ``batch_size`` 1,000, the idle TTL of 30 days), fed the benchmark's stream in polls of
``batch_size`` per topic partition; then one checkpoint of every model as the state-topic store writes it
(``state()``, then ``statetopic.pack``). Reports CPU µs per event of processing, and CPU µs per model of a
checkpoint, the least of ``--rounds``. Compare figures of one run (``--compare-src`` runs another source tree
in the same run, interleaved).

    .venv/bin/python benchmarks/bench_fleet.py --models 10,200,2000
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import time

import orjson

from bench_profile import FB, PARTITIONS, PRED, raw_messages
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.runtime.statetopic import pack
from streamdrift.runtime.worker import GC_THRESHOLDS, HOLD_BATCHES

BATCH_SIZE = 1000
IDLE_TTL_S = 30 * 86400.0  # the worker's default model_idle_ttl_s


def stamped(n_predictions: int, n_models: int) -> list[RawMessage]:
    """The stream with Kafka timestamps (its event times), as a worker receives it."""
    return [
        dataclasses.replace(m, timestamp_ms=int(orjson.loads(m.value)["timestamp"] * 1000))  # type: ignore[arg-type]
        for m in raw_messages(n_predictions, n_models)
    ]


def process(messages: list[RawMessage], settings: MonitorSettings) -> tuple[dict[int, PartitionEngine], float]:
    """Every partition's records through its engine, in polls of BATCH_SIZE per topic; CPU seconds."""
    runs: dict[tuple[int, str], list[RawMessage]] = {}
    for m in messages:
        runs.setdefault((m.partition, m.topic), []).append(m)
    engines = {
        p: PartitionEngine(
            p,
            PRED,
            FB,
            monitor_factory(settings),
            epoch_ms=1000,
            batch_size=BATCH_SIZE,
            hold=HOLD_BATCHES * BATCH_SIZE,
            model_idle_ttl_s=IDLE_TTL_S,
        )
        for p in range(PARTITIONS)
    }
    t0 = time.process_time()
    for p, engine in engines.items():
        predictions, feedback = runs.get((p, PRED), []), runs.get((p, FB), [])
        for at in range(0, max(len(predictions), len(feedback)), BATCH_SIZE):
            engine.add(PRED, predictions[at : at + BATCH_SIZE])
            engine.add(FB, feedback[at : at + BATCH_SIZE])
            engine.release(flush=False)  # behind: the engine holds up to HOLD_BATCHES polls
        engine.release(ended={PRED, FB})
    return engines, time.process_time() - t0


def checkpoint(engines: dict[int, PartitionEngine]) -> float:
    """CPU seconds of one checkpoint of every model as the state-topic store writes them."""
    t0 = time.process_time()
    for engine in engines.values():
        for state in engine.snapshot().models.values():
            pack(state, "bench")
    return time.process_time() - t0


def measure(n_models: int, n_predictions: int, rounds: int, multivariate: bool = False) -> dict[str, float]:
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    messages = stamped(n_predictions, n_models)
    best = {"process_us_per_event": float("inf"), "checkpoint_us_per_model": float("inf")}
    for _ in range(rounds):
        engines, process_s = process(messages, MonitorSettings(multivariate=multivariate))
        counted = sum(m.predictions_total + m.feedback_total for e in engines.values() for m in e.monitors.values())
        assert counted == len(messages), (counted, len(messages))
        models = sum(len(e.monitors) for e in engines.values())
        gc.collect()
        checkpoint_s = checkpoint(engines)
        best["process_us_per_event"] = min(best["process_us_per_event"], process_s / len(messages) * 1e6)
        best["checkpoint_us_per_model"] = min(best["checkpoint_us_per_model"], checkpoint_s / models * 1e6)
        del engines
    return {"models": n_models, "events": len(messages), **{k: round(v, 2) for k, v in best.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="10,200,2000", help="model counts, comma-separated")
    parser.add_argument("--events", type=int, default=100_000, help="predictions (feedback for half of them)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-src", help="another source tree (its src/ directory): timed in the same run")
    parser.add_argument("--multivariate", action="store_true", help="every model with multivariate drift on")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's model count (one JSON line out)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.events, args.rounds, args.multivariate)))
        return
    trees = {"this": None} | ({"compared": args.compare_src} if args.compare_src else {})
    for n_models in (int(m) for m in args.models.split(",")):
        row: dict[str, object] = {"models": n_models}
        for name, src in trees.items():  # a fresh process each: no warm caches, the tree's own imports
            env = dict(os.environ) | ({"PYTHONPATH": src} if src else {})
            cmd = [sys.executable, __file__, "--one", str(n_models), "--events", str(args.events)]
            cmd += ["--multivariate"] if args.multivariate else []
            done = subprocess.run([*cmd, "--rounds", str(args.rounds)], env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr)
            row[name] = json.loads(done.stdout.splitlines()[-1])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
