"""``streamdrift replay``: the detection core over files, no Kafka.

::

    streamdrift replay PREDICTIONS.jsonl [--feedback FEEDBACK.jsonl] [--config FILE]
                       [--alerts-out ALERTS.jsonl] [--plot OUT.png]

How users backtest thresholds and how detection quality is measured: the
worker's own loop (``core.engine.PartitionEngine``: merge → decode → monitor
→ policy) over JSON-lines files, so a backtest raises the drift events a
worker raises over the same records.

1. **Read.** Each line is a message of partition 0 of its topic
   (``predictions`` or ``feedback``) whose offset is its line number,
   counted from 0, so a drift event's ``window`` offsets are line numbers.
   Blank lines are skipped. Lines are decoded ``READ_CHUNK`` at a time to
   learn their event times; a line the decoder rejects is reported on stderr
   (file, line number, reason), counted in the summary and skipped; it never
   stops the replay.
2. **Merge** the two files by event time, as the worker merges its two
   topics by record timestamp: each line goes to the engine's
   ``merge.EpochMerge`` with its event time (in milliseconds,
   `event_time_ms`) as its Kafka timestamp, so replay equals a worker over
   the same records produced with those timestamps. Each file keeps its own
   line order, as a Kafka partition keeps its offset order; the merge works
   in epochs of ``merge_epoch_ms``: within an epoch the predictions come
   first. The file behind in event time is read next, and a file read to its
   end is caught up, so no epoch is released before both files have passed
   it: the order depends on the lines alone. (A file out of time order is
   replayed in line order, as the merge gives a late record the epoch
   reached on its side, and a note says how many lines go back in time.)
3. **Monitor.** The engine decodes what the merge releases, at most
   ``batch_size`` lines at a time, and feeds one ``ModelMonitor`` per model
   (at most ``max_models``; events of more are counted), made by
   ``monitor_factory`` with the model's ``[models.<id>]`` settings and
   reference profile, as the worker does.
4. **Publish** drift events as the worker does (``emitted_at`` stamped on
   the wall clock) as JSON lines to ``--alerts-out``, or to stdout. A
   summary table per model goes to stderr (``replay_report.render``).
5. **Plot** (``--plot``, needs matplotlib; ``replay_report.plot``): per model, over event time, the
   PSI of every feature at every scored window, each test family's
   strength against its calibrated threshold, and the error rate of the
   labelled events, with a vertical line at each drift event.

Examples
--------
>>> from streamdrift.runtime.settings import load_settings
>>> def prediction(i, x):
...     return orjson.dumps({"event_id": f"e{i}", "model_id": "m", "timestamp": 1_700_000_000 + i,
...                          "features": {"x": x}, "prediction": "yes" if x > 0 else "no"})
>>> rng = np.random.default_rng(0)
>>> xs = np.concatenate([rng.normal(0, 1, 3000), rng.normal(1, 1, 1000)])
>>> lines = [prediction(i, float(x)) for i, x in enumerate(xs)] + [b'{"event_id": 1}']
>>> run = Replay(load_settings())
>>> [(e["kind"], e["feature"], e["window"]["end_offset"], e["detected_at"]) for e in run.run(lines)]
[('data_drift', 'x', 3399, 1700003399), ('prediction_drift', 'prediction', 3399, 1700003399)]
>>> run.models["m"].predictions, run.models["m"].drift_events, run.bad_lines
(4000, {'data_drift': 1, 'prediction_drift': 1}, {None: 1})
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from streamdrift.cli.replay_report import ModelReport, Trace, load_pyplot, plot, render
from streamdrift.core.config import InputBounds
from streamdrift.core.decode import MODEL_ID, decode_feedback, decode_predictions  # the contract's model_id pattern
from streamdrift.core.engine import Batch, DriftEvent, PartitionEngine, Released
from streamdrift.core.errors import StreamdriftError
from streamdrift.core.monitor import ModelMonitor, monitor_factory
from streamdrift.core.policy import rfc3339
from streamdrift.core.records import RawMessage, Rejected
from streamdrift.runtime.settings import Settings
from streamdrift.runtime.worker import GC_THRESHOLDS

PREDICTIONS, FEEDBACK = "predictions", "feedback"
_DECODE: dict[str, Callable[[Sequence[RawMessage], InputBounds], tuple[Sequence[Batch], list[Rejected]]]] = {
    PREDICTIONS: decode_predictions,
    FEEDBACK: decode_feedback,
}
_NOUN = {PREDICTIONS: "prediction", FEEDBACK: "feedback"}
READ_CHUNK = 10_000  # lines decoded at a time to learn their event times
# The merge never releases early in a replay: both files are read in event time, so what it holds back
# is at most a chunk and the lines of one epoch, and a worker's early release would change the order.
MERGE_UNBOUNDED = sys.maxsize


def event_time_ms(seconds: float) -> int:
    """An event time in epoch seconds as a Kafka timestamp (ms), as replay gives it to the merge.

    Rounded to the nearest millisecond (half to even, as ``np.rint``), so
    ``1700000000.001`` is ``1700000000001`` whatever the float's last bits.

    >>> event_time_ms(1700000000.001), event_time_ms(0.0005), event_time_ms(0.0015)
    (1700000000001, 0, 2)
    """
    return round(seconds * 1000)


class Replay:
    """The worker's engine over two line sources, merged by event time.

    Parameters
    ----------
    settings
        Settings: ``monitor``, ``models`` and what the worker's engine takes from them
        (``Settings.engine_settings``: ``batch_size``, ``max_models``, ``merge_epoch_ms``, ``privacy``,
        ``model_idle_ttl_s``).
    trace
        Collect per-window scores and the error stream for ``plot``.
    on_bad
        Called with the topic and the ``Rejected`` of every bad line.
    """

    def __init__(self, settings: Settings, trace: bool = False, on_bad: Callable[[str, Rejected], None] | None = None):
        self.settings = settings
        self.trace = trace
        self.on_bad = on_bad
        self._reset()

    def _reset(self) -> None:
        self.new_monitor = monitor_factory(self.settings.monitor, self.settings.models)
        self.engine = PartitionEngine(
            0,
            PREDICTIONS,
            FEEDBACK,
            self._make_monitor,
            **self.settings.engine_settings(),  # the worker's: its input bounds, privacy rules and idle-model TTL
            max_buffered=MERGE_UNBOUNDED,
            on_batch=self._observed,
            require_record_time=False,  # a file's records have no Kafka timestamps: each is stamped with its event time
        )
        self.models: dict[str, ModelReport] = {}
        self.traces: dict[str, Trace] = {}
        self.bad_lines: dict[str | None, int] = {}  # model_id (None: unknown) -> count
        self.out_of_order: dict[str, int] = {PREDICTIONS: 0, FEEDBACK: 0}

    @property
    def monitors(self) -> dict[str, ModelMonitor]:
        """Every model's monitor (a replay restores nothing: none is dormant)."""
        return {model_id: self.engine.monitor(model_id) for model_id in self.engine.monitors}

    def run(self, predictions: Iterable[bytes], feedback: Iterable[bytes] = ()) -> Iterator[DriftEvent]:
        """Replay the lines; yield drift events, ``emitted_at`` stamped, in the order they are raised."""
        reading = {PREDICTIONS: self._timed(PREDICTIONS, predictions), FEEDBACK: self._timed(FEEDBACK, feedback)}
        reached = {PREDICTIONS: -1, FEEDBACK: -1}  # the latest event time read of each file, ms
        caught_up: set[str] = set()
        while reading:
            # the file behind in event time next (predictions first at equal times), so that the other one
            # has passed every epoch the merge releases: never more held back than a chunk and an epoch
            topic = min(reading, key=lambda t: (reached[t], t != PREDICTIONS))
            chunk = next(reading[topic], None)
            if chunk is None:
                del reading[topic]
                caught_up.add(topic)  # read to its end: nothing of it to wait for
            else:
                self.engine.add(topic, chunk)
                reached[topic] = max(reached[topic], chunk[-1].timestamp_ms)
            yield from self._publish(self.engine.release(caught_up))

    # -- reading ------------------------------------------------------------

    def _timed(self, topic: str, lines: Iterable[bytes]) -> Iterator[list[RawMessage]]:
        """The good lines of a file as messages stamped with their event time, in chunks, in line order."""
        lines = iter(lines)
        first = 0  # line number of the block's first line
        last = -1  # the latest event time read so far, ms
        while block := list(islice(lines, READ_CHUNK)):
            chunk = [
                RawMessage(topic, 0, offset, None, line.rstrip(b"\r\n"))
                for offset, line in enumerate(block, first)
                if line.strip()
            ]
            first += len(block)
            timed, last = self._time_chunk(topic, chunk, last)
            if timed:
                yield timed

    def _time_chunk(self, topic: str, chunk: list[RawMessage], last: int) -> tuple[list[RawMessage], int]:
        """The good messages of ``chunk`` with their ``timestamp_ms`` set; the latest time so far."""
        batches, rejected = _DECODE[topic](chunk, self.engine.bounds)
        for bad in rejected:
            self._bad(topic, bad)
        if not batches:
            return [], last
        bad_offsets = {bad.message.offset for bad in rejected}
        good = [message for message in chunk if message.offset not in bad_offsets] if rejected else chunk
        # every good message is in one batch: their times, in offset order (a batch holds one model's)
        offsets = np.concatenate([batch.offsets for batch in batches])
        seconds = np.concatenate([batch.timestamps for batch in batches])[np.argsort(offsets, kind="stable")]
        milliseconds = np.rint(seconds * 1000).astype(np.int64)  # as event_time_ms, for a column
        for message, t in zip(good, milliseconds.tolist()):
            message.timestamp_ms = t
        latest = np.maximum.accumulate(np.concatenate([[last], milliseconds]))
        self.out_of_order[topic] += int(np.count_nonzero(milliseconds < latest[:-1]))
        return good, int(latest[-1])

    def _bad(self, topic: str, bad: Rejected) -> None:
        try:
            event = orjson.loads(bad.message.value or b"")
            model_id = event.get("model_id") if isinstance(event, dict) else None
        except orjson.JSONDecodeError:
            model_id = None
        if not isinstance(model_id, str) or MODEL_ID.fullmatch(model_id) is None:
            model_id = None
        self.bad_lines[model_id] = self.bad_lines.get(model_id, 0) + 1
        if model_id is not None:
            self._report(model_id).bad_lines += 1
        if self.on_bad is not None:
            self.on_bad(topic, bad)

    # -- what the engine gives ----------------------------------------------

    def _make_monitor(self, model_id: str, state: dict[str, Any] | None = None) -> ModelMonitor:
        monitor = self.new_monitor(model_id, state)
        if self.trace:
            self.traces[model_id] = Trace()
            _tap(monitor, self.traces[model_id])
        return monitor

    def _observed(self, topic: str, batch: Batch, monitored: bool, events: list[DriftEvent]) -> None:
        """Count a batch the engine decoded, and the drift events it raised, in the summary."""
        report = self._report(batch.model_id)
        report.first_time = min(report.first_time, float(batch.timestamps.min()))
        report.last_time = max(report.last_time, float(batch.timestamps.max()))
        if not monitored:
            report.unmonitored += len(batch)
        elif topic == PREDICTIONS:
            report.predictions += len(batch)
        else:
            report.feedback += len(batch)
        for event in events:
            row = min(int(np.searchsorted(batch.offsets, event["window"]["end_offset"])), len(batch) - 1)
            at = float(batch.timestamps[row])  # the triggering event's time, as epoch seconds
            kind = event["kind"]
            report.drift_events[kind] = report.drift_events.get(kind, 0) + 1
            if report.first_drift is None:
                report.first_drift = at
            if self.trace:
                self.traces[event["model_id"]].drift.append((at, kind))

    def _report(self, model_id: str) -> ModelReport:
        report = self.models.get(model_id)
        if report is None:
            report = self.models[model_id] = ModelReport()
        return report

    def _publish(self, released: Released) -> Iterator[DriftEvent]:
        for event in released.events:
            event["emitted_at"] = rfc3339(time.time())  # as the worker stamps it
            yield event
        for bad in released.rejected:  # cannot happen: these lines were decoded once already
            self._bad(bad.message.topic, bad)


def _tap(monitor: ModelMonitor, trace: Trace) -> None:
    """Record every window a monitor's sketches score, and its error stream, for the plot.

    The monitor keeps only the latest window's scores; wrapping its sketches'
    ``update`` and its ``observe_errors`` (every graded prediction, joined or
    carried, passes there) sees everything without changing what it computes.
    """
    for family, sketch in (("data", monitor.features), ("prediction", monitor.outputs), ("label", monitor.labels)):
        windows = trace.windows.setdefault(family, [])

        def update(columns, offsets, times, numeric=None, _update=sketch.update, _windows=windows):
            scored = _update(columns, offsets, times, numeric)
            for s in scored:
                if s["names"]:
                    p_min = max(float(np.min(s["stats"]["p_value"])), 1e-300)
                    strength = -np.log10(p_min) / -np.log10(monitor.p_threshold(len(s["names"])))
                    _windows.append((s["window"]["end_time"], s["names"], s["stats"]["psi"].tolist(), float(strength)))
            return scored

        sketch.update = update  # type: ignore[method-assign]  # this monitor's sketch only, on purpose

    observe_errors = monitor.observe_errors

    def errors_seen(errors, batch, rows, versions):
        events = observe_errors(errors, batch, rows, versions)
        trace.error_times += batch.timestamps[rows].tolist()
        trace.errors += np.asarray(errors, dtype=bool).tolist()
        if len(rows) and monitor.settings.concept_detector == "cusum":
            trace.concept_times.append(float(batch.timestamps[rows[-1]]))
            trace.concept.append(monitor.concept.statistic / monitor.concept_threshold)
        return events

    monitor.observe_errors = errors_seen  # type: ignore[method-assign]  # this monitor only, on purpose


# -- the command ---------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    doc = "Run the detection core over prediction and feedback files (JSON lines), without Kafka."
    p = subparsers.add_parser("replay", help=doc, description=doc, parents=[common])
    p.add_argument("predictions", type=Path, help="prediction events, one JSON object per line")
    p.add_argument("--feedback", type=Path, help="feedback events, one JSON object per line")
    p.add_argument("--alerts-out", type=Path, metavar="ALERTS.jsonl", help="write drift events here (default: stdout)")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="draw drift scores, error rate and drift events over event time (needs matplotlib)",
    )
    return p


def run(settings: Settings, args: argparse.Namespace) -> int:
    paths = {PREDICTIONS: args.predictions, FEEDBACK: args.feedback}
    for topic, path in paths.items():
        if path is not None and not path.is_file():
            raise StreamdriftError(f"{topic} file {path} does not exist")
    if args.plot is not None:
        load_pyplot()  # fail before a long replay, not after

    def report_bad(topic: str, bad: Rejected) -> None:
        line = bad.message.offset + 1
        print(f"{paths[topic]}:{line}: bad {_NOUN[topic]} (offset {bad.message.offset}): {bad.reason}", file=sys.stderr)

    replay = Replay(settings, trace=args.plot is not None, on_bad=report_bad)
    out: BinaryIO = open(args.alerts_out, "wb") if args.alerts_out else sys.stdout.buffer
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker runs the engine: the collector off the per-batch garbage
    try:
        with (
            open(args.predictions, "rb") as predictions,
            open(args.feedback, "rb") if args.feedback else nullcontext(()) as feedback,
        ):
            for event in replay.run(predictions, feedback):
                out.write(orjson.dumps(event) + b"\n")
    finally:
        gc.set_threshold(*thresholds)
        if args.alerts_out:
            out.close()
        else:
            out.flush()
    for topic, n in replay.out_of_order.items():
        if n:
            print(
                f"note: {n} lines of {paths[topic]} are earlier than a line before them; the file was "
                "replayed in line order",
                file=sys.stderr,
            )
    print(render(replay), file=sys.stderr)
    if args.plot is not None:
        plot(replay, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
