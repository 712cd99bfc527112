"""Memory and snapshot figures of N monitored models, in a process of its own.

1. ``PROTOTYPES`` models are fed the benchmark stream (24 features) through
   decode + ``ModelMonitor`` until every sketch (features, outputs, labels)
   is past warm-up and the window is full: real steady-state monitors. This
   runs in a forked child, so its garbage does not blur the measurement.
2. With resident memory measured before and after (``/proc/self/statm``),
   N monitors are restored from their states (``ModelMonitor.from_state``,
   the worker's restore path, each from its own decoded copy), round-robin
   over the prototypes: the delta divided by N is the resident memory per model.
   Join buffers are set aside (emptied), as the targets count them apart;
   ``--join`` measures one full join buffer on its own.
3. Their states go into snapshots of ``--partitions`` partitions, written as
   the worker checkpoints (``checkpoint.ForkedWrite``: a forked copy captures,
   encodes, writes and fsyncs): the pause (the fork), the time until durable,
   the bytes and the writer's own memory; then load + restore time, which is
   what the worker does on assignment. Both with the garbage collector paused, as the worker does. State
   bytes are in the snapshot format (``snapshot.dumps``: JSON skeleton + raw
   array bytes), without the file header.

With ``--snapshot-dir`` the snapshots are left there, with ``--offsets``
(JSON, topic -> next offset) as their input offsets, for a worker to start from.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import orjson

from bench_stream import Stream
from streamdrift.core import state as snapshot
from streamdrift.core.config import MonitorSettings
from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.monitor import ModelMonitor
from streamdrift.core.records import RawMessage
from streamdrift.core.state import Snapshot
from streamdrift.runtime.checkpoint import ForkedWrite, LocalSnapshotStore
from streamdrift.runtime.settings import load_settings

PROTOTYPES = 20


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def prototypes(
    settings: MonitorSettings,
    n: int = PROTOTYPES,
    seed: int = 7,
    per_model: int | None = None,
    feedback_share: float = 1.0,
) -> list[bytes]:
    """Serialized states of ``n`` models fed ``per_model`` predictions each (default: until every
    sketch has a full window)."""
    per_model = per_model or settings.reference_size + settings.window_size
    stream = Stream(n, seed, feedback_share=feedback_share)
    monitors: dict[str, ModelMonitor] = {}
    offset = 0
    # ~10% slack so every model (drawn at random) reaches per_model predictions and labels.
    for chunk in stream.chunks(int(per_model * n * 1.1) + 1000, size=20_000):
        preds = [RawMessage("p", 0, offset + i, k, v) for i, (k, v) in enumerate(chunk.predictions)]
        fbs = [RawMessage("f", 0, offset + i, k, v) for i, (k, v) in enumerate(chunk.feedback)]
        offset += len(chunk)
        for batch in decode_predictions(preds)[0]:
            monitors.setdefault(batch.model_id, ModelMonitor(batch.model_id, settings)).observe_predictions(batch)
        for batch in decode_feedback(fbs)[0]:
            monitors.setdefault(batch.model_id, ModelMonitor(batch.model_id, settings)).observe_feedback(batch)
    states = []
    for m in monitors.values():
        assert m.features.ready and m.outputs.ready and m.labels.ready, "prototype still in warm-up"
        states.append(snapshot.dumps(m.state()))
    return states


def join_aside(state: bytes, settings: MonitorSettings) -> bytes:
    """The state with an empty join buffer (the targets count join buffers apart)."""
    doc = snapshot.loads(state)
    if "join" in doc:
        doc["join"] = ModelMonitor("empty", settings).state()["join"]
    return snapshot.dumps(doc)


def resident_per_model(states: list[bytes], n_models: int, settings: MonitorSettings) -> tuple[dict, float]:
    """``n_models`` monitors restored round-robin from ``states``; resident bytes per model."""
    gc.collect()
    before = resident_bytes()
    monitors = {f"bench-mem-{i:05d}": None for i in range(n_models)}
    for i, m in enumerate(monitors):
        monitors[m] = ModelMonitor.from_state(m, settings, snapshot.loads(states[i % len(states)]))
    for monitor in monitors.values():
        # as in a worker once the model has had events since the restart (a restored sketch makes its
        # bin layout on first use) and after its first checkpoint (what that caches counts)
        for sketch in (monitor.features, monitor.outputs, monitor.labels):
            _ = sketch.columns  # builds the layout, as a first event does
        monitor.state()
    gc.collect()
    return monitors, (resident_bytes() - before) / n_models


@contextmanager
def gc_paused():
    """The cyclic garbage collector off, as the worker has it while it checkpoints or restores."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def forked(fn, *args):
    """``fn(*args)`` in a forked child, so its garbage stays out of this process's resident memory."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(fn, args)


def measure(n_models: int, partitions: int, snapshot_dir: Path | None, offsets: dict[str, int]) -> dict:
    settings = MonitorSettings()
    full = forked(prototypes, settings, min(PROTOTYPES, n_models))
    protos = [join_aside(s, settings) for s in full]
    monitors, per_model = resident_per_model(protos, n_models, settings)
    ids = list(monitors)

    keep = snapshot_dir is not None
    directory = Path(snapshot_dir) if keep else Path(tempfile.mkdtemp(prefix="streamdrift-bench-snap-"))
    # under the seal of the worker that restores them (its STREAMDRIFT_* settings: group, topics, detection)
    store = LocalSnapshotStore(directory, load_settings().state_seal())
    try:
        with gc_paused():
            # as the worker checkpoints: fork (the pause), then the forked copy captures, encodes, writes
            started = time.perf_counter()
            job = ForkedWrite(
                lambda: sum(
                    store.save(Snapshot(p, dict(offsets), {m: monitors[m].state() for m in ids[p::partitions]}))
                    for p in range(partitions)
                )
            )
            pause_s = time.perf_counter() - started
            written = job.wait()
            save_s = time.perf_counter() - started
        with gc_paused():
            started = time.perf_counter()
            restored = 0
            for p in range(partitions):
                loaded = store.load(p)
                restored += len({m: ModelMonitor.from_state(m, settings, st) for m, st in loaded.models.items()})
            load_s = time.perf_counter() - started
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    assert restored == n_models
    return {
        "models": n_models,
        "rss_per_model_bytes": per_model,
        "state_bytes_per_model": sum(map(len, protos)) / len(protos),
        "state_bytes_per_model_with_join": sum(map(len, full)) / len(full),
        "snapshot_bytes": written,
        "snapshot_partitions": partitions,
        "snapshot_pause_s": pause_s,
        "snapshot_write_s": save_s,
        "snapshot_writer_private_bytes": job.private_bytes,
        "snapshot_load_s": load_s,
    }


def measure_join(clones: int = 20) -> dict:
    """One model whose join buffer is full: half its predictions never get a label."""
    settings = MonitorSettings()
    per_model = int(getattr(settings, "join_max_pending", 20_000) * 2.5)
    full = forked(prototypes, settings, 1, 11, per_model, 0.5)
    aside = join_aside(full[0], settings)
    _, with_join = resident_per_model(full, clones, settings)
    _, without = resident_per_model([aside], clones, settings)
    return {
        "predictions_per_model": per_model,
        "join_state_bytes": len(full[0]) - len(aside),
        "join_rss_bytes": with_join - without,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, help="monitors to measure")
    parser.add_argument("--join", action="store_true", help="measure a full join buffer instead")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--snapshot-dir", type=Path, help="leave the snapshots here for a worker")
    parser.add_argument("--offsets", type=orjson.loads, default={}, help='JSON {"topic": next_offset}')
    args = parser.parse_args(argv)
    if args.join:
        print(orjson.dumps(measure_join()).decode())
    else:
        print(orjson.dumps(measure(args.models, args.partitions, args.snapshot_dir, args.offsets)).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
