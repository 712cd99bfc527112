"""A model's summary as a checkpoint record carries it, and as ``/status`` shows it: CPU per model (issue 19).

The models are ``bench_fleet.py``'s, after its whole stream (2,000 models: each in its warm-up, with a few dozen
labels). Timed, per model, the least of ``--rounds``: ``summary()`` (what the exporter publishes) and
``record_summary`` (``summary()`` made into the JSON a state-topic record carries, checked to read back equal),
each made afresh (``summary()``'s cache emptied first: a model changed since the loop last made its summary) in
this process; then as the worker's forked packer takes them, in a forked child after every model's ``state()``
(the child's own CPU, user and system: its copy-on-write faults are its own): ``record_summary`` made afresh,
and after the loop made every model's summary (the exporter published them, no batch since). ``--compare-src``
times another source tree the same way, its rounds interleaved with this one's (compare figures of one run:
the machine is shared).

    .venv/bin/python benchmarks/bench_summary.py --models 2000 --compare-src /work/wt/base/src
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import time

from bench_fleet import process, stamped
from streamdrift.core.config import MonitorSettings
from streamdrift.core.monitor import ModelMonitor
from streamdrift.runtime.statetopic import record_summary
from streamdrift.runtime.worker import GC_THRESHOLDS


def fleet(n_models: int, n_predictions: int) -> list[ModelMonitor]:
    """``bench_fleet``'s models after its stream, their held rows counted (as before a checkpoint's fork)."""
    messages = stamped(n_predictions, n_models)
    engines, _ = process(messages, MonitorSettings(), math.inf, n_models)
    monitors = [m for e in engines.values() for m in e.monitors.values() if isinstance(m, ModelMonitor)]
    for monitor in monitors:
        monitor.settle()
    return monitors


def afresh(monitors: list[ModelMonitor]) -> None:
    """Empty each monitor's cache of its summary (a model changed since its last one; a tree without that cache
    has nothing to empty)."""
    for monitor in monitors:
        monitor._summary = None


def per_model(monitors: list[ModelMonitor], what: str) -> float:
    """CPU µs per model of ``what`` (``summary``, ``record_summary``) made afresh over ``monitors``, in this process."""
    afresh(monitors)
    started = time.process_time()
    for monitor in monitors:
        monitor.summary() if what == "summary" else record_summary(monitor)
    return (time.process_time() - started) / len(monitors) * 1e6


def forked(monitors: list[ModelMonitor], published: bool) -> dict[str, float]:
    """In a forked child, as the packer: every model's ``state()``, then its ``record_summary``; the child's CPU
    (user and system) per model of each. ``published``: the loop made every summary before the fork."""
    afresh(monitors)
    if published:
        for monitor in monitors:
            monitor.summary()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the packer's gc.disable() too
        os.close(read)
        gc.disable()

        def cpu() -> float:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime

        t0 = cpu()
        for monitor in monitors:
            monitor.state()
        t1 = cpu()
        for monitor in monitors:
            record_summary(monitor)
        t2 = cpu()
        n = len(monitors)
        os.write(write, json.dumps({"state": (t1 - t0) / n * 1e6, "record": (t2 - t1) / n * 1e6}).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 4096):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    result: dict[str, float] = json.loads(data)
    return result


def measure(n_models: int, n_predictions: int) -> dict[str, object]:
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs
    monitors = fleet(n_models, n_predictions)
    gc.collect()
    gc.freeze()  # as the worker does with its long-lived state: the timings below are not the collector's
    changed, published = forked(monitors, published=False), forked(monitors, published=True)
    return {
        "models": len(monitors),
        "labelled_per_model": round(sum(m.labelled_total for m in monitors) / len(monitors), 1),
        "summary_us": per_model(monitors, "summary"),
        "record_us": per_model(monitors, "record_summary"),
        "forked_state_us": changed["state"],
        "forked_record_us": changed["record"],
        "forked_record_published_us": published["record"],
    }


def child(args: argparse.Namespace, src: str | None) -> dict[str, object]:
    """One round in a fresh process, of the source tree ``src`` (None: this one)."""
    env = dict(os.environ) | ({"PYTHONPATH": src} if src else {})
    cmd = [sys.executable, __file__, "--one", "--models", str(args.models), "--events", str(args.events)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100_000, help="predictions (feedback for half of them)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-src", help="another source tree (its src/ directory): timed in the same run")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child's round (one JSON line out)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.models, args.events)))
        return
    trees = {"this": None} | ({"compared": args.compare_src} if args.compare_src else {})
    best: dict[str, dict[str, object]] = {}
    for _ in range(args.rounds):
        for name, src in trees.items():
            one = child(args, src)
            kept = best.setdefault(name, one)
            for key in (k for k in one if k.endswith("_us")):
                kept[key] = min(kept[key], one[key])  # type: ignore[type-var]
    rounded = {
        name: {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()} for name, row in best.items()
    }
    print(json.dumps(rounded))


if __name__ == "__main__":
    main()
