#!/usr/bin/env python3
"""Benchmark streamdrift against the physical floor and a hand-written baseline, in one run.

    .venv/bin/python benchmarks/bench.py [--events N] [--models M] [--bootstrap HOST:PORT] [--repeat R]
                                      [--no-latency] [--memory] [--profile] [--details FILE]

Without ``--bootstrap`` a real Kafka broker is started on free ports in a
temporary directory (``scripts/kafka`` via ``scripts/kafka_broker.py``) and
stopped at the end.

1. **Produce** N predictions (M models, 20 numeric + 4 categorical features,
   feedback for half of them; ``bench_stream``), keyed by model_id with the
   murmur2 partitioner, to topics made by ``streamdrift topics create``.
2. **Throughput**, on those topics, each consumer from their beginning to
   their end, each in a process of its own:
   - *floor*: batched consume + ``orjson.loads`` (``bench_baseline floor``);
   - *streamdrift*: ``python -m streamdrift worker`` with default settings,
     a fresh group and snapshot dir; timed from ready (partitions assigned)
     to when ``/status`` (polled at 5 Hz) counts every event;
   - *baseline*: per-event River ADWINs + running accuracy (``bench_baseline baseline``).
   Each reports events/s (wall clock) and CPU microseconds per event (the
   process's CPU time, librdkafka's threads and the worker's ended forked
   checkpoint writers included), which other work on the
   machine disturbs less. ``--repeat R`` runs R rounds of the three and
   reports medians; ratios are taken within a round.
   *Fleet* (``--fleet``, on by default): one round of the three again at each
   of ``--fleet-models`` (10, 200, 2,000; and 10,000 with ``--memory``, its
   larger ``--memory-models``) on a
   stream of ``--fleet-events`` predictions of its own (100,000; the ``--models`` row
   is the phase above): whether an event's cost grows with the number of
   models (issue 19). With ``--compare-python`` each row times that worker too.
3. **Latency** (``--latency``, on by default): a fresh worker, a stream paced
   at half the worker's measured events/s in which every model drifts (2
   features shifted) at staggered points, again and again. Measured: drift
   event read from the alerts topic − Kafka timestamp of the prediction that
   triggered it (``window.end_offset``), and a prediction's Kafka timestamp →
   the moment ``/metrics`` counts it (``streamdrift_events_total``).
4. **Memory and state** (``--memory``): resident memory and state bytes per
   model at 1,000 and 10,000 models (join buffers aside, and one full join
   buffer on its own), snapshot write/load at 10,000 (``bench_memory``), and
   a worker's start-to-ready time on a 10,000-model snapshot, then its first
   checkpoint of all of them (pause, time to committed, bytes; from /metrics).
5. **State** (``--state``, ``benchmarks/bench_state.py``): on a stream of
   its own, in each of ``--repeat`` rounds, the worker with ``state_store =
   local``, ``kafka`` and ``kafka`` + ``processing_guarantee = exactly_once``
   (ratios within a round); state-topic bytes written per input byte at
   ``--models`` and at ``--state-models`` (10,000) models, each active in
   every checkpoint; then the restore of those models from the local cache
   plus the topic's tail (the same snapshot directory) and from the topic
   alone (an empty one): the worker's ``restore_s`` and start to ready.
6. **Profile** (``--profile``): the hot path in-process without Kafka, in
   CPU µs per event per stage beside the baseline's loop over the same
   messages, then under pyinstrument (``bench_profile``).

Prints a table, then as its last line one JSON object with every figure.
Events = predictions + feedback consumed. The machine may be shared: compare
the ratios, which are measured in the same run, rather than absolute figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "scripts")]  # the other bench modules; kafka_broker, the face of scripts/kafka

from bench_stream import START_TIME, Stream, produce, produce_all, producer_config  # noqa: E402


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    from kafka_broker import free_ports

    return free_ports(1)[0]


# -- topics and the worker ----------------------------------------------------


class Topics:
    """The four topics of one phase, and the worker environment that names them."""

    def __init__(self, bootstrap: str, prefix: str, partitions: int):
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.partitions = partitions
        self.predictions = f"{prefix}.predictions"
        self.feedback = f"{prefix}.feedback"
        self.alerts = f"{prefix}.alerts"
        self.dead_letter = f"{prefix}.dead-letter"

    def env(self, snapshot_dir: Path, **settings: object) -> dict[str, str]:
        """A fresh group with a state topic of its own (a group must never restore another's state)."""
        group = f"{self.prefix}.group-{uuid.uuid4().hex[:6]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDRIFT_")}
        env.update(
            {
                "STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "STREAMDRIFT_TOPICS__PREDICTIONS": self.predictions,
                "STREAMDRIFT_TOPICS__FEEDBACK": self.feedback,
                "STREAMDRIFT_TOPICS__ALERTS": self.alerts,
                "STREAMDRIFT_TOPICS__DEAD_LETTER": self.dead_letter,
                "STREAMDRIFT_TOPICS__STATE": f"{group}.state",
                "STREAMDRIFT_GROUP_ID": group,
                "STREAMDRIFT_SNAPSHOT_DIR": str(snapshot_dir),
                "STREAMDRIFT_METRICS_PORT": str(free_port()),
            }
        )
        env.update({f"STREAMDRIFT_{k.upper()}": str(v) for k, v in settings.items()})
        if env.get("STREAMDRIFT_STATE_STORE", "kafka") == "kafka":
            self.create_state_topic(env["STREAMDRIFT_TOPICS__STATE"])
        return env

    def create_state_topic(self, name: str) -> None:
        """Compacted, partitioned like the inputs, as ``streamdrift topics create`` makes it."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        topic = NewTopic(name, self.partitions, 1, config={"cleanup.policy": "compact"})
        for future in admin.create_topics([topic], operation_timeout=30).values():
            future.result()

    def create(self, workdir: Path) -> None:
        """As a user does: ``streamdrift topics create`` (inputs co-partitioned)."""
        done = subprocess.run(
            [sys.executable, "-m", "streamdrift", "topics", "create", "--partitions", str(self.partitions)],
            env=self.env(workdir / "unused"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"streamdrift topics create failed:\n{done.stdout}{done.stderr}")


class Worker:
    """``python -m streamdrift worker`` in a subprocess, and its HTTP endpoints."""

    def __init__(self, env: dict[str, str], log_path: Path, python: str = sys.executable):
        self.port = int(env["STREAMDRIFT_METRICS_PORT"])
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [python, "-m", "streamdrift", "worker"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def status(self) -> dict:
        return orjson.loads(self.get("/status", timeout=30)[1])

    def counts(self) -> tuple[int, int]:
        """(predictions, feedback) counted by the monitors, all partitions."""
        p = f = 0
        for part in self.status()["partitions"].values():
            for s in part["models"].values():
                p += s["predictions_total"]
                f += s["feedback_total"]
        return p, f

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.2) -> float:
        """Poll ``predicate`` every ``interval`` s; return the monotonic time it first held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}) waiting for {what}:\n{self.tail()}")
            try:
                if predicate():
                    return time.monotonic()
            except (OSError, ValueError):
                pass  # HTTP server not up yet
            time.sleep(interval)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}:\n{self.tail()}")

    def wait_ready(self, timeout: float = 120, interval: float = 0.02) -> float:
        return self.wait_for(lambda: self.get("/readyz")[0] == 200, timeout, "worker ready", interval=interval)

    def gauges(self) -> dict[str, float]:
        """The worker's unlabelled gauges and counters, from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(self.get("/metrics")[1].decode())
            for sample in family.samples
            if not sample.labels
        }

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the worker process has used so far, with that of its forked
        checkpoint writers that have ended (which do the checkpoint's capture, encoding and compression)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        own, children = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])  # utime+stime, c*
        return (own + children) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> tuple[int, int]:
        """(current, peak) resident memory of the worker process."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields[name] = value.split()
        return int(fields["VmRSS"][0]) * 1024, int(fields["VmHWM"][0]) * 1024

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self) -> int | None:
        """SIGTERM (final checkpoint, exit 0), SIGKILL if it hangs. ``exit_cpu_s``: the CPU the process and its
        reaped children (the checkpoint packers) used in all, read as it is reaped (None: it had exited)."""
        self.exit_cpu_s: float | None = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60
            while True:
                pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)  # Popen.wait gives no resource usage
                if pid:
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    self.exit_cpu_s = usage.ru_utime + usage.ru_stime
                    break
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait(10)
                    break
                time.sleep(0.02)
        self._log.close()
        return self.proc.returncode


# -- throughput ---------------------------------------------------------------


def run_consumer(kind: str, topics: Topics, expect: int, timeout: float) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "bench_baseline.py"),
            kind,
            "--bootstrap",
            topics.bootstrap,
            "--predictions",
            topics.predictions,
            "--feedback",
            topics.feedback,
            "--expect",
            str(expect),
            "--timeout",
            str(timeout),
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    result["events_per_s"] = result["events"] / result["seconds"]
    result["cpu_us_per_event"] = max(result["cpu_s"], 1e-6) / result["events"] * 1e6
    return result


# Settings an older installation (--compare-python) may not know, and would refuse at start: it keeps its defaults.
NEWER_SETTINGS = ("STREAMDRIFT_TOPICS__STATE",)
# At the end of a backlog the merge waits max_task_idle_ms (3 s by default) for the silent feedback topic before its
# last, forced, release: a fixed wait, not processing, that would weigh on a short run (0.6 x on 300,000 events).
# The throughput phase measures processing, so it sets a short one; the latency phase keeps the default.
THROUGHPUT_IDLE_MS = 100


@functools.cache
def knows_state_topic(python: str) -> bool:
    """Whether that installation's worker has the state topic (then it gets the same settings as this one's)."""
    probe = "from streamdrift.runtime.settings import TopicSettings; assert 'state' in TopicSettings.model_fields"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def run_worker_throughput(
    topics: Topics,
    workdir: Path,
    predictions: int,
    feedback: int,
    timeout: float,
    python: str = sys.executable,
    **settings: object,
) -> dict:
    env = topics.env(workdir / f"tput-snapshots-{uuid.uuid4().hex[:6]}", **settings)  # fresh: nothing to restore
    if python != sys.executable and not knows_state_topic(python):
        env = {k: v for k, v in env.items() if k not in NEWER_SETTINGS}
    worker = Worker(env, workdir / "worker-throughput.log", python)
    try:
        ready = worker.wait_ready()
        cpu = worker.cpu_seconds()
        done = worker.wait_for(
            lambda: worker.counts() == (predictions, feedback), timeout, "the worker to count every event"
        )
        cpu_at_ready, cpu = cpu, worker.cpu_seconds() - cpu
        rss, peak = worker.rss_bytes()
    finally:
        code = worker.stop()
    if code != 0:
        raise RuntimeError(f"worker exited {code} on SIGTERM:\n{worker.tail()}")
    events = predictions + feedback
    return {
        # the same, to the worker's exit: its final checkpoint too, which writes every model changed since its
        # last write and counts the warm-up rows its sketches still held (``core/held.py``), which a window that
        # ends when every event is counted leaves out
        "cpu_to_exit_s": None if worker.exit_cpu_s is None else worker.exit_cpu_s - cpu_at_ready,
        "state_topic": env.get("STREAMDRIFT_TOPICS__STATE"),  # None: an installation without one
        "events": events,
        "seconds": done - ready,
        "events_per_s": events / (done - ready),
        "cpu_s": cpu,
        "start_to_ready_s": ready - worker.started,
        "wall_seconds": done - worker.started,
        "wall_events_per_s": events / (done - worker.started),
        "rss_bytes": rss,
        "peak_rss_bytes": peak,
    }


def fleet(bootstrap: str, args: argparse.Namespace, workdir: Path, run_id: str, measured: dict | None) -> list[dict]:
    """One round of floor, worker and baseline per fleet size, each on a stream of its own (``measured``:
    the throughput phase's result, the row of ``--models``). Rows as the JSON line's ``fleet`` has them."""
    sizes = sorted({*args.fleet_models, *(args.memory_models[1:] if args.memory else ())})  # 10,000 by default
    rows = []
    for models in sizes:
        if measured is not None and models == args.models:
            t, events = measured, measured["events"]
        else:
            log(f"fleet: {models:,} models, {args.fleet_events:,} predictions")
            sized = argparse.Namespace(**{**vars(args), "models": models, "events": args.fleet_events, "repeat": 1})
            t = throughput(bootstrap, sized, workdir, f"{run_id}-m{models}")
            events = t["events"]
        row = {
            "models": models,
            "events": events,
            "worker_events_per_s": round(t["worker"]["events_per_s"], 1),
            "ratio_to_floor": round(t["ratio_to_floor"], 3),
            "ratio_to_baseline": round(t["ratio_to_baseline"], 3),
            "cpu_ratio_to_baseline": round(t["cpu_ratio_to_baseline"], 3),
            "worker_cpu_us_per_event": round(t["worker"]["cpu_us_per_event"], 2),
            # to the worker's exit, its final checkpoint included (None: not known, a worker that had exited)
            "worker_cpu_us_per_event_to_exit": _rounded(t["worker"].get("cpu_to_exit_us_per_event"), 2),
            "floor_events_per_s": round(t["floor"]["events_per_s"], 1),
            "baseline_events_per_s": round(t["baseline"]["events_per_s"], 1),
            "floor_cpu_us_per_event": round(t["floor"]["cpu_us_per_event"], 2),
            "baseline_cpu_us_per_event": round(t["baseline"]["cpu_us_per_event"], 2),
        }
        if "ratio_to_compared" in t:
            row["ratio_to_compared"] = round(t["ratio_to_compared"], 3)
            row["compared_cpu_us_per_event"] = round(t["compared"]["cpu_us_per_event"], 2)
            row["compared_cpu_us_per_event_to_exit"] = _rounded(t["compared"].get("cpu_to_exit_us_per_event"), 2)
        rows.append(row)
    return rows


def worker_settings(args: argparse.Namespace) -> dict[str, object]:
    """The settings ``--merge-epoch-ms`` gives every worker of the throughput, fleet and latency phases (none: the
    worker's defaults)."""
    return {} if args.merge_epoch_ms is None else {"merge_epoch_ms": args.merge_epoch_ms}


def throughput(bootstrap: str, args: argparse.Namespace, workdir: Path, run_id: str) -> dict:
    topics = Topics(bootstrap, f"bench-{run_id}.tput", args.partitions)
    topics.create(workdir)
    log(f"producing {args.events:,} predictions for {args.models} models to {topics.prefix}.*")
    made = produce_all(bootstrap, Stream(args.models, args.seed), args.events, topics.predictions, topics.feedback)
    events = made["predictions"] + made["feedback"]
    log(f"produced {events:,} events in {made['seconds']:.1f}s")
    timeout = max(300.0, events / 500)
    out = {
        "predictions": made["predictions"],
        "feedback": made["feedback"],
        "events": events,
        "produce_s": made["seconds"],
        "rounds": [],
    }
    for i in range(args.repeat):
        log(f"round {i + 1}/{args.repeat}: floor, streamdrift worker, baseline")
        r = {
            "floor": run_consumer("floor", topics, events, timeout),
            "worker": run_worker_throughput(
                topics,
                workdir,
                made["predictions"],
                made["feedback"],
                timeout,
                state_store=args.state_store,
                max_task_idle_ms=THROUGHPUT_IDLE_MS,
                **worker_settings(args),
            ),
            "baseline": run_consumer("baseline", topics, events, timeout),
        }
        if args.compare_python:  # another checkout's worker, in the same round over the same records
            same = {"state_store": args.state_store, "max_task_idle_ms": THROUGHPUT_IDLE_MS, **worker_settings(args)}
            r["compared"] = run_worker_throughput(
                topics,
                workdir,
                made["predictions"],
                made["feedback"],
                timeout,
                args.compare_python,
                **(same if knows_state_topic(args.compare_python) else {}),
            )
        tick = 1 / os.sysconf("SC_CLK_TCK")  # /proc's resolution: a tiny run may show no CPU at all
        for name in ("worker", "compared") if args.compare_python else ("worker",):
            r[name]["cpu_us_per_event"] = max(r[name]["cpu_s"], tick) / events * 1e6
            if r[name].get("cpu_to_exit_s") is not None:
                r[name]["cpu_to_exit_us_per_event"] = max(r[name]["cpu_to_exit_s"], tick) / events * 1e6
        log("  ".join(f"{k} {v['events_per_s']:,.0f} events/s" for k, v in r.items()))
        out["rounds"].append(r)
    rounds = out["rounds"]
    if args.compare_python:
        out["ratio_to_compared"] = statistics.median(
            r["worker"]["events_per_s"] / r["compared"]["events_per_s"] for r in rounds
        )
    for kind in ("floor", "worker", "baseline", *(("compared",) if args.compare_python else ())):
        # the median round of each, figure by figure
        out[kind] = {
            k: statistics.median(r[kind][k] for r in rounds)
            for k, v in rounds[0][kind].items()
            if isinstance(v, (int, float))
        }
    for name, other in (("floor", "floor"), ("baseline", "baseline")):  # ratios within a round, then the median
        out[f"ratio_to_{name}"] = statistics.median(
            r["worker"]["events_per_s"] / r[other]["events_per_s"] for r in rounds
        )
        out[f"cpu_ratio_to_{name}"] = statistics.median(
            r[other]["cpu_us_per_event"] / r["worker"]["cpu_us_per_event"] for r in rounds
        )
    return out


# -- latency ------------------------------------------------------------------


class DriftSchedule:
    """Every model drifts for ``length`` of its predictions every ``cycle``, staggered across models.

    The first ``warm`` predictions of a model are clean (reference + a full window).
    ``cycle`` leaves the policy's cooldown and hysteresis time to re-arm.
    """

    def __init__(self, n_models: int, warm: int, cycle: int, length: int):
        self.n_models, self.warm, self.cycle, self.length = n_models, warm, cycle, length

    def __call__(self, model: int, rows: np.ndarray) -> np.ndarray:
        since = rows - self.warm - (model * self.cycle) // self.n_models
        return (since >= 0) & (since % self.cycle < self.length)

    def onsets(self, model_rows: np.ndarray) -> int:
        """Drift segments wholly within the first ``model_rows[m]`` predictions of each model ``m``."""
        total = 0
        for m, rows in enumerate(model_rows):
            last = int(rows) - 1 - self.warm - (m * self.cycle) // self.n_models
            if last >= self.length - 1:
                total += (last - self.length + 1) // self.cycle + 1
        return total


class AlertReader(threading.Thread):
    """Reads the alerts topic from its beginning; records (wall time read, event)."""

    def __init__(self, topics: Topics):
        super().__init__(name="alerts", daemon=True)
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer(
            {
                "bootstrap.servers": topics.bootstrap,
                "group.id": f"bench-alerts-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        self.consumer.assign([TopicPartition(topics.alerts, p, OFFSET_BEGINNING) for p in range(topics.partitions)])
        self.received: list[tuple[float, dict]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for msg in self.consumer.consume(100, 0.05):
                    if msg.error() is None:
                        self.received.append((time.time(), orjson.loads(msg.value())))
        finally:
            self.consumer.close()


class MetricsProbe(threading.Thread):
    """Arrival → effect: a prediction's Kafka timestamp → ``/metrics`` counts it.

    The producing loop offers one prediction at a time with its model's count of
    predictions so far, itself included (``marker``, which returns the delivery
    callback to produce it with, or None while a marker is being watched). The
    probe scrapes ``/metrics`` every ``interval`` s until
    ``streamdrift_events_total{model_id=..., stream="predictions"}`` reaches that
    count: a model's predictions are on one partition, consumed in order, so the
    count is reached when that prediction has been processed. Resolution: ``interval``, 50 ms:
    each scrape takes the worker's GIL for a few ms (10 models, 1,657 series), and Prometheus
    scrapes every 15-60 s; at 20 ms the probe cost the worker a third more CPU per event.
    """

    def __init__(self, worker: Worker, interval: float = 0.05, pause: float = 0.1):
        super().__init__(name="metrics-probe", daemon=True)
        self.worker, self.interval, self.pause = worker, interval, pause
        self.wanted = threading.Event()
        self.marker: tuple[str, int, float] | None = None
        self.got = threading.Event()
        self.stopping = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (Kafka timestamp, latency)

    def offer(self, model_id: str, count: int):
        """The delivery callback for this prediction if the probe wants one now, else None."""
        if not self.wanted.is_set():
            return None
        self.wanted.clear()

        def delivered(err, msg) -> None:  # on the producing thread
            if err is None:
                self.marker = (model_id, count, msg.timestamp()[1] / 1000)
                self.got.set()
            else:
                self.wanted.set()

        return delivered

    def counted(self, model_id: str) -> float:
        """``streamdrift_events_total`` of the model's predictions, as /metrics shows it now (0 if absent)."""
        text = self.worker.get("/metrics")[1].decode()
        needle = f'streamdrift_events_total{{model_id="{model_id}",stream="predictions"}} '
        at = text.find(needle)
        return 0.0 if at < 0 else float(text[at + len(needle) : text.index("\n", at)])

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wanted.set()
            if not self.got.wait(0.5):
                continue
            self.got.clear()
            model_id, count, ts = self.marker
            while not self.stopping.is_set():
                try:
                    if self.counted(model_id) >= count:
                        self.latencies.append((ts, time.time() - ts))
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(self.interval)
            time.sleep(self.pause)


def kafka_timestamps(bootstrap: str, positions: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], float]:
    """Kafka timestamp (s) of the record at each (topic, partition, offset)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-ts-{uuid.uuid4()}", "enable.auto.commit": False})
    out = {}
    try:
        for topic, partition, offset in sorted(set(positions)):
            c.assign([TopicPartition(topic, partition, offset)])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is not None and msg.error() is None and msg.offset() == offset:
                    out[(topic, partition, offset)] = msg.timestamp()[1] / 1000
                    break
    finally:
        c.close()
    return out


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50_s": None, "p99_s": None, "max_s": None}
    a = np.asarray(values)
    return {
        "n": len(a),
        "p50_s": float(np.percentile(a, 50)),
        "p99_s": float(np.percentile(a, 99)),
        "max_s": float(a.max()),
    }


# Which input topic a drift event's window offsets refer to: the stream that triggered it.
TRIGGER_TOPIC = {
    "data_drift": "predictions",
    "prediction_drift": "predictions",
    "data_quality": "predictions",
    "label_drift": "feedback",
    "concept_drift": "feedback",
    "performance_degradation": "feedback",
}


def latency(bootstrap: str, args: argparse.Namespace, workdir: Path, run_id: str, rate: float, why: str = "") -> dict:
    """Paced stream at ``rate`` events/s with recurring drifts; drift-event and /metrics latencies."""
    from confluent_kafka import Producer

    from streamdrift.core.config import MonitorSettings

    topics = Topics(bootstrap, f"bench-{run_id}.lat", args.partitions)
    topics.create(workdir)
    ms = MonitorSettings()
    # Drift lasts one window; the next starts once cooldown has passed and the window is clean again.
    schedule = DriftSchedule(
        args.models,
        warm=ms.reference_size + ms.window_size,
        cycle=ms.cooldown_events + 2 * ms.window_size,
        length=ms.window_size,
    )
    share = 0.5
    pred_rate = rate / (1 + share)
    n_predictions = int(pred_rate * args.latency_seconds)
    stream = Stream(args.models, args.seed + 1, feedback_share=share, drifted=schedule, rate=pred_rate)
    tick = 0.02
    per_tick = max(1, round(pred_rate * tick))
    # made before the clock starts: making the events cost the bench's own process about half a core at
    # 30,000 events/s, on the worker's two cores, where a user's model servers run on machines of their own
    log(f"latency: making {n_predictions:,} predictions and their feedback")
    chunks = [stream.chunk(min(per_tick, n_predictions - sent)) for sent in range(0, n_predictions, per_tick)]
    worker = Worker(topics.env(workdir / "lat-snapshots", **worker_settings(args)), workdir / "worker-latency.log")
    reader = AlertReader(topics)
    probe = MetricsProbe(worker, interval=0.05)
    producer = Producer(producer_config(bootstrap, linger_ms=5))
    try:
        worker.wait_ready()
        reader.start()
        probe.start()
        cpu, own_cpu = worker.cpu_seconds(), time.process_time()
        log(
            f"latency: {n_predictions:,} predictions at {rate:,.0f} events/s{why}, {args.models} models drifting "
            "in turn"
        )
        started = time.monotonic()
        produced = 0
        per_model: dict[bytes, int] = {}  # predictions produced so far, per model (key)
        for chunk in chunks:
            for i, (key, value) in enumerate(chunk.predictions):
                per_model[key] = count = per_model.get(key, 0) + 1
                produce(producer, topics.predictions, key, value, probe.offer(key.decode(), count) if i == 0 else None)
            for key, value in chunk.feedback:
                produce(producer, topics.feedback, key, value)
            produced += len(chunk)
            producer.poll(0)
            ahead = started + produced / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        producer.flush(60)
        produce_s = time.monotonic() - started
        expected = int(stream.rows.sum()), produced - int(stream.rows.sum())
        caught_up = worker.wait_for(lambda: worker.counts() == expected, 300, "the worker to catch up", 0.05)
        catch_up_s = caught_up - started - produce_s
        cpu, own_cpu = worker.cpu_seconds() - cpu, time.process_time() - own_cpu
        time.sleep(2)  # the last drift events on their way
    finally:
        reader.stopping.set()
        probe.stopping.set()
        code = worker.stop()
    reader.join(10)
    probe.join(10)
    if code != 0:
        raise RuntimeError(f"latency worker exited {code}:\n{worker.tail()}")
    positions = {}
    for _, event in reader.received:
        topic = TRIGGER_TOPIC.get(event["kind"])
        if topic is not None:
            w = event["window"]
            positions[event["alert_id"]] = (getattr(topics, topic), w["partition"], w["end_offset"])
    stamps = kafka_timestamps(bootstrap, list(positions.values()))
    samples = []
    kinds: dict[str, int] = {}
    for read_at, event in reader.received:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
        ts = stamps.get(positions.get(event["alert_id"]))
        if ts is not None:
            emitted = datetime.fromisoformat(event["emitted_at"].replace("Z", "+00:00")).timestamp()
            samples.append(
                {
                    "kind": event["kind"],
                    "model_id": event["model_id"],
                    "timestamp": ts,
                    "to_alert_s": read_at - ts,
                    "to_emit_s": emitted - ts,
                }
            )
    return {
        "rate_events_per_s": rate,
        "achieved_events_per_s": produced / produce_s,
        "events": produced,
        "seconds": produce_s,
        "catch_up_s": catch_up_s,
        "worker_cpu_us_per_event": cpu / produced * 1e6,
        "worker_cpu_share": cpu / (produce_s + catch_up_s),
        "bench_cpu_share": own_cpu / (produce_s + catch_up_s),
        "drifts_injected": schedule.onsets(stream.rows),
        "drift_events": kinds,
        "event_to_alert": percentiles([x["to_alert_s"] for x in samples]),
        "event_to_emit": percentiles([x["to_emit_s"] for x in samples]),
        "arrival_to_metrics": percentiles([x for _, x in probe.latencies]),
        "samples": samples,
        "metrics_samples": probe.latencies,
    }


# -- memory -------------------------------------------------------------------


def run_memory_child(
    n_models: int | None,
    partitions: int,
    snapshot_dir: Path | None = None,
    offsets: dict | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    cmd = [sys.executable, str(HERE / "bench_memory.py"), "--partitions", str(partitions)]
    cmd += ["--join"] if n_models is None else ["--models", str(n_models)]
    if snapshot_dir is not None:
        cmd += ["--snapshot-dir", str(snapshot_dir), "--offsets", orjson.dumps(offsets or {}).decode()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory failed:\n{done.stdout}{done.stderr}")
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def memory(bootstrap: str, args: argparse.Namespace, workdir: Path, run_id: str) -> dict:
    small, large = args.memory_models
    log(f"memory: {small:,} models")
    out = {"small": run_memory_child(small, args.partitions)}
    log("memory: one model with a full join buffer")
    out["join"] = run_memory_child(None, args.partitions)
    topics = Topics(bootstrap, f"bench-{run_id}.ready", args.partitions)
    topics.create(workdir)
    snapshots = workdir / "ready-snapshots"
    log(f"memory: {large:,} models, snapshots for a worker in {snapshots}")
    # the worker's settings, so the snapshots are written under its seal; a short idle wait: the probes are
    # predictions alone, released once the (empty) feedback topic has been idle that long
    # state_write_budget 0: the probes' checkpoint writes at once, not once its input outweighs its state (the
    # write budget would leave it for checkpoint_max_interval_s): the phase measures what a checkpoint costs
    env = topics.env(
        snapshots, checkpoint_interval_s=CHECKPOINT_AFTER_S, max_task_idle_ms=THROUGHPUT_IDLE_MS, state_write_budget=0
    )
    offsets = {topics.predictions: 0, topics.feedback: 0}
    out["large"] = run_memory_child(large, args.partitions, snapshots, offsets, env)
    probe_every_partition(topics)
    log(f"start to ready with a {large:,}-model snapshot, then its first checkpoint")
    worker = Worker(env, workdir / "worker-ready.log")
    try:
        # probed every 0.1 s: every 20 ms, the probes took a third of the GIL from the restore they time
        ready = worker.wait_ready(timeout=600, interval=0.1)
        rss, peak = worker.rss_bytes()
        # the first checkpoint's own figures: each gauge as first set. Read once its bytes are, the pause
        # could already be the next checkpoint's (a small one: only the probes' models changed since)
        checkpoint: dict[str, float] = {}

        def first_checkpoint() -> bool:
            for name, value in worker.gauges().items():
                if name.startswith(CHECKPOINT_GAUGES) and value > 0:
                    checkpoint.setdefault(name, value)
            return "streamdrift_snapshot_bytes" in checkpoint

        worker.wait_for(first_checkpoint, 300, "the first checkpoint", interval=0.1)

        def models_seen() -> int:  # /status is a view the worker publishes about once a second
            return sum(len(p["models"]) for p in worker.status()["partitions"].values())

        worker.wait_for(lambda: models_seen() == large + args.partitions, 30, "the probes' models on /status")
        models = models_seen()
    finally:
        code = worker.stop()
    if code != 0:
        raise RuntimeError(f"worker exited {code}:\n{worker.tail()}")
    if models != large + args.partitions:
        raise RuntimeError(
            f"the worker has {models} models, not {large} restored + {args.partitions} probes:\n{worker.tail()}"
        )
    out["start_to_ready_s"] = ready - worker.started
    out["worker_rss_bytes"] = rss
    out["worker_peak_rss_bytes"] = peak
    out["worker_checkpoint"] = {
        "state_store": env.get("STREAMDRIFT_STATE_STORE", "kafka"),
        "pause_s": checkpoint.get("streamdrift_checkpoint_pause_seconds", 0.0),
        "duration_s": checkpoint["streamdrift_checkpoint_duration_seconds"],
        "bytes": checkpoint["streamdrift_snapshot_bytes"],
        "writer_private_bytes": checkpoint.get("streamdrift_checkpoint_writer_private_bytes", 0.0),
    }
    return out


CHECKPOINT_AFTER_S = 5.0
CHECKPOINT_GAUGES = (
    "streamdrift_checkpoint_pause_seconds",
    "streamdrift_checkpoint_duration_seconds",
    "streamdrift_snapshot_bytes",
    "streamdrift_checkpoint_writer_private_bytes",
)


def probe_every_partition(topics: Topics) -> None:
    """One prediction of a new model in each partition, for the worker to consume after its restore: every
    partition then changes, so its first checkpoint writes the whole state (the figure the README gives)."""
    from confluent_kafka import Producer

    producer = Producer(producer_config(topics.bootstrap))
    for p in range(topics.partitions):
        event = {
            "event_id": f"probe-{p}",
            "model_id": f"checkpoint-probe-{p}",
            # the restored models' event time: a probe from long before would be evicted as idle at once
            "timestamp": START_TIME,
            "features": {"x": 1.0},
            "prediction": 1,
        }
        producer.produce(topics.predictions, orjson.dumps(event), f"checkpoint-probe-{p}".encode(), partition=p)
    if producer.flush(30):
        raise RuntimeError("could not produce the checkpoint probes")


# -- report -------------------------------------------------------------------


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    import streamdrift

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "commit": commit,
        "streamdrift": str(Path(streamdrift.__file__).parent),
        "load_average_1m": [os.getloadavg()[0]],
    }


def summary(result: dict) -> dict:
    """The flat JSON line: the required keys first (with --no-throughput, the other phases' keys only)."""
    out = _throughput_summary(result["throughput"], result["args"]) if "throughput" in result else {}
    return _other_summary(result, out)


def _throughput_summary(t: dict, args: dict) -> dict:
    floor, worker, base = t["floor"]["events_per_s"], t["worker"]["events_per_s"], t["baseline"]["events_per_s"]
    out = {
        "events": t["events"],
        "floor_events_per_s": round(floor, 1),
        "worker_events_per_s": round(worker, 1),
        "baseline_events_per_s": round(base, 1),
        "ratio_to_floor": round(t["ratio_to_floor"], 3),
        "ratio_to_baseline": round(t["ratio_to_baseline"], 3),
        "predictions": t["predictions"],
        "feedback": t["feedback"],
        "rounds": len(t["rounds"]),
        "models": args["models"],
        "partitions": args["partitions"],
        "floor_cpu_us_per_event": round(t["floor"]["cpu_us_per_event"], 2),
        "worker_cpu_us_per_event": round(t["worker"]["cpu_us_per_event"], 2),
        "baseline_cpu_us_per_event": round(t["baseline"]["cpu_us_per_event"], 2),
        "cpu_ratio_to_floor": round(t["cpu_ratio_to_floor"], 3),
        "cpu_ratio_to_baseline": round(t["cpu_ratio_to_baseline"], 3),
        "worker_events_per_s_rounds": [round(r["worker"]["events_per_s"], 1) for r in t["rounds"]],
        "ratio_to_floor_rounds": [
            round(r["worker"]["events_per_s"] / r["floor"]["events_per_s"], 3) for r in t["rounds"]
        ],
        "ratio_to_baseline_rounds": [
            round(r["worker"]["events_per_s"] / r["baseline"]["events_per_s"], 3) for r in t["rounds"]
        ],
        "worker_wall_events_per_s": round(t["worker"]["wall_events_per_s"], 1),
        "worker_start_to_ready_s": round(t["worker"]["start_to_ready_s"], 3),
        "worker_peak_rss_bytes": t["worker"]["peak_rss_bytes"],
        "produce_s": round(t["produce_s"], 2),
    }
    if "ratio_to_compared" in t:
        out["ratio_to_compared"] = round(t["ratio_to_compared"], 3)
        out["compared_events_per_s"] = round(t["compared"]["events_per_s"], 1)
        out["ratio_to_compared_rounds"] = [
            round(r["worker"]["events_per_s"] / r["compared"]["events_per_s"], 3) for r in t["rounds"]
        ]
    return out


def _other_summary(result: dict, out: dict) -> dict:
    if "fleet" in result:
        out["fleet"] = result["fleet"]
    lat = result.get("latency")
    if lat:
        out["latency_rate_events_per_s"] = round(lat["rate_events_per_s"], 1)
        out["latency_drift_events"] = sum(lat["drift_events"].values())
        out["latency_drifts_injected"] = lat["drifts_injected"]
        out["latency_catch_up_s"] = round(lat["catch_up_s"], 3)
        out["latency_worker_cpu_us_per_event"] = round(lat["worker_cpu_us_per_event"], 2)
        for name in ("event_to_alert", "event_to_emit", "arrival_to_metrics"):
            for q in ("p50_s", "p99_s", "max_s"):
                v = lat[name][q]
                out[f"latency_{name}_{q}"] = None if v is None else round(v, 4)
            out[f"latency_{name}_n"] = lat[name]["n"]
    mem = result.get("memory")
    if mem:
        for size in ("small", "large"):
            m = mem[size]
            out[f"memory_{m['models']}_rss_per_model_bytes"] = round(m["rss_per_model_bytes"])
        large = mem["large"]
        out["state_bytes_per_model"] = round(large["state_bytes_per_model"])
        out["join_buffer_full_rss_bytes"] = round(mem["join"]["join_rss_bytes"])
        out["join_buffer_full_state_bytes"] = mem["join"]["join_state_bytes"]
        out[f"snapshot_{large['models']}_pause_s"] = round(large["snapshot_pause_s"], 3)
        out[f"snapshot_{large['models']}_write_s"] = round(large["snapshot_write_s"], 3)
        out[f"snapshot_{large['models']}_bytes"] = large["snapshot_bytes"]
        out[f"snapshot_{large['models']}_load_s"] = round(large["snapshot_load_s"], 3)
        out[f"start_to_ready_{large['models']}_s"] = round(mem["start_to_ready_s"], 3)
        c = mem["worker_checkpoint"]
        out[f"worker_checkpoint_{large['models']}_pause_s"] = round(c["pause_s"], 3)
        out[f"worker_checkpoint_{large['models']}_duration_s"] = round(c["duration_s"], 3)
        out[f"worker_checkpoint_{large['models']}_bytes"] = round(c["bytes"])
        out[f"worker_checkpoint_{large['models']}_writer_private_bytes"] = round(c["writer_private_bytes"])
        out[f"worker_rss_{large['models']}_models_bytes"] = mem["worker_rss_bytes"]
    if "state" in result:
        out.update(result["state"]["summary"])
    prof = result.get("profile")
    if prof:
        out["inprocess_events_per_s"] = round(prof["inprocess_events_per_s"], 1)
        out["inprocess_decode_share"] = round(prof["decode_share"], 3)
        for k in ("decode", "monitor", "parse", "baseline"):
            out[f"inprocess_{k}_us_per_event"] = round(prof[f"{k}_us_per_event"], 3)
        out["inprocess_ratio_to_baseline"] = round(prof["inprocess_ratio_to_baseline"], 3)
        out["inprocess_parse_and_monitor_ratio_to_baseline"] = round(prof["parse_and_monitor_ratio_to_baseline"], 3)
    if result["args"].get("merge_epoch_ms") is not None:  # not the workers' default
        out["merge_epoch_ms"] = result["args"]["merge_epoch_ms"]
    out["machine"] = result["machine"]
    out["bench_seconds"] = round(result["seconds"], 1)
    return out


def table(result: dict) -> str:
    rows = _throughput_table(result["throughput"], result["args"]) if "throughput" in result else []
    return _other_table(result, rows)


def _throughput_table(t: dict, args: dict) -> list[str]:
    n = len(t["rounds"])
    rows = [
        f"events: {t['events']:,} ({t['predictions']:,} predictions + {t['feedback']:,} feedback), "
        f"{args['models']} models, {args['partitions']} partitions"
        + (f"; median of {n} rounds (min-max)" if n > 1 else ""),
        f"{'consumer':<40}{'events/s':>12}{'x floor':>9}{'CPU us/event':>14}{'x floor':>9}"
        + (f"  {'events/s min-max':>18}" if n > 1 else ""),
    ]
    for name, key in (
        ("floor (consume + orjson.loads)", "floor"),
        ("streamdrift worker", "worker"),
        ("baseline (River ADWIN x 20 per model)", "baseline"),
    ):
        r = t[key]
        ratio = (
            1.0
            if key == "floor"
            else t["ratio_to_floor"]
            if key == "worker"
            else statistics.median(x["baseline"]["events_per_s"] / x["floor"]["events_per_s"] for x in t["rounds"])
        )
        cpu = t["floor"]["cpu_us_per_event"] / r["cpu_us_per_event"]
        spread = [x[key]["events_per_s"] for x in t["rounds"]]
        rows.append(
            f"{name:<40}{r['events_per_s']:>12,.0f}{ratio:>9.2f}{r['cpu_us_per_event']:>14.2f}{cpu:>9.2f}"
            + (f"  {min(spread):>8,.0f}-{max(spread):<,.0f}" if n > 1 else "")
        )
    if "ratio_to_compared" in t:
        c = t["compared"]
        rows.append(
            f"worker / compared ({args['compare_python']}): {t['ratio_to_compared']:.3f}x events/s "
            f"(compared {c['events_per_s']:,.0f} events/s, {c['cpu_us_per_event']:.2f} CPU us/event)"
        )
    w = t["worker"]
    rows.append(
        f"worker / baseline: {t['ratio_to_baseline']:.2f}x events/s, {t['cpu_ratio_to_baseline']:.2f}x "
        f"events per CPU second; worker from process start: {w['wall_events_per_s']:,.0f} events/s "
        f"(start to ready {w['start_to_ready_s']:.2f}s), peak RSS {w['peak_rss_bytes'] / 2**20:.0f} MiB"
    )
    return rows


def _rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _fleet_table(fleet: list[dict]) -> list[str]:
    rows = [
        "fleet: one round per size, each on a stream of its own (CPU to exit: its final checkpoint too)",
        f"{'models':>8}{'events':>11}{'floor/s':>10}{'worker/s':>10}{'baseline/s':>12}{'x floor':>9}"
        f"{'x baseline':>12}{'per CPU-s':>11}{'CPU us/event':>14}{'to exit':>9}"
        + ("  x compared" if "ratio_to_compared" in fleet[0] else ""),
    ]
    for r in fleet:
        to_exit = r.get("worker_cpu_us_per_event_to_exit")
        rows.append(
            f"{r['models']:>8,}{r['events']:>11,}{r['floor_events_per_s']:>10,.0f}{r['worker_events_per_s']:>10,.0f}"
            f"{r['baseline_events_per_s']:>12,.0f}{r['ratio_to_floor']:>9.2f}{r['ratio_to_baseline']:>12.2f}"
            f"{r['cpu_ratio_to_baseline']:>11.2f}{r['worker_cpu_us_per_event']:>14.2f}"
            + (f"{to_exit:>9.2f}" if to_exit is not None else f"{'-':>9}")
            + (f"{r['ratio_to_compared']:>12.2f}" if "ratio_to_compared" in r else "")
        )
    return rows


def _other_table(result: dict, rows: list[str]) -> str:
    if result.get("fleet"):
        rows += _fleet_table(result["fleet"])
    lat = result.get("latency")
    if lat:
        rows.append(
            f"latency at {lat['rate_events_per_s']:,.0f} events/s (achieved "
            f"{lat['achieved_events_per_s']:,.0f}), {lat['drifts_injected']} drifts injected, "
            f"drift events {lat['drift_events']}"
        )
        rows.append(
            f"  worker {lat['worker_cpu_us_per_event']:.2f} CPU us/event, {lat['worker_cpu_share']:.0%} of a "
            f"CPU; bench producer {lat['bench_cpu_share']:.0%}; worker caught up {lat['catch_up_s']:.2f}s after "
            "the last event was produced"
        )
        for name, what in (
            ("event_to_alert", "prediction timestamp -> drift event read"),
            ("event_to_emit", "prediction timestamp -> drift event emitted_at"),
            ("arrival_to_metrics", "prediction timestamp -> /metrics counts it"),
        ):
            q = lat[name]
            if q["n"]:
                rows.append(
                    f"  {what:<48} p50 {q['p50_s'] * 1000:7.1f} ms  p99 {q['p99_s'] * 1000:7.1f} ms  "
                    f"max {q['max_s'] * 1000:7.1f} ms  (n={q['n']})"
                )
            else:
                rows.append(f"  {what:<48} no samples")
    mem = result.get("memory")
    if mem:
        for size in ("small", "large"):
            m = mem[size]
            rows.append(
                f"memory at {m['models']:,} models (join buffers aside): {m['rss_per_model_bytes'] / 1024:.1f} "
                f"KiB resident, state {m['state_bytes_per_model'] / 1024:.1f} KiB per model (snapshot format)"
            )
        j = mem["join"]
        rows.append(
            f"a full join buffer (half of {j['predictions_per_model']:,} predictions never labelled) adds "
            f"{j['join_rss_bytes'] / 2**20:.1f} MiB resident, {j['join_state_bytes'] / 2**20:.1f} MiB "
            "of state per model"
        )
        m = mem["large"]
        rows.append(
            f"snapshot of {m['models']:,} models: paused {m['snapshot_pause_s']:.3f}s "
            f"(the fork), durable after {m['snapshot_write_s']:.2f}s "
            f"({m['snapshot_bytes'] / 2**20:.0f} MiB, {m['snapshot_partitions']} files), "
            f"load + restore {m['snapshot_load_s']:.2f}s"
        )
        rows.append(
            f"worker start to ready on it: {mem['start_to_ready_s']:.2f}s, RSS "
            f"{mem['worker_rss_bytes'] / 2**20:.0f} MiB"
        )
        c = mem["worker_checkpoint"]
        rows.append(
            f"that worker's first checkpoint (every partition, state_store = {c.get('state_store', 'kafka')}): "
            f"consumption paused {c['pause_s']:.3f}s, "
            f"committed after {c['duration_s']:.2f}s ({c['bytes'] / 2**20:.0f} MiB; the forked writer "
            f"had {c['writer_private_bytes'] / 2**20:.0f} MiB of its own)"
        )
    prof = result.get("profile")
    if prof:
        rows.append(
            f"in-process, CPU us/event (no Kafka): decode {prof['decode_us_per_event']:.2f} (orjson.loads "
            f"alone {prof['parse_us_per_event']:.2f}) + monitors {prof['monitor_us_per_event']:.2f} = "
            f"{prof['inprocess_us_per_event']:.2f}; the baseline's loop {prof['baseline_us_per_event']:.2f}: "
            f"{prof['inprocess_ratio_to_baseline']:.2f}x the baseline, "
            f"{prof['parse_and_monitor_ratio_to_baseline']:.2f}x with a decoder costing only orjson.loads"
        )
    m = result["machine"]
    rows.append(
        f"machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"commit {m['commit']} ({m['streamdrift']}); load average {m['load_average_1m'][0]:.1f} at start, "
        f"{m['load_average_1m'][1]:.1f} at end; total {result['seconds']:.0f}s"
        + (
            ""
            if result["args"].get("merge_epoch_ms") is None
            else f"; merge_epoch_ms {result['args']['merge_epoch_ms']}"
        )
    )
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="predictions to produce (feedback for half)")
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of floor/worker/baseline on the same topics; medians are reported"
    )
    parser.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure drift-event and /metrics latency at half the worker's throughput",
    )
    parser.add_argument(
        "--fleet",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="floor, worker and baseline at each of --fleet-models (and the larger --memory-models with --memory), "
        "one round each",
    )
    parser.add_argument(
        "--fleet-models",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=(10, 200, 2000),
        help="the model counts of --fleet (default 10,200,2000)",
    )
    parser.add_argument("--fleet-events", type=int, default=100_000, help="predictions of each --fleet stream")
    parser.add_argument(
        "--merge-epoch-ms",
        type=int,
        help="the workers' merge_epoch_ms in the throughput, fleet and latency phases (default: the worker's, 100): "
        "how many rows a model gets per call where many models share a partition (docs/scaling.md)",
    )
    parser.add_argument("--latency-seconds", type=float, default=60, help="length of the paced stream")
    parser.add_argument("--latency-rate", type=float, help="events/s of the paced stream (default: half the max)")
    parser.add_argument(
        "--no-throughput",
        dest="throughput",
        action="store_false",
        help="skip floor/worker/baseline (then --latency needs --latency-rate)",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="memory per model, snapshot write/load, start to ready",
    )
    parser.add_argument(
        "--memory-models",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=(1000, 10000),
        help="the two model counts of --memory (default 1000,10000)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="profile the hot path in-process with pyinstrument",
    )
    parser.add_argument(
        "--state-store",
        choices=("kafka", "local"),
        default="kafka",
        help="the throughput phase's worker state store (the worker's default: kafka)",
    )
    parser.add_argument(
        "--state",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="state store and delivery figures: kafka/local and exactly/at-least-once throughput, state-topic "
        "bytes per input byte, restore of --state-models models (benchmarks/bench_state.py)",
    )
    parser.add_argument("--state-models", type=int, default=10_000)
    parser.add_argument("--state-events", type=int, default=200_000, help="predictions of the --state-models stream")
    parser.add_argument(
        "--state-write-budget",
        type=float,
        default=None,
        help="the --state-models worker's state_write_budget (default: the worker's; 0: every checkpoint writes)",
    )
    parser.add_argument("--profile-events", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (worker logs)")
    parser.add_argument(
        "--compare-python",
        metavar="PYTHON",
        help="also time the worker of another installation (e.g. an older commit's .venv/bin/python) in every "
        "throughput round, over the same records; reports worker / compared",
    )
    parser.add_argument("--details", type=Path, help="write every figure and latency sample to this JSON file")
    args = parser.parse_args(argv)
    if len(args.memory_models) != 2:
        parser.error("--memory-models takes two counts, e.g. 1000,10000")
    if not args.throughput and args.latency and args.latency_rate is None:
        parser.error("--no-throughput measures latency only at a given --latency-rate")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="streamdrift-bench-"))
    result: dict = {"args": vars(args) | {"memory_models": list(args.memory_models)}, "machine": machine()}
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        else:
            log(f"work directory: {workdir}")
        bootstrap = args.bootstrap or start_own_broker(stack, workdir)
        if args.throughput:
            result["throughput"] = throughput(bootstrap, args, workdir, run_id)
        if args.fleet:
            result["fleet"] = fleet(bootstrap, args, workdir, run_id, result.get("throughput"))
        if args.latency:
            half = result["throughput"]["worker"]["events_per_s"] / 2 if args.throughput else None
            why = "" if args.latency_rate else " (half the worker's maximum)"
            result["latency"] = latency(bootstrap, args, workdir, run_id, args.latency_rate or half, why)
        if args.memory:
            result["memory"] = memory(bootstrap, args, workdir, run_id)
        if args.state:
            import bench_state

            result["state"] = bench_state.state(bootstrap, args, workdir, run_id)
    if args.profile:
        result["profile"] = profile(args)
    result["seconds"] = time.monotonic() - started
    result["machine"]["load_average_1m"].append(os.getloadavg()[0])  # others' work shows here: figures are noisy
    if args.details:
        args.details.write_bytes(orjson.dumps(result, default=str, option=orjson.OPT_INDENT_2))
    print(table(result))
    print(orjson.dumps(summary(result)).decode())
    return 0


def start_own_broker(stack: ExitStack, workdir: Path) -> str:
    from kafka_broker import start_broker, wait_ready

    log("starting a Kafka broker (scripts/kafka) on free ports")
    broker = start_broker(workdir / "kafka")
    stack.callback(broker.stop)
    wait_ready(broker.bootstrap, timeout=60)
    log(f"broker at {broker.bootstrap}")
    return broker.bootstrap


def profile(args: argparse.Namespace) -> dict:
    import bench_profile

    n = min(args.events, args.profile_events)
    log(f"profile: {n:,} predictions through decode + ModelMonitor in-process")
    out = bench_profile.measure(n, args.models)
    try:
        report = bench_profile.profile(n, args.models)
    except ImportError:
        log("pyinstrument is not installed (.venv/bin/pip install pyinstrument): timings only")
    else:
        print(report)
    return out


if __name__ == "__main__":
    sys.exit(main())
