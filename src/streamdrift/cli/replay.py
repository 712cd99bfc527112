"""``streamdrift replay``: the detection core over files, no Kafka.

::

    streamdrift replay PREDICTIONS.jsonl [--feedback FEEDBACK.jsonl] [--config FILE]
                       [--alerts-out ALERTS.jsonl] [--plot OUT.png]

How users backtest thresholds and how detection quality is measured: the
same decoder, monitors and policy as the worker, over JSON-lines files.

1. **Read.** Each line is a message of partition 0 of its topic
   (``predictions`` or ``feedback``) whose offset is its line number,
   counted from 0, so a drift event's ``window`` offsets are line numbers.
   Blank lines are skipped. A line the decoder rejects is reported on stderr
   (file, line number, reason), counted in the summary and skipped; it never
   stops the replay.
2. **Merge** the two files by event time. Each file keeps its own line
   order, as a Kafka partition keeps its offset order, and the two are
   interleaved by timestamp; at equal timestamps predictions come first.
   (Sorting a file that is out of time order would feed the monitors in an
   order the worker never sees; such a file is replayed in line order and a
   note says how many lines go back in time.)
3. **Monitor.** Consecutive runs of the merged sequence from the same file,
   at most ``batch_size`` lines each, are decoded with
   ``decode_predictions`` / ``decode_feedback`` and fed to one
   ``ModelMonitor`` per model (at most ``max_models``; events of more are
   counted), made by ``monitor_factory`` with the model's ``[models.<id>]``
   settings and reference profile, as the worker does. A monitor's state
   depends only on the order of events, not on batch boundaries, so this
   gives the state a worker would reach.
4. **Publish** drift events as the worker does (``emitted_at`` stamped on
   the wall clock) as JSON lines to ``--alerts-out``, or to stdout. A
   summary table per model goes to stderr.
5. **Plot** (``--plot``, needs matplotlib): per model, over event time, the
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
import heapq
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from streamdrift.core.decode import _MODEL_ID, decode_feedback, decode_predictions  # the contract's model_id pattern
from streamdrift.core.errors import StreamdriftError
from streamdrift.core.monitor import ModelMonitor, monitor_factory
from streamdrift.core.policy import rfc3339
from streamdrift.core.records import FeedbackBatch, PredictionBatch, RawMessage, Rejected
from streamdrift.runtime.settings import Settings

PREDICTIONS, FEEDBACK = "predictions", "feedback"
_RANK = {PREDICTIONS: 0, FEEDBACK: 1}  # at equal event times predictions come first
_DECODE = {PREDICTIONS: decode_predictions, FEEDBACK: decode_feedback}
_NOUN = {PREDICTIONS: "prediction", FEEDBACK: "feedback"}
READ_CHUNK = 10_000  # lines decoded at a time to learn their event times
PLOT_MAX_MODELS = 8
PLOT_NAMED_FEATURES = 6


@dataclass
class ModelReport:
    """What the summary shows of one model."""

    predictions: int = 0
    feedback: int = 0
    bad_lines: int = 0
    unmonitored: int = 0  # events not monitored: the model was over max_models
    drift_events: dict[str, int] = field(default_factory=dict)
    first_drift: float | None = None  # event time of the first drift event
    first_time: float = float("inf")
    last_time: float = float("-inf")


@dataclass
class Trace:
    """What ``--plot`` draws for one model, collected while the replay runs."""

    # family -> [(window end time, column names, PSI per column, strength = -log10 p / -log10 threshold)]
    windows: dict[str, list[tuple]] = field(default_factory=dict)
    error_times: list[float] = field(default_factory=list)  # event time of the row that graded each prediction
    errors: list[bool] = field(default_factory=list)
    concept_times: list[float] = field(default_factory=list)
    concept: list[float] = field(default_factory=list)  # CUSUM statistic / threshold, after each graded batch
    drift: list[tuple[float, str]] = field(default_factory=list)  # (event time, kind)


class Replay:
    """The worker's core over two line sources, in merged event-time order.

    Parameters
    ----------
    settings
        Settings: ``monitor``, ``models``, ``batch_size``, ``max_models``.
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
        self.monitors: dict[str, ModelMonitor] = {}
        self.models: dict[str, ModelReport] = {}
        self.traces: dict[str, Trace] = {}
        self.bad_lines: dict[str | None, int] = {}  # model_id (None: unknown) -> count
        self.out_of_order: dict[str, int] = {PREDICTIONS: 0, FEEDBACK: 0}

    def run(self, predictions: Iterable[bytes], feedback: Iterable[bytes] = ()) -> Iterator[dict]:
        """Replay the lines; yield drift events, ``emitted_at`` stamped, in the order they are raised."""
        run: list[RawMessage] = []
        for message in self.merged(predictions, feedback):
            if run and (message.topic != run[0].topic or len(run) == self.settings.batch_size):
                yield from self._feed(run)
                run = []
            run.append(message)
        if run:
            yield from self._feed(run)

    # -- reading ------------------------------------------------------------

    def merged(self, predictions: Iterable[bytes], feedback: Iterable[bytes] = ()) -> Iterator[RawMessage]:
        """The good lines of both sources as messages, interleaved by event time, each in its line order.

        >>> from streamdrift.runtime.settings import load_settings
        >>> def line(t):
        ...     return orjson.dumps({"event_id": "e", "model_id": "m", "timestamp": t, "label": 1,
        ...                          "features": {}, "prediction": 1})
        >>> merged = Replay(load_settings()).merged([line(1), line(2), b"{}", line(2)], [line(0), line(2)])
        >>> [(m.topic, m.offset) for m in merged]
        [('feedback', 0), ('predictions', 0), ('predictions', 1), ('predictions', 3), ('feedback', 1)]
        """
        return (
            message
            for _, _, message in heapq.merge(
                self._timed(PREDICTIONS, predictions), self._timed(FEEDBACK, feedback), key=lambda item: item[:2]
            )
        )

    def _timed(self, topic: str, lines: Iterable[bytes]) -> Iterator[tuple[float, int, RawMessage]]:
        """(event time, topic rank, message) of every good line, in line order; bad lines reported."""
        chunk: list[RawMessage] = []
        last = float("-inf")
        for offset, line in enumerate(lines):
            line = line.rstrip(b"\r\n")
            if line.strip():
                chunk.append(RawMessage(topic, 0, offset, None, line))
            if len(chunk) == READ_CHUNK:
                last = yield from self._time_chunk(topic, chunk, last)
                chunk = []
        if chunk:
            yield from self._time_chunk(topic, chunk, last)

    def _time_chunk(self, topic: str, chunk: list[RawMessage], last: float) -> Iterator[tuple]:
        batches, rejected = _DECODE[topic](chunk)
        for bad in rejected:
            self._bad(topic, bad)
        times = {int(o): float(t) for b in batches for o, t in zip(b.offsets, b.timestamps)}
        for message in chunk:
            t = times.get(message.offset)
            if t is not None:
                self.out_of_order[topic] += t < last
                last = max(last, t)
                yield t, _RANK[topic], message
        return last

    def _bad(self, topic: str, bad: Rejected) -> None:
        try:
            event = orjson.loads(bad.message.value or b"")
            model_id = event.get("model_id") if isinstance(event, dict) else None
        except orjson.JSONDecodeError:
            model_id = None
        if not isinstance(model_id, str) or _MODEL_ID.fullmatch(model_id) is None:
            model_id = None
        self.bad_lines[model_id] = self.bad_lines.get(model_id, 0) + 1
        if model_id is not None:
            self._report(model_id).bad_lines += 1
        if self.on_bad is not None:
            self.on_bad(topic, bad)

    # -- monitoring ---------------------------------------------------------

    def _feed(self, run: list[RawMessage]) -> Iterator[dict]:
        topic = run[0].topic
        batches, rejected = _DECODE[topic](run)
        for bad in rejected:  # cannot happen: these lines were decoded once already
            self._bad(topic, bad)
        for batch in batches:
            report = self._report(batch.model_id)
            report.first_time = min(report.first_time, float(batch.timestamps.min()))
            report.last_time = max(report.last_time, float(batch.timestamps.max()))
            monitor = self._monitor(batch.model_id)
            if monitor is None:
                report.unmonitored += len(batch)
                continue
            if topic == PREDICTIONS:
                report.predictions += len(batch)
                events = monitor.observe_predictions(batch)
            else:
                report.feedback += len(batch)
                events = monitor.observe_feedback(batch)
            for event in events:
                yield self._publish(event, batch, report)

    def _report(self, model_id: str) -> ModelReport:
        report = self.models.get(model_id)
        if report is None:
            report = self.models[model_id] = ModelReport()
        return report

    def _monitor(self, model_id: str) -> ModelMonitor | None:
        monitor = self.monitors.get(model_id)
        if monitor is None and len(self.monitors) < self.settings.max_models:
            monitor = self.monitors[model_id] = self.new_monitor(model_id)
            if self.trace:
                self.traces[model_id] = Trace()
                _tap(monitor, self.traces[model_id])
        return monitor

    def _publish(self, event: dict, batch: PredictionBatch | FeedbackBatch, report: ModelReport) -> dict:
        event["emitted_at"] = rfc3339(time.time())  # as the worker stamps it
        row = min(int(np.searchsorted(batch.offsets, event["window"]["end_offset"])), len(batch) - 1)
        at = float(batch.timestamps[row])  # the triggering event's time, as epoch seconds
        kind = event["kind"]
        report.drift_events[kind] = report.drift_events.get(kind, 0) + 1
        if report.first_drift is None:
            report.first_drift = at
        if self.trace:
            self.traces[event["model_id"]].drift.append((at, kind))
        return event


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

        sketch.update = update

    observe_errors = monitor.observe_errors

    def errors_seen(errors, batch, rows):
        events = observe_errors(errors, batch, rows)
        trace.error_times += batch.timestamps[rows].tolist()
        trace.errors += np.asarray(errors, dtype=bool).tolist()
        if len(rows) and monitor.settings.concept_detector == "cusum":
            trace.concept_times.append(float(batch.timestamps[rows[-1]]))
            trace.concept.append(monitor.concept.statistic / monitor.concept_threshold)
        return events

    monitor.observe_errors = errors_seen


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
        _pyplot()  # fail before a long replay, not after

    def report_bad(topic: str, bad: Rejected) -> None:
        line = bad.message.offset + 1
        print(f"{paths[topic]}:{line}: bad {_NOUN[topic]} (offset {bad.message.offset}): {bad.reason}", file=sys.stderr)

    replay = Replay(settings, trace=args.plot is not None, on_bad=report_bad)
    out: BinaryIO = open(args.alerts_out, "wb") if args.alerts_out else sys.stdout.buffer
    try:
        with (
            open(args.predictions, "rb") as predictions,
            open(args.feedback, "rb") if args.feedback else nullcontext(()) as feedback,
        ):
            for event in replay.run(predictions, feedback):
                out.write(orjson.dumps(event) + b"\n")
    finally:
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


# -- the summary ---------------------------------------------------------------

COLUMNS = ("MODEL", "PREDICTIONS", "FEEDBACK", "BAD LINES", "DRIFT EVENTS", "FIRST DRIFT", "FIRST EVENT", "LAST EVENT")
NUMERIC = frozenset({"PREDICTIONS", "FEEDBACK", "BAD LINES"})  # right-aligned


def render(replay: Replay) -> str:
    """The per-model summary table, then a totals line.

    >>> from streamdrift.runtime.settings import load_settings
    >>> r = Replay(load_settings())
    >>> r.models["m1"] = ModelReport(120, 60, 2, 0, {"data_drift": 1}, 1_700_000_100.0, 1_700_000_000.0,
    ...                              1_700_000_119.5)
    >>> r.bad_lines = {"m1": 2, None: 1}
    >>> print(render(r))
    MODEL  PREDICTIONS  FEEDBACK  BAD LINES  DRIFT EVENTS  FIRST DRIFT               FIRST EVENT               LAST EVENT
    m1             120        60          2  data_drift=1  2023-11-14T22:15:00.000Z  2023-11-14T22:13:20.000Z  2023-11-14T22:15:19.500Z
    1 model, 1 drift event, 3 bad lines (1 without a readable model_id)
    """
    rows = [COLUMNS]
    for model_id, r in sorted(replay.models.items()):
        kinds = " ".join(f"{k}={n}" for k, n in sorted(r.drift_events.items())) or "-"
        seen = r.first_time <= r.last_time
        rows.append(
            (
                model_id,
                str(r.predictions),
                str(r.feedback),
                str(r.bad_lines),
                kinds,
                rfc3339(r.first_drift) if r.first_drift is not None else "-",
                rfc3339(r.first_time) if seen else "-",
                rfc3339(r.last_time) if seen else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            cell.rjust(w) if name in NUMERIC else cell.ljust(w) for cell, w, name in zip(row, widths, COLUMNS)
        ).rstrip()
        for row in rows
    ]
    n_events = sum(sum(r.drift_events.values()) for r in replay.models.values())
    n_bad = sum(replay.bad_lines.values())
    total = f"{_plural(len(replay.models), 'model')}, {_plural(n_events, 'drift event')}, {_plural(n_bad, 'bad line')}"
    if replay.bad_lines.get(None):
        total += f" ({replay.bad_lines[None]} without a readable model_id)"
    unmonitored = sum(r.unmonitored for r in replay.models.values())
    if unmonitored:
        total += f"; {unmonitored} events not monitored (over max_models={replay.settings.max_models})"
    return "\n".join(lines + [total])


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# -- the plot ------------------------------------------------------------------

KIND_COLOURS = {
    "data_drift": "tab:red",
    "prediction_drift": "tab:orange",
    "label_drift": "tab:purple",
    "concept_drift": "tab:blue",
    "performance_degradation": "tab:brown",
    "data_quality": "tab:gray",
}
# dash patterns that stay apart when two kinds fire on the same event
KIND_DASHES = {
    "data_drift": (0, (6, 6)),
    "prediction_drift": (6, (6, 6)),
    "label_drift": (3, (3, 9)),
    "concept_drift": (0, (2, 2)),
    "performance_degradation": (0, (8, 2)),
    "data_quality": (0, (1, 3)),
}
FAMILY_COLOURS = {"data": "tab:red", "prediction": "tab:orange", "label": "tab:purple", "concept": "tab:blue"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise StreamdriftError("--plot needs matplotlib: pip install 'streamdrift[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(replay: Replay, path: Path) -> None:
    """Per model (the most drifting first, at most 8): feature PSI, test strength, error rate."""
    plt = _pyplot()
    from datetime import datetime

    import matplotlib.dates as mdates

    def dates(times: Iterable[float]) -> list[datetime]:
        return [datetime.fromtimestamp(t, tz=UTC) for t in times]

    order = sorted(replay.traces, key=lambda m: (-sum(replay.models[m].drift_events.values()), m))
    shown = order[:PLOT_MAX_MODELS]
    fig, axes = plt.subplots(
        max(len(shown), 1), 3, figsize=(19, 3.6 * max(len(shown), 1)), squeeze=False, sharex="row", layout="constrained"
    )
    for row, model_id in zip(axes, shown):
        trace = replay.traces[model_id]
        _plot_psi(row[0], trace, dates)
        _plot_strength(row[1], trace, dates)
        _plot_errors(row[2], trace, dates, replay.settings.monitor.window_size)
        row[0].set_ylabel(model_id, fontsize=12, fontweight="bold")
        for ax in row:
            for at, kind in trace.drift:
                ax.axvline(dates([at])[0], color=KIND_COLOURS[kind], linestyle=KIND_DASHES[kind], linewidth=1.4)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
            ax.grid(alpha=0.3)
    kinds = sorted({kind for m in shown for _, kind in replay.traces[m].drift}, key=list(KIND_COLOURS).index)
    if kinds:
        handles = [plt.Line2D([], [], color=KIND_COLOURS[k], linestyle=KIND_DASHES[k], label=k) for k in kinds]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(kinds), title="drift events")
    title = "streamdrift replay, over event time (UTC)"
    if len(order) > len(shown):
        title += f": {len(shown)} of {len(order)} models, the most drifting first"
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_psi(ax, trace: Trace, dates) -> None:
    windows = trace.windows.get("data", [])
    ax.set_title("data drift: PSI per feature, each scored window", fontsize=10)
    if not windows:
        ax.text(0.5, 0.5, "no window scored (still warming up)", ha="center", transform=ax.transAxes)
        return
    names = windows[-1][1]
    psi = np.array([w[2] for w in windows if w[1] == names])
    t = dates(w[0] for w in windows if w[1] == names)
    ranked = np.argsort(-psi.max(axis=0), kind="stable")
    for i in ranked[PLOT_NAMED_FEATURES:]:
        ax.plot(t, psi[:, i], color="0.75", linewidth=0.8)
    for i in ranked[:PLOT_NAMED_FEATURES]:
        ax.plot(t, psi[:, i], linewidth=1.4, label=names[i])
    ax.legend(
        fontsize=8,
        loc="upper left",
        title="most drifted" if len(names) > PLOT_NAMED_FEATURES else None,
        title_fontsize=8,
    )
    ax.set_ylim(bottom=0)


def _plot_strength(ax, trace: Trace, dates) -> None:
    ax.set_title("calibrated tests: strength / threshold (fires above 1)", fontsize=10)
    for family in ("data", "prediction", "label"):
        windows = trace.windows.get(family, [])
        if windows:
            ax.plot(
                dates(w[0] for w in windows),
                [w[3] for w in windows],
                color=FAMILY_COLOURS[family],
                linewidth=1.2,
                label=f"{family}: -log10 p / -log10 p*",
            )
    if trace.concept:
        ax.plot(
            dates(trace.concept_times),
            trace.concept,
            color=FAMILY_COLOURS["concept"],
            linewidth=0.6,
            alpha=0.7,
            label="concept: CUSUM / ln(run length)",
        )
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("symlog", linthresh=1.0)  # linear up to the threshold, compressed above it
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter("{x:g}")
    if ax.lines[:-1]:
        ax.legend(fontsize=8, loc="upper left")


def _plot_errors(ax, trace: Trace, dates, window: int) -> None:
    ax.set_title(f"error rate of graded predictions (last {window})", fontsize=10)
    if not trace.errors:
        ax.text(0.5, 0.5, "no graded predictions", ha="center", transform=ax.transAxes)
        return
    errors = np.asarray(trace.errors, dtype=np.float64)
    sums = np.cumsum(errors)
    n = np.arange(1, len(errors) + 1)
    rolling = (sums - np.concatenate([np.zeros(window), sums[:-window]])[: len(errors)]) / np.minimum(n, window)
    ax.plot(dates(trace.error_times), rolling, color="black", linewidth=1.2)
    ax.set_ylim(0, max(0.05, float(rolling.max()) * 1.15))
