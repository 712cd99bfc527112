"""Fault injection against a running worker: ``make chaos`` (a few minutes; not part of ``make test``).

On a broker of its own (``scripts/kafka``, through ``kafka_broker.start_broker``), one worker consumes a
paced demo stream with drift while this script, from a seeded schedule:

1. SIGKILLs the worker at random points and starts it again (``--kills``);
2. fills its snapshot directory (a small tmpfs when run as root, else a file-size limit set on the running
   worker with ``prlimit``) until checkpoints fail, then frees it;
3. stops the broker (``scripts/kafka stop``) for ``--outage-s`` seconds and starts it again on the same ports
   and data dir;
4. slips poison events into the stream: a regression label of 1e155, a prediction stamped year 9999, a
   string feature of about 1 MB (999,000 characters: the broker's default message size bound still lets it
   through), invalid UTF-8, a NUL in ``model_id``.

A worker that exits on its own is started again, as an orchestrator would, and that exit is a failure.
Then a second worker, in another group, reads the same input topics uninterrupted (alerts to its own
topic), and the script prints a row per fault with its outcome and one summary table: faults injected,
events produced, counted (the worker's ``/status``), dead-lettered (distinct source records on the
dead-letter topic), lost (produced - counted - dead-lettered: must be 0) and whether the state (every
model's ``/status`` summary) is identical to the uninterrupted run's. It exits 1 when a guarantee fails.

Usage: ``.venv/bin/python scripts/chaos.py [--seed 17] [--kills 3] [--outage-s 60] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "scripts")]  # the suite's helpers: one way to run a worker

from kafka_broker import Broker, start_broker, wait_ready  # noqa: E402
from streamdrift.core.synthetic import generate  # noqa: E402
from worker_process import (  # noqa: E402
    PacedProducer,
    WorkerProcess,
    model_summaries,
    read_topic,
    streamdrift,
    worker_env,
)

SETTINGS = {
    "monitor__reference_size": 500,
    "monitor__window_size": 500,
    "monitor__subwindows": 5,
    "monitor__cooldown_events": 2000,
    "checkpoint_interval_s": 1.0,
    "batch_size": 2000,
    "max_task_idle_ms": 10_000,  # as in test_outage: the producer's queue after the outage is no forced release
    "state_store": "local",  # the snapshot directory is the store: a full disk is felt by the checkpoint itself
}
TMPFS_SIZE = "16m"
Item = tuple[str, bytes, bytes]


@dataclass
class Fault:
    name: str
    detail: str
    ok: bool | None = None  # None: not judged yet
    outcome: str = ""


@dataclass
class Run:
    env: dict[str, str]
    workdir: Path
    faults: list[Fault] = field(default_factory=list)
    worker: WorkerProcess | None = None
    starts: int = 0
    unexpected_exits: list[int] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        self.starts += 1
        self.worker = WorkerProcess(self.env, self.workdir / f"worker-{self.starts}.log")
        return self.worker

    def supervise(self) -> WorkerProcess:
        """The running worker; one that exited on its own is recorded and started again."""
        assert self.worker is not None
        code = self.worker.proc.poll()
        if code is not None:
            self.unexpected_exits.append(code)
            self.worker.stop()
            if len(self.unexpected_exits) > 20:
                raise RuntimeError(f"the worker crash-loops (exit codes {self.unexpected_exits})")
            self.start_worker()
        return self.worker

    def counted(self) -> int | None:
        try:
            return sum(p + f for p, f in self.supervise().counts().values())
        except (OSError, ValueError):
            return None  # not up yet


def stream(env: dict[str, str], seed: int) -> list[Item]:
    """The demo stream in two stretches (credit-risk drifts in the first, fraud in the second), with the
    poison events at seeded positions; each poison record's value is unique, so it can be found again."""
    topics = {"prediction": env["STREAMDRIFT_TOPICS__PREDICTIONS"], "feedback": env["STREAMDRIFT_TOPICS__FEEDBACK"]}
    swapped = {"credit-risk": "fraud", "fraud": "credit-risk", "churn": "churn"}
    first = list(generate(12000, seed=11, drift_at=2000, rate=500.0))
    second = [
        (kind, {**e, "model_id": swapped[e["model_id"]], "event_id": "b-" + e["event_id"]})
        for kind, e in generate(12000, seed=12, drift_at=0, rate=500.0, start_time=1_700_000_030.0)
    ]
    items = [(topics[kind], e["model_id"].encode(), orjson.dumps(e)) for kind, e in first + second]
    rng = random.Random(seed)
    for poison in poison_items(topics["prediction"], topics["feedback"]):
        position = rng.randrange(len(items) // 10, len(items) - len(items) // 10)
        items[position:position] = poison
    return items


POISON = {
    "label 1e155": "a regression model's feedback label of 1e155",
    "year 9999": "a prediction stamped 9999-12-31",
    "1 MB string": "a string feature of 999,000 characters",
    "invalid UTF-8": "bytes 0xff 0xfe inside a feature string",
    "NUL model_id": "a NUL character in model_id",
}


def poison_items(predictions: str, feedback: str) -> list[list[Item]]:
    """One group of records per poison case; the poison record is the group's last."""
    t = 1_700_000_020.0
    regression = [
        (
            predictions,
            b"chaos-regression",
            orjson.dumps(
                {
                    "event_id": f"r-{i}",
                    "model_id": "chaos-regression",
                    "timestamp": t,
                    "features": {"x": i * 0.5},
                    "prediction": 1.0 + i * 0.25,
                }  # fmt: skip
            ),
        )
        for i in range(20)
    ]
    label = {"event_id": "r-19", "model_id": "chaos-regression", "timestamp": t, "label": 1e155}
    clock = {"event_id": "p-9999", "model_id": "credit-risk", "timestamp": "9999-12-31T23:59:59Z",
             "features": {"income": 40000.0}, "prediction": 0, "score": 0.2}  # fmt: skip
    huge = {"event_id": "p-huge", "model_id": "churn", "timestamp": t, "features": {"region": "x" * 999_000},
            "prediction": 0, "score": 0.3}  # fmt: skip
    utf8 = b'{"event_id": "p-utf8", "model_id": "fraud", "timestamp": 1700000020, "features": {"region": "\xff\xfe"},'
    utf8 += b' "prediction": 0, "score": 0.1}'
    nul = {"event_id": "p-nul", "model_id": "chaos\u0000nul", "timestamp": t, "features": {}, "prediction": 0}
    return [
        [*regression, (feedback, b"chaos-regression", orjson.dumps(label))],
        [(predictions, b"credit-risk", orjson.dumps(clock))],
        [(predictions, b"churn", orjson.dumps(huge))],
        [(predictions, b"fraud", utf8)],
        [(predictions, b"chaos\x00nul", orjson.dumps(nul))],
    ]


# -- faults ------------------------------------------------------------------


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    return False


def sigkill(run: Run, at: float) -> None:
    fault = Fault("SIGKILL", f"at {at:.1f} s")
    run.faults.append(fault)
    worker = run.supervise()
    before = run.counted()
    worker.stop(signal.SIGKILL)
    restarted = run.start_worker()
    ready = wait(lambda: restarted.get("/readyz")[0] == 200, 90)
    fault.ok = ready
    fault.outcome = f"restarted, ready again (had counted {before})" if ready else "not ready 90 s after restart"


def checkpoint_failures(worker: WorkerProcess) -> float:
    for line in worker.get("/metrics")[1].decode().splitlines():
        if line.startswith("streamdrift_checkpoint_failures_total"):
            return float(line.split()[-1])
    return 0.0


def disk_full(run: Run, snapshots: Path, tmpfs: bool) -> None:
    how = f"tmpfs of {TMPFS_SIZE} filled" if tmpfs else "RLIMIT_FSIZE of 1 byte set on the worker (prlimit)"
    fault = Fault("disk full", how)
    run.faults.append(fault)
    worker = run.supervise()
    before = checkpoint_failures(worker)
    filler = snapshots / "filler"
    if tmpfs:
        with open(filler, "wb") as f:  # until ENOSPC
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
    else:
        _, hard = resource.prlimit(worker.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(worker.proc.pid, resource.RLIMIT_FSIZE, (1, hard))
    failed = wait(lambda: checkpoint_failures(worker) > before, 60)
    not_ready = worker.get("/readyz")[0] == 503
    alive = worker.proc.poll() is None
    if tmpfs:
        filler.unlink()
    else:
        resource.prlimit(worker.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    recovered = alive and wait(lambda: worker.get("/readyz")[0] == 200, 90)
    leftovers = sorted(p.name for p in snapshots.iterdir() if p.name.endswith(".tmp"))
    fault.ok = failed and not_ready and alive and recovered and not leftovers
    fault.outcome = (
        f"checkpoint failures counted: {'yes' if failed else 'NO'}, not ready meanwhile: "
        f"{'yes' if not_ready else 'NO'}, process survived: {'yes' if alive else 'NO'}, ready once freed: "
        f"{'yes' if recovered else 'NO'}, temp files left: {leftovers or 'none'}"
    )


def outage(run: Run, broker: Broker, seconds: float) -> None:
    fault = Fault("broker outage", f"scripts/kafka stop, {seconds:.0f} s, start (same ports, same data dir)")
    run.faults.append(fault)
    worker = run.supervise()
    stopped = time.monotonic()
    broker.stop()
    time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
    survived = worker.proc.poll() is None
    broker.start()
    wait_ready(broker.bootstrap, timeout=90)
    ready = survived and wait(lambda: worker.get("/readyz")[0] == 200, 120)
    fault.ok = survived and ready
    fault.outcome = f"process survived: {'yes' if survived else 'NO'}, ready again: {'yes' if ready else 'NO'}"


def judge_poison(run: Run, dead: dict[tuple[str, int, int], str], sources: dict) -> None:
    """One row per poison case: dead-lettered (with its reason) or counted; the worker's exits are its own row."""
    values = {v: name for name, v in zip(POISON, (group[-1][2] for group in poison_items("p", "f")))}
    for name, detail in POISON.items():
        fault = Fault(f"poison: {name}", detail)
        run.faults.append(fault)
        value = next(v for v, n in values.items() if n == name)
        position = sources.get(value)
        if position is None:
            fault.ok, fault.outcome = False, "not found on the input topic"
        elif position in dead:
            fault.ok, fault.outcome = True, f"dead-lettered: {dead[position][:70]}"
        else:
            fault.ok, fault.outcome = True, "accepted and counted (not dead-lettered)"


# -- the run -----------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streamdrift-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    print(f"chaos: seed {args.seed}, work dir {workdir}", flush=True)

    broker = start_broker(workdir / "kafka")
    snapshots = workdir / "snapshots"
    snapshots.mkdir(exist_ok=True)
    tmpfs = mount_tmpfs(snapshots)
    try:
        wait_ready(broker.bootstrap, timeout=60)
        return chaos(broker, workdir, snapshots, tmpfs, rng, args)
    finally:
        broker.stop()
        if tmpfs:
            subprocess.run(["umount", str(snapshots)], check=False)


def mount_tmpfs(directory: Path) -> bool:
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(directory)],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        return False
    return done.returncode == 0


def chaos(broker: Broker, workdir: Path, snapshots: Path, tmpfs: bool, rng: random.Random, args) -> int:
    env = worker_env(broker.bootstrap, "chaos", snapshots, **SETTINGS)
    created = streamdrift(env, "topics", "create", "--partitions", "2")
    if created.returncode != 0:
        raise RuntimeError(created.stderr)
    items = stream(env, args.seed)
    run = Run(env, workdir)
    worker = run.start_worker()
    worker.wait_ready()

    # about 90 s of stream; the faults at seeded points within it (the disk fills while it still flows)
    producer = PacedProducer(broker.bootstrap, items, chunk=400, pause_s=90.0 * 400 / len(items))
    started = time.monotonic()
    producer.start()
    kill_times = sorted(rng.uniform(5.0, 35.0) for _ in range(args.kills))
    for at in kill_times:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        sigkill(run, time.monotonic() - started)
        print(f"  {run.faults[-1].name}: {run.faults[-1].outcome}", flush=True)
    disk_full(run, snapshots, tmpfs)
    print(f"  {run.faults[-1].name}: {run.faults[-1].outcome}", flush=True)
    outage(run, broker, args.outage_s)
    print(f"  {run.faults[-1].name}: {run.faults[-1].outcome}", flush=True)
    producer.join(600)
    delivered = producer.undelivered == 0 and not producer.errors

    # everything counted or dead-lettered, or 180 s more
    inputs = [env["STREAMDRIFT_TOPICS__PREDICTIONS"], env["STREAMDRIFT_TOPICS__FEEDBACK"]]
    produced = len(items)
    dead_topic = env["STREAMDRIFT_TOPICS__DEAD_LETTER"]

    def dead_letters() -> dict[tuple[str, int, int], str]:
        return {
            (h["streamdrift.source.topic"], int(h["streamdrift.source.partition"]), int(h["streamdrift.source.offset"])):
            h.get("streamdrift.reason", "")
            for _, h in read_topic(broker.bootstrap, dead_topic, timeout=20)
        }  # fmt: skip

    wait(lambda: (run.counted() or 0) + len(dead_letters()) >= produced, 180)
    worker = run.supervise()
    state = model_summaries(worker)
    counted = sum(s["predictions_total"] + s["feedback_total"] for s in state.values())
    stopped_cleanly = worker.stop() == 0
    dead = dead_letters()
    sources = {
        raw.value: (raw.topic, raw.partition, raw.offset) for t in inputs for raw, _ in read_topic(broker.bootstrap, t)
    }
    judge_poison(run, dead, sources)

    reference_state = uninterrupted_state(broker, workdir, inputs, produced, len(dead))
    identical = reference_state == state
    lost = produced - counted - len(dead)

    print()
    for fault in run.faults:
        print(f"{fault.name:<22} {'ok  ' if fault.ok else 'FAIL'}  {fault.detail:<64} {fault.outcome}")
    exits = run.unexpected_exits
    print(
        f"{'worker exits':<22} {'FAIL' if exits else 'ok  '}  {'exits the chaos did not cause':<64} {exits or 'none'}"
    )
    print()
    rows = [
        ("faults injected", str(len(run.faults))),
        ("events produced", str(produced) + ("" if delivered else " (NOT all delivered)")),
        ("events counted", str(counted)),
        ("events dead-lettered", str(len(dead))),
        ("events lost", str(lost)),
        ("state identical to the uninterrupted run", "yes" if identical else "no"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'guarantee / count':<{width}} | {'this run':>10} |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}:|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value:>10} |")
    if not identical and reference_state is not None:
        differing = sorted(m for m in set(state) | set(reference_state) if state.get(m) != reference_state.get(m))
        print(f"models whose state differs: {differing}")
    guarantees = (
        lost == 0 and identical and delivered and stopped_cleanly and not exits and all(f.ok for f in run.faults)
    )
    print(f"\nchaos: {'every guarantee held' if guarantees else 'A GUARANTEE FAILED'} (logs in {workdir})")
    return 0 if guarantees else 1


def uninterrupted_state(broker: Broker, workdir: Path, inputs: list[str], produced: int, dead: int) -> dict | None:
    """Every model's summary after a worker in another group read the same input topics without a fault."""
    env = worker_env(broker.bootstrap, "chaos-reference", workdir / "reference-snapshots", **SETTINGS)
    if streamdrift(env, "topics", "create", "--partitions", "2").returncode != 0:
        return None
    env["STREAMDRIFT_TOPICS__PREDICTIONS"], env["STREAMDRIFT_TOPICS__FEEDBACK"] = inputs
    reference = WorkerProcess(env, workdir / "reference.log")
    try:
        reference.wait_ready()
        wait(lambda: sum(p + f for p, f in reference.counts().values()) + dead >= produced, 180)
        return model_summaries(reference)
    except AssertionError:
        return None
    finally:
        reference.stop()


if __name__ == "__main__":
    sys.exit(main())
