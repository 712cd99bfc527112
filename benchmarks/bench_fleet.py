"""A fleet's cost in-process: the engines of a worker behind on its backlog, and its checkpoints, per model count.

``bench.py``'s fleet table times a worker over Kafka, where the machine's load moves the figures by a fifth
or more, and where a checkpoint's cost per event depends on how many events came in its interval (wall
time). Here, without Kafka, one process: ``PartitionEngine`` s as a worker runs them while it is behind (its
``hold`` of 10 polls, ``batch_size`` 1,000, the idle TTL of 30 days), fed the benchmark's stream in polls of
``batch_size`` per topic partition, and a checkpoint every ``--every`` events per model as a worker of the
state-topic store takes it: its engines flush what they hold (processing), then every model changed since
the last checkpoint is taken (``state()``) and packed (``statetopic.pack``). ``--every`` is what
``checkpoint_interval_s`` amounts to at a throughput: 3.5 (the default) is the worker of docs/scaling.md,
3,551 events/s over 10,000 models with the default 10 s; ``once``: a single checkpoint at the end, which
hides how often a worker flushes and rewrites its models. ``--epoch-ms`` is the merge's epoch (1,000 by default:
the Kafka fleet phase produces as fast as the broker takes records, so its 100 ms epochs of Kafka timestamps hold
about as many records as 1,000 ms of this stream's event times; a worker behind on a log written at 10,000
predictions/s, with the default ``merge_epoch_ms`` of 100, sees ``--epoch-ms 100``: a tenth of the records per
run, so smaller batches). Reports CPU µs per event of processing (the
flushes included) and of checkpoints, and CPU µs per model packed, each the least of ``--rounds``. Compare
figures of one run (``--compare-src`` runs another source tree in the same run, interleaved).

    .venv/bin/python benchmarks/bench_fleet.py --models 10,200,2000
    .venv/bin/python benchmarks/bench_fleet.py --models 2000 --every once   # the figures before 2026-12-05
    .venv/bin/python benchmarks/bench_fleet.py --models 2000 --epoch-ms 100  # a backlog written at 10,000/s
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable

import orjson

from bench_profile import FB, PARTITIONS, PRED, raw_messages
from streamdrift.core.config import MonitorSettings
from streamdrift.core.engine import Batch, BatchHook, DriftEvent, PartitionEngine
from streamdrift.core.monitor import monitor_factory
from streamdrift.core.records import RawMessage
from streamdrift.runtime.statetopic import pack
from streamdrift.runtime.worker import GC_THRESHOLDS, HOLD_BATCHES

BATCH_SIZE = 1000
EPOCH_MS = 1000  # the merge's epoch (see the module's docstring)
IDLE_TTL_S = 30 * 86400.0  # the worker's default model_idle_ttl_s


def stamped(n_predictions: int, n_models: int) -> list[RawMessage]:
    """The stream with Kafka timestamps (its event times), as a worker receives it."""
    return [
        dataclasses.replace(m, timestamp_ms=int(orjson.loads(m.value)["timestamp"] * 1000))  # type: ignore[arg-type]
        for m in raw_messages(n_predictions, n_models)
    ]


@dataclasses.dataclass
class Run:
    """What one round cost, CPU seconds, and what it checkpointed."""

    process_s: float = 0.0  # decoding and monitoring, the flushes before checkpoints included
    checkpoint_s: float = 0.0  # the changed models' states taken and packed
    checkpoints: int = 0
    models_packed: int = 0
    children_s: float = 0.0  # forked copies' CPU, where they take the states (``bench_forked.py``)
    calls: int = 0  # a model's batches observed (``observe_predictions``, ``observe_feedback``), every model's


def engines_for(
    settings: MonitorSettings, changed: dict[int, set[str]], epoch_ms: int = EPOCH_MS, run: Run | None = None
) -> dict[int, PartitionEngine]:
    """A worker's engines, one per partition, each noting the models it changed (as the worker does), and
    counting the batches its models observe in ``run.calls``."""
    run = run or Run()

    def noting(p: int) -> BatchHook:
        def note(topic: str, batch: Batch, monitored: bool, events: list[DriftEvent]) -> None:
            changed[p].add(batch.model_id)
            run.calls += 1

        return note

    return {
        p: PartitionEngine(
            p,
            PRED,
            FB,
            monitor_factory(settings),
            epoch_ms=epoch_ms,
            batch_size=BATCH_SIZE,
            hold=HOLD_BATCHES * BATCH_SIZE,
            model_idle_ttl_s=IDLE_TTL_S,
            on_batch=noting(p),
        )
        for p in range(PARTITIONS)
    }


def process(
    messages: list[RawMessage],
    settings: MonitorSettings,
    every: float,
    n_models: int,
    epoch_ms: int = EPOCH_MS,
    take: Callable[[dict[int, PartitionEngine], dict[int, set[str]], Run], None] | None = None,
) -> tuple[dict[int, PartitionEngine], Run]:
    """Every partition's records through its engine, in polls of BATCH_SIZE per topic partition, a checkpoint
    every ``every`` events per model (inf: once, at the end), taken by ``take`` (``checkpoint`` by default)."""
    take = take or checkpoint
    runs: dict[tuple[int, str], list[RawMessage]] = {}
    for m in messages:
        runs.setdefault((m.partition, m.topic), []).append(m)
    changed: dict[int, set[str]] = {p: set() for p in range(PARTITIONS)}
    run = Run()
    engines = engines_for(settings, changed, epoch_ms, run)
    events, next_at = 0, every * n_models
    longest = max(len(records) for records in runs.values())
    for at in range(0, longest, BATCH_SIZE):
        t0 = time.process_time()
        for p, engine in engines.items():
            predictions = runs.get((p, PRED), [])[at : at + BATCH_SIZE]
            feedback = runs.get((p, FB), [])[at : at + BATCH_SIZE]
            engine.add(PRED, predictions)
            engine.add(FB, feedback)
            engine.release(flush=False)  # behind: the engine holds up to HOLD_BATCHES polls
            events += len(predictions) + len(feedback)
        run.process_s += time.process_time() - t0
        if events >= next_at:
            while next_at <= events:
                next_at += every * n_models
            take(engines, changed, run)
    t0 = time.process_time()
    for engine in engines.values():
        engine.release(ended={PRED, FB})
    run.process_s += time.process_time() - t0
    take(engines, changed, run)
    return engines, run


def checkpoint(engines: dict[int, PartitionEngine], changed: dict[int, set[str]], run: Run) -> None:
    """A checkpoint as the state-topic store takes it: what the engines hold processed first (processing),
    then each model changed since the last one taken and packed (checkpoint)."""
    t0 = time.process_time()
    for engine in engines.values():
        engine.flush()
    t1 = time.process_time()
    for p, engine in engines.items():
        for state in engine.snapshot(changed[p]).models.values():
            pack(state, "bench")
            run.models_packed += 1
        changed[p].clear()
    t2 = time.process_time()
    run.process_s += t1 - t0
    run.checkpoint_s += t2 - t1
    run.checkpoints += 1


def measure(
    n_models: int,
    n_predictions: int,
    rounds: int,
    every: float = 3.5,
    multivariate: bool = False,
    epoch_ms: int = EPOCH_MS,
) -> dict[str, object]:
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    messages = stamped(n_predictions, n_models)
    best = dict.fromkeys(("process_us_per_event", "checkpoint_us_per_event", "checkpoint_us_per_model"), math.inf)
    checkpoints = calls = 0
    for _ in range(rounds):
        gc.collect()
        engines, run = process(messages, MonitorSettings(multivariate=multivariate), every, n_models, epoch_ms)
        counted = sum(m.predictions_total + m.feedback_total for e in engines.values() for m in e.monitors.values())
        assert counted == len(messages), (counted, len(messages))
        best["process_us_per_event"] = min(best["process_us_per_event"], run.process_s / len(messages) * 1e6)
        best["checkpoint_us_per_event"] = min(best["checkpoint_us_per_event"], run.checkpoint_s / len(messages) * 1e6)
        best["checkpoint_us_per_model"] = min(
            best["checkpoint_us_per_model"], run.checkpoint_s / max(1, run.models_packed) * 1e6
        )
        checkpoints, calls = run.checkpoints, run.calls
        del engines
    return {
        "models": n_models,
        "events": len(messages),
        "every": every if math.isfinite(every) else "once",
        "epoch_ms": epoch_ms,
        "checkpoints": checkpoints,  # at most one per poll of every partition: few models get more events each
        "events_per_model_per_checkpoint": round(len(messages) / checkpoints / n_models, 1),
        # what a fleet's cost follows (docs/scaling.md): the rows a model's batch has, on average; the same
        # in every round, whatever the machine
        "rows_per_call": round(len(messages) / calls, 2),
        **{k: round(v, 2) for k, v in best.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="10,200,2000", help="model counts, comma-separated")
    parser.add_argument("--events", type=int, default=100_000, help="predictions (feedback for half of them)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--every",
        default="3.5",
        help="events per model between checkpoints ('once': a single checkpoint at the end)",
    )
    parser.add_argument("--compare-src", help="another source tree (its src/ directory): timed in the same run")
    parser.add_argument("--multivariate", action="store_true", help="every model with multivariate drift on")
    parser.add_argument("--epoch-ms", type=int, default=EPOCH_MS, help="the merge's epoch (see the docstring)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's model count (one JSON line out)
    args = parser.parse_args()
    if args.one is not None:
        every = math.inf if args.every == "once" else float(args.every)
        print(json.dumps(measure(args.one, args.events, args.rounds, every, args.multivariate, args.epoch_ms)))
        return
    trees = {"this": None} | ({"compared": args.compare_src} if args.compare_src else {})
    for n_models in (int(m) for m in args.models.split(",")):
        row: dict[str, dict[str, object]] = {}
        # a round of each tree in turn, each in a fresh process (no warm caches, the tree's own imports): a
        # load that changes during the run weighs on both trees alike, and each keeps its least
        for _ in range(args.rounds):
            for name, src in trees.items():
                one = child(n_models, args, src)
                best = row.setdefault(name, one)
                for key in ("process_us_per_event", "checkpoint_us_per_event", "checkpoint_us_per_model"):
                    best[key] = min(best[key], one[key])  # type: ignore[type-var]
        print(json.dumps({"models": n_models, **row}), flush=True)


def child(n_models: int, args: argparse.Namespace, src: str | None) -> dict[str, object]:
    """One round of ``n_models`` in a fresh process, of the source tree ``src`` (None: this one)."""
    env = dict(os.environ) | ({"PYTHONPATH": src} if src else {})
    cmd = [sys.executable, __file__, "--one", str(n_models), "--events", str(args.events), "--every", args.every]
    cmd += ["--epoch-ms", str(args.epoch_ms)]
    cmd += ["--multivariate"] if args.multivariate else []
    done = subprocess.run([*cmd, "--rounds", "1"], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
